"""The language features attention needs: range() grid axes, gathers, scalar loads, Dim parameters.

Each runs in the interpreter against a plain torch computation, and the generated code is checked for what
it must (and must not) contain.
"""

from __future__ import annotations

import pytest
import torch

import tilec
from tilec.errors import ArgumentError

GRID = """
def rows(x: Tensor[B, H, M, f32], scale: Tensor[H, f32], out: Tensor[B, H, M, f32]):
    for b, h, m in product(range(B), range(H), tiles(M)):
        out[b, h, m] = x[b, h, m] * scale[h] + b
"""


def test_range_axes_are_one_program_per_position() -> None:
    k = tilec.compile(GRID).rows
    x = torch.randn(3, 5, 37)
    scale = torch.randn(5)
    out = torch.full_like(x, float("nan"))
    k(x, scale, out, schedule={"m": 16})
    want = x * scale[None, :, None] + torch.arange(3.0)[:, None, None]
    assert torch.equal(out, want)
    code = k.triton_code(x, scale, out, schedule={"m": 16})
    assert "tl.program_id(axis=1)  # b in range(B), h in range(H)" in code
    assert "h = point % H" in code
    # a grid position over the axis's own dimension is in bounds: no mask for it
    assert "(h >= 0)" not in code and "(b >= 0)" not in code


GATHER = """
def gather(x: Tensor[R, D, f32], idx: Tensor[M, i32], out: Tensor[M, D, f32]):
    for m in tiles(M):
        out[m, :] = x[idx[m], :]
"""


def test_a_gather_reads_one_row_per_lane_and_zero_out_of_bounds() -> None:
    k = tilec.compile(GATHER).gather
    x = torch.randn(11, 20)
    idx = torch.tensor([3, 0, 10, -1, 11, 7, 7, 2, 100], dtype=torch.int32)
    out = torch.full((9, 20), float("nan"))
    k(x, idx, out, schedule={"m": 4})
    valid = (idx >= 0) & (idx < 11)
    want = torch.where(valid[:, None], x[idx.clamp(0, 10).long()], 0.0)
    assert torch.equal(out, want)
    code = k.triton_code(x, idx, out, schedule={"m": 4})
    assert "(idx_m >= 0) & (idx_m < R) & mask_m" in code  # data-dependent: the bounds mask always stays


PAGED = """
def paged(pool: Tensor[P, S, D, f32], table: Tensor[B, MB, i32], out: Tensor[B, N, D, f32], N: Dim):
    for b, n in product(range(B), tiles(N)):
        out[b, n, :] = pool[table[b, index(n) // S], index(n) % S, :]
"""


def test_two_gathers_along_one_tile_axis_share_it_and_dims_come_from_integers() -> None:
    k = tilec.compile(PAGED).paged
    pool = torch.randn(6, 4, 8)
    table = torch.tensor([[5, 0, 2], [1, -1, 3]], dtype=torch.int32)
    N = 10  # fewer than max_blocks * S = 12 positions
    out = torch.full((2, N, 8), float("nan"))
    k(pool, table, out, N, schedule={"n": 4})
    for b in range(2):
        for n in range(N):
            page = int(table[b, n // 4])
            want = pool[page, n % 4] if page >= 0 else torch.zeros(8)
            assert torch.equal(out[b, n], want)
    with pytest.raises(ArgumentError, match="'N' is a dimension"):
        k(pool, table, out, -1)
    with pytest.raises(ArgumentError):
        k(pool, table, out, 9)  # out's axis 1 is N: it must agree with the integer


LENGTHS = """
def masked_sum(x: Tensor[B, N, f32], lens: Tensor[B, i32], heads: Tensor[G, N, f32], out: Tensor[B, f32]):
    for b, g in product(range(B), tiles(G)):
        length = lens[b]
        total = zeros([g], f32)
        for n in tiles(N):
            keep = index(n)[None, :] < length
            total += sum(where(keep, x[b, n][None, :] * heads[g, n], 0.0), axis=1)
        out[b] = sum(total, axis=0) + x[b // 2, 0] * 0.0
"""


def test_a_scalar_load_gives_each_program_its_own_length() -> None:
    k = tilec.compile(LENGTHS).masked_sum
    x = torch.randn(3, 50)
    lens = torch.tensor([50, 17, 0], dtype=torch.int32)
    heads = torch.ones(1, 50)
    out = torch.full((3,), float("nan"))
    k(x, lens, heads, out, schedule={"g": 1, "n": 16})
    want = torch.stack([x[b, : int(lens[b])].sum() for b in range(3)])
    assert torch.allclose(out, want, atol=1e-5)
    code = k.triton_code(x, lens, heads, out, schedule={"g": 1, "n": 16})
    assert "lens_value = tl.load(lens_ptr + b" in code
    # b // 2 is not provably inside B: its load is masked (a select, which the interpreter accepts)
    assert "tl.where(((position >= 0) & (position < B))" in code or "(position < B)" in code


def test_grid_positions_are_values_not_tiles() -> None:
    with pytest.raises(tilec.TileShapeError):
        tilec.compile("def k(x: Tensor[B, M, f32], o: Tensor[B, M, f32]):\n"
                      "    for b, m in product(range(B), tiles(M)):\n"
                      "        o[b, m] = x[b, m] + index(m)[None, :]\n").k.ir()
