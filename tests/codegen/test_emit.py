"""Targeted checks on generated Triton: this op is there, that mask is gone."""

from __future__ import annotations

import ast as pyast
import re
from pathlib import Path

import tilec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _gemm() -> tilec.Kernel:
    return tilec.compile(EXAMPLES / "gemm_epilogue.tile").gemm_bias_gelu_residual


def _main_loop(code: str) -> str:
    start = code.index("    for tile_k in range(")
    end = code.index("\n    # ", code.index("acc = tl.dot"))
    return code[start:end]


def test_generated_code_is_valid_python_with_spec_comments() -> None:
    code = _gemm().triton_code(M=37, N=65, K=70, T="f16")
    pyast.parse(code)
    assert "@triton.jit" in code
    assert "# gemm_epilogue.tile:11  acc += a[m, k] @ b[k, n]" in code
    assert "# gemm_epilogue.tile:13  out[m, n] = y.to(T)" in code


def test_accumulating_product_is_one_dot_without_guards() -> None:
    code = _gemm().triton_code(M=37, N=65, K=70, T="f16")
    loop = _main_loop(code)
    assert re.search(r"acc = tl\.dot\(a_mk, b_kn, acc\)", loop), loop
    assert "tl.where" not in loop  # masked loads already put zeros in the K padding
    assert "mask=mask_m[:, None] & mask_k[None, :]" in loop


def test_masks_vanish_when_sizes_divide_the_blocks() -> None:
    k = _gemm()
    schedule = {"m": 64, "n": 64, "k": 32}
    exact = k.triton_code(M=128, N=128, K=64, T="f16", schedule=schedule)
    assert "mask" not in exact.split("@triton.jit")[1]
    ragged = k.triton_code(M=100, N=128, K=64, T="f16", schedule=schedule)
    assert "mask_m" in ragged and "mask_n" not in ragged and "mask_k" not in ragged


def test_unit_strides_are_folded_and_others_passed() -> None:
    code = _gemm().triton_code(M=37, N=65, K=70, T="f16")
    header = code[code.index("def "):code.index("):")]
    assert "a_stride0" in header and "a_stride1" not in header
    assert "offs_k[None, :] * a_stride1" not in code


def test_softmax_guards_padding_with_identities() -> None:
    k = tilec.compile(EXAMPLES / "softmax.tile").softmax
    code = k.triton_code(M=37, N=65, T="f16")
    assert 'tl.max(tl.where(mask_full_N[None, :], row, float("-inf")), axis=1)' in code
    assert "tl.sum(tl.where(mask_full_N[None, :], e, 0.0), axis=1)" in code
    assert "BLOCK_FULL_N=128" in code
    # a power-of-two row needs neither masks nor guards
    exact = k.triton_code(M=37, N=64, T="f16")
    assert "mask_full_N" not in exact and "tl.where" not in exact


def test_rmsnorm_sum_of_zero_padding_needs_no_guard() -> None:
    k = tilec.compile(EXAMPLES / "rmsnorm.tile").rmsnorm
    code = k.triton_code(M=37, N=65, T="bf16")
    assert "tl.sum(xf * xf, axis=1)" in code or "tl.sum((xf * xf), axis=1)" in code
    assert "eps = tl.cast(eps, tl.float32)" in code  # torch.compile may pass fp64


def test_half_math_is_computed_in_f32() -> None:
    module = tilec.compile("def k(x: Tensor[N, f16], y: Tensor[N, f16]):\n"
                           "    for n in tiles(N):\n        y[n] = exp(x[n])\n")
    code = module.k.triton_code(N=100)
    assert "tl.exp(x_n.to(tl.float32)).to(tl.float16)" in code


def test_int64_offsets_for_huge_tensors() -> None:
    k = tilec.compile(EXAMPLES / "rmsnorm.tile").rmsnorm
    compiled = k.specialize({"M": 37, "N": 65}, target="cpu", int64=True)
    assert "tile_m.to(tl.int64) * BLOCK_M" in compiled.source


def test_tile_offsets_keep_their_parentheses() -> None:
    """``x[m + (s << 1)]`` reads row ``m + 2s``: the offset's own operators bind weaker than the ``+`` in front
    of it (``offs_m + s << 1`` was ``(offs_m + s) << 1``)."""
    import torch

    src = """
def shifted(x: Tensor[M, N, f32], y: Tensor[M, N, f32], s: i32):
    for m in tiles(M):
        y[m, :] = x[m + (s << 1), :] + x[m + (s & 1), :]
"""
    kernel = tilec.compile(src, name="shifted.tile").shifted
    x = torch.arange(40 * 3, dtype=torch.float64).reshape(40, 3).float()
    y = torch.full((40, 3), float("nan"))
    kernel(x, y, 3, schedule={"m": 16})
    rows = torch.arange(40)
    pad = torch.cat([x.double(), torch.zeros(8, 3, dtype=torch.float64)])  # rows past M read 0
    expected = pad[rows + 6] + pad[rows + 1]
    assert torch.equal(y.double(), expected)
