"""Before/after tests, one group per pass."""

from __future__ import annotations

from pathlib import Path

import pytest

import tilec
from tilec.errors import ScheduleError
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.fuse_dot_acc import fuse_dot_acc
from tilec.passes.interpreter_workarounds import interpreter_workarounds
from tilec.passes.masks import Facts, elide_masks
from tilec.passes.tiling import tile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GEMM_BLOCKS = Schedule(blocks={"m": 32, "n": 32, "k": 16})


def gemm_ir(dtype: dt.DType = dt.f16) -> ir.Kernel:
    return tilec.compile(EXAMPLES / "gemm_epilogue.tile").gemm_bias_gelu_residual.ir({"T": dtype})


def softmax_ir() -> ir.Kernel:
    return tilec.compile(EXAMPLES / "softmax.tile").softmax.ir()


def main_loop(k: ir.Kernel) -> ir.SeqLoop:
    return next(s for s in k.body.body if isinstance(s, ir.SeqLoop))


def exprs(k: ir.Kernel) -> list[ir.Expr]:
    out: list[ir.Expr] = []
    for s in ir.walk_stmts(k.body.body):
        if isinstance(s, (ir.Assign, ir.Store)):
            out.extend(ir.walk_exprs(s.value))
    return out


# ------------------------------------------------------------------ tiling
def test_tiling_sets_blocks() -> None:
    before = gemm_ir()
    assert all(tv.block is None for tv in before.tile_vars().values())
    after = tile(before, GEMM_BLOCKS, {})
    assert {n: tv.block for n, tv in after.tile_vars().items()} == {"m": 32, "n": 32, "k": 16}
    assert main_loop(after).tile.block == 16


def test_tiling_records_whole_axis_blocks() -> None:
    after = tile(softmax_ir(), Schedule(blocks={"m": 4}), {"N": 128})
    assert after.full_blocks == (("N", 128),)


