"""split_k: before/after, and every reason a reduction loop cannot be split."""

from __future__ import annotations

from pathlib import Path

import pytest

import tilec
from tilec.errors import ScheduleError
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.fuse_dot_acc import fuse_dot_acc
from tilec.passes.masks import facts_for
from tilec.passes.split_k import split_blocker, split_k
from tilec.passes.tiling import tile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def tiled(path: str, name: str, blocks: dict[str, int]) -> ir.Kernel:
    kernel = getattr(tilec.compile(EXAMPLES / path), name).ir()
    return fuse_dot_acc(tile(kernel, Schedule(blocks=blocks), {}))


def loop_of(k: ir.Kernel) -> ir.SeqLoop:
    return next(s for s in k.body.body if isinstance(s, ir.SeqLoop))


def test_split_marks_the_reduction_loop_and_its_accumulators() -> None:
    before = tiled("gemm_epilogue.tile", "gemm_bias_gelu_residual", {"m": 32, "n": 32, "k": 16})
    assert loop_of(before).split == 1 and loop_of(before).partials == ()
    after = split_k(before, 4)
    assert loop_of(after).split == 4 and loop_of(after).partials == ("acc",)
    # everything else is untouched: the statements after the loop are the same objects
    assert after.body.body[-2:] == before.body.body[-2:]
    assert split_k(before, 1) is before


def test_every_accumulator_of_a_fused_loop_is_a_partial() -> None:
    """RMSNorm fused into a GEMM carries the product and the sum of squares: both are summed across splits."""
    k = split_k(tiled("rmsnorm_gemm.tile", "rmsnorm_gemm", {"m": 16, "n": 32, "k": 32}), 2)
    assert loop_of(k).partials == ("sum_sq", "acc")


def test_a_split_that_does_not_divide_the_tiles_keeps_the_k_mask() -> None:
    k = split_k(tiled("gemm_epilogue.tile", "gemm_bias_gelu_residual", {"m": 32, "n": 32, "k": 16}), 3)
    sizes = {"M": 64, "N": 64, "K": 64}  # 4 K tiles: divisible by the block, not by 3 splits
    assert "k" not in facts_for(k, sizes).divisible and "m" in facts_for(k, sizes).divisible
    k2 = split_k(tiled("gemm_epilogue.tile", "gemm_bias_gelu_residual", {"m": 32, "n": 32, "k": 16}), 2)
    assert "k" in facts_for(k2, sizes).divisible


BODY = """
def blocked(a: Tensor[M, K, f16], b: Tensor[K, N, f16], out: Tensor[M, N, f16]):
    for m, n in tiles(M, N):
{body}
"""
BLOCKERS = [
    ("        acc = full([m, n], 1.0, f32)\n        for k in tiles(K):\n            acc += a[m, k] @ b[k, n]\n"
     "        out[m, n] = acc.to(f16)", "does not start at zeros"),
    ("        acc = zeros([m, n], f32)\n        for k in tiles(K):\n            acc = acc * 0.5 + a[m, k] @ b[k, n]\n"
     "        out[m, n] = acc.to(f16)", "only increased"),
    ("        acc = zeros([m, n], f32)\n        for k in tiles(K):\n            acc += a[m, k] @ b[k, n] + acc\n"
     "        out[m, n] = acc.to(f16)", "reads an accumulator"),
    ("        acc = zeros([m, n], f32)\n        for k in tiles(K):\n            acc = a[m, k] @ b[k, n]\n"
     "        out[m, n] = acc.to(f16)", "only increased"),
    ("        acc = zeros([m, n], f16)\n        for k in tiles(K):\n            acc += (a[m, k] @ b[k, n]).to(f16)\n"
     "        out[m, n] = acc", "f32 or i32"),
    ("        out[m, n] = zeros([m, n], f16)\n        acc = zeros([m, n], f32)\n        for k in tiles(K):\n"
     "            acc += a[m, k] @ b[k, n]\n        out[m, n] = acc.to(f16)", "stores before"),
    ("        acc = zeros([m, n], f32)\n        for k in tiles(K):\n            acc += a[m, k] @ b[k, n]\n"
     "        for k2 in tiles(K):\n            acc += a[m, k2] @ b[k2, n]\n        out[m, n] = acc.to(f16)",
     "2 reduction loops"),
]


@pytest.mark.parametrize("body,reason", BLOCKERS, ids=[f"{i}-{r}" for i, (_, r) in enumerate(BLOCKERS)])
def test_loops_that_are_not_pure_sums_are_refused(body: str, reason: str) -> None:
    kernel = tilec.compile(BODY.format(body=body), name="blocked.tile").blocked
    blocks = {name: 16 for name in kernel.ir().tile_vars()}
    k = fuse_dot_acc(tile(kernel.ir(), Schedule(blocks=blocks), {}))
    found = split_blocker(k)
    assert found is not None and reason in found
    assert split_k(k, 1) is k  # no split asked: nothing to prove
    with pytest.raises(ScheduleError, match=reason):
        split_k(k, 2)


def test_kernels_without_a_reduction_loop_cannot_split() -> None:
    k = tilec.compile(EXAMPLES / "softmax.tile").softmax.ir()
    assert "0 reduction loops" in (split_blocker(k) or "")


@pytest.mark.parametrize("split", [0, 65])
def test_split_out_of_range(split: int) -> None:
    k = tiled("gemm_epilogue.tile", "gemm_bias_gelu_residual", {"m": 32, "n": 32, "k": 16})
    with pytest.raises(ScheduleError, match=r"not in 1\.\.64"):
        split_k(k, split)