@pytest.mark.parametrize("blocks,message", [
    ({"m": 32, "n": 32, "k": 8}, "K >= 16"),
    ({"m": 8, "n": 32, "k": 16}, "M, N >= 16"),
    ({"m": 48, "n": 32, "k": 16}, "not a power of two"),
    ({"m": 32, "n": 32}, "no block size for tile 'k'"),
    ({"m": 32, "n": 32, "k": 16, "q": 4}, "'q', which is not a tile variable"),
])
def test_tiling_rejects_invalid_schedules(blocks: dict[str, int], message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tile(gemm_ir(), Schedule(blocks=blocks), {})


def test_tiling_rejects_bad_launch_options() -> None:
    with pytest.raises(ScheduleError, match="num_warps=3"):
        tile(gemm_ir(), Schedule(blocks=GEMM_BLOCKS.blocks, num_warps=3), {})


# ----------------------------------------------------------- fuse_dot_acc
def test_fuse_dot_acc_folds_the_addition_into_the_product() -> None:
    before = tile(gemm_ir(), GEMM_BLOCKS, {})
    (assign,) = main_loop(before).body
    assert isinstance(assign, ir.Assign) and isinstance(assign.value, ir.Binary)
    assert isinstance(assign.value.right, ir.Dot) and assign.value.right.acc is None
    after = fuse_dot_acc(before)
    (assign,) = main_loop(after).body
    assert isinstance(assign, ir.Assign) and isinstance(assign.value, ir.Dot)
    assert isinstance(assign.value.acc, ir.Var) and assign.value.acc.name == "acc"


def test_fuse_dot_acc_takes_any_addend_of_the_accumulator_type() -> None:
    k = tilec.compile("def k(a: Tensor[M, K, f16], b: Tensor[K, N, f16], o: Tensor[M, N, f32]):\n"
                      "    for m, n in tiles(M, N):\n"
                      "        acc = zeros([m, n], f32)\n"
                      "        for k in tiles(K):\n"
                      "            acc = acc * 2.0 + a[m, k] @ b[k, n]\n"
                      "            acc2 = a[m, k] @ b[k, n] - acc\n"
                      "        o[m, n] = acc\n").k.ir()
    fused, unfused = main_loop(fuse_dot_acc(k)).body
    assert isinstance(fused, ir.Assign) and isinstance(fused.value, ir.Dot)
    assert isinstance(fused.value.acc, ir.Binary) and fused.value.acc.op == "*"
    assert isinstance(unfused, ir.Assign) and isinstance(unfused.value, ir.Binary)  # a subtraction stays


# -------------------------------------------------- interpreter workarounds
def test_bf16_products_are_upcast_for_the_interpreter() -> None:
    before = fuse_dot_acc(tile(gemm_ir(dt.bf16), GEMM_BLOCKS, {}))
    dot = next(e for e in exprs(before) if isinstance(e, ir.Dot))
    assert dot.a.type.dtype == dt.bf16
    after = interpreter_workarounds(before)
    dot = next(e for e in exprs(after) if isinstance(e, ir.Dot))
    assert isinstance(dot.a, ir.Cast) and dot.a.type.dtype == dt.f32
    assert isinstance(dot.b, ir.Cast) and dot.b.type.dtype == dt.f32
    assert dot.acc is not None


def test_f16_products_are_left_alone() -> None:
    before = fuse_dot_acc(tile(gemm_ir(dt.f16), GEMM_BLOCKS, {}))
    assert interpreter_workarounds(before) == before


# ------------------------------------------------------------------ masks
def _loads(k: ir.Kernel) -> list[ir.Load]:
    return [e for e in exprs(k) if isinstance(e, ir.Load)]


def test_masks_kept_without_facts_and_dot_guards_dropped() -> None:
    before = fuse_dot_acc(tile(gemm_ir(), GEMM_BLOCKS, {}))
    dot = next(e for e in exprs(before) if isinstance(e, ir.Dot))
    assert dot.guard_a and dot.guard_b
    after = elide_masks(before, Facts())
    assert all(ix.needs_mask for load in _loads(after) for ix in load.index if isinstance(ix, ir.TileIndex))
    dot = next(e for e in exprs(after) if isinstance(e, ir.Dot))
    assert not dot.guard_a and not dot.guard_b  # masked loads pad K with zeros


def test_masks_elided_where_divisibility_is_known() -> None:
    k = fuse_dot_acc(tile(gemm_ir(), GEMM_BLOCKS, {}))
    after = elide_masks(k, Facts(divisible=frozenset({"m", "k"})))
    for load in _loads(after):
        for ix in load.index:
            assert isinstance(ix, ir.TileIndex)
            assert ix.needs_mask == (ix.tile == "n"), (load.tensor, ix)


def test_shifted_tiles_keep_their_masks() -> None:
    k = tilec.compile("def k(x: Tensor[N, f32], y: Tensor[N, f32]):\n"
                      "    for n in tiles(N):\n"
                      "        y[n] = x[n + 1] - x[n]\n").k.ir()
    after = elide_masks(tile(k, Schedule(blocks={"n": 16}), {}), Facts(divisible=frozenset({"n"})))
    masks = {(ld.index[0].offset is not None): ld.index[0].needs_mask for ld in _loads(after)}  # type: ignore[union-attr]
    assert masks == {True: True, False: False}


def test_softmax_guards_follow_the_padding_values() -> None:
    k = tile(softmax_ir(), Schedule(blocks={"m": 4}), {"N": 128})
    reductions = [e for e in exprs(elide_masks(k, Facts())) if isinstance(e, ir.Reduce)]
    assert [(r.op, r.guard) for r in reductions] == [("max", True), ("sum", True)]
    exact = [e for e in exprs(elide_masks(k, Facts(exact=frozenset({"N"})))) if isinstance(e, ir.Reduce)]
    assert [r.guard for r in exact] == [False, False]


def test_padding_analysis_knows_exp_of_zero_is_one() -> None:
    k = tilec.compile("def k(x: Tensor[M, N, f32], y: Tensor[M, f32]):\n"
                      "    for m in tiles(M):\n"
                      "        a = sum(x[m, :] * 3.0, axis=1)\n"
                      "        b = sum(exp(x[m, :]), axis=1)\n"
                      "        c = max(exp(x[m, :]) - 1.0, axis=1)\n"
                      "        y[m] = a + b + c\n").k.ir()
    after = elide_masks(tile(k, Schedule(blocks={"m": 4}), {"N": 64}), Facts())
    guards = [e.guard for e in exprs(after) if isinstance(e, ir.Reduce)]
    # 0 * 3 = 0 is sum's identity; exp(0) = 1 is not; exp(0) - 1 = 0 is not max's identity (-inf)
    assert sorted(guards) == [False, True, True]
