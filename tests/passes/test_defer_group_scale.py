"""defer_group_scale: before/after on the W4A16 example and on the formats and schedules it must leave alone."""

from __future__ import annotations

from pathlib import Path

import pytest

import tilec
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.defer_group_scale import defer_group_scale, group_scalars, scalar_facts
from tilec.passes.tiling import tile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BLOCKS = Schedule(blocks={"m": 16, "n": 64, "k": 64})
TABLE_SPEC = """
def linear(x: Tensor[M, K, T], w: Tensor[N, K, fp4_e2m1], scale: Tensor[N, G, T], out: Tensor[M, N, T], group: i32):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += x[m, k] @ dequantize(w[n, k], scale, None, group).T
        out[m, n] = acc.to(T)
"""


def w4a16(blocks: Schedule = BLOCKS, dtype: dt.DType = dt.f16) -> ir.Kernel:
    return tile(tilec.compile(EXAMPLES / "w4a16.tile").w4a16_linear.ir({"T": dtype}), blocks, {})


def update(k: ir.Kernel) -> ir.Expr:
    loop = next(s for s in k.body.body if isinstance(s, ir.SeqLoop))
    stmt = loop.body[0]
    assert isinstance(stmt, ir.Assign) and stmt.name == "acc"
    return stmt.value


def test_group_scalars_and_facts() -> None:
    k = w4a16()
    assert group_scalars(k) == ("group",)
    assert scalar_facts(("group",), {"group": 384}) == (("group", 128),)
    assert scalar_facts(("group",), {"group": 0}) == () == scalar_facts(("group",), {})


@pytest.mark.parametrize("dtype", [dt.f16, dt.bf16])
def test_scale_moves_after_the_product_when_the_tile_lies_in_one_group(dtype: dt.DType) -> None:
    before = w4a16(dtype=dtype)
    b = update(before)
    assert isinstance(b, ir.Binary) and isinstance(b.right, ir.Dot)
    quant = b.right.b.operand  # type: ignore[union-attr]
    assert isinstance(quant, ir.QuantLoad) and quant.scale == "scale" and not quant.tile_group
    after = update(defer_group_scale(before, {"group": 128}))
    # acc + dot(x, (code - zero).T) * scale[n, k0 // group]
    assert isinstance(after, ir.Binary) and after.op == "+" and isinstance(after.right, ir.Binary)
    product, scale = after.right.left, after.right.right
    assert after.right.op == "*" and isinstance(product, ir.Dot) and product.acc is None
    codes = product.b.operand  # type: ignore[union-attr]
    assert isinstance(codes, ir.QuantLoad)
    assert (codes.scale, codes.zero, codes.tile_group, codes.type.dtype) == (None, "zero", True, dtype)
    assert isinstance(scale, ir.GroupScale)
    assert (scale.tensor, scale.quant, scale.tile, scale.type.dtype) == ("scale", "w", "k", dt.f32)
    assert [a.name for a in scale.type.axes] == ["n"]


@pytest.mark.parametrize("pow2", [{"group": 32}, {}])
def test_unaligned_or_unknown_groups_are_left_alone(pow2: dict[str, int]) -> None:
    before = w4a16()
    assert defer_group_scale(before, pow2) == before  # group 32 < BLOCK_K 64, or nothing known


def test_constant_groups_are_checked_statically() -> None:
    spec = (EXAMPLES / "w4a16.tile").read_text().replace("scale, zero, group)", "scale, zero, 128)")
    kernel = tile(tilec.compile(spec, name="w4a16_const.tile").w4a16_linear.ir(), BLOCKS, {})
    assert isinstance(update(defer_group_scale(kernel, {})).right, ir.Binary)  # type: ignore[attr-defined]
    small = tile(tilec.compile(spec.replace("zero, 128)", "zero, 32)"), name="w4a16_32.tile").w4a16_linear.ir(),
                 BLOCKS, {})
    assert defer_group_scale(small, {}) == small


def test_table_formats_keep_their_per_weight_scale() -> None:
    kernel = tile(tilec.compile(TABLE_SPEC, name="fp4.tile").linear.ir(), BLOCKS, {})
    assert defer_group_scale(kernel, {"group": 128}) == kernel


def test_wide_tiles_keep_the_scale_per_weight_but_one_per_row() -> None:
    """128 x 128 over 8 warps: 64 products per thread would sit beside the accumulator; not deferred."""
    before = w4a16(Schedule(blocks={"m": 128, "n": 128, "k": 64}, num_warps=8))
    after = update(defer_group_scale(before, {"group": 128}, num_warps=8))
    assert isinstance(after, ir.Binary) and isinstance(after.right, ir.Dot)
    quant = after.right.b.operand  # type: ignore[union-attr]
    assert isinstance(quant, ir.QuantLoad) and quant.scale == "scale" and quant.tile_group
    deferred = update(defer_group_scale(before, {"group": 128}, num_warps=16))  # 32 per thread: deferred
    assert isinstance(deferred, ir.Binary) and isinstance(deferred.right, ir.Binary) and deferred.right.op == "*"



def w4a8(blocks: Schedule = BLOCKS) -> ir.Kernel:
    return tile(tilec.compile(EXAMPLES / "w4a8.tile").w4a8_linear.ir({"T": dt.f16, "S": dt.f16}), blocks, {})


def test_two_level_scale_moves_after_the_int32_product() -> None:
    """W4A8: acc += dot(x_i8, (code - zero)_i8) * s2[n, k0 // group], all in int32 (exact, no rounding)."""
    before = update(w4a8())
    assert isinstance(before, ir.Binary) and isinstance(before.right, ir.Dot)
    quant = before.right.b.operand  # type: ignore[union-attr]
    assert isinstance(quant, ir.QuantLoad) and quant.scale == "s2" and quant.type.dtype == dt.i8
    after = update(defer_group_scale(w4a8(), {"group": 128}))
    assert isinstance(after, ir.Binary) and after.op == "+" and isinstance(after.right, ir.Binary)
    product, scale = after.right.left, after.right.right
    assert after.right.op == "*" and isinstance(product, ir.Dot) and product.type.dtype == dt.i32
    codes = product.b.operand  # type: ignore[union-attr]
    assert isinstance(codes, ir.QuantLoad)
    assert (codes.scale, codes.zero, codes.tile_group, codes.type.dtype) == (None, "zero", True, dt.i8)
    assert isinstance(scale, ir.GroupScale)
    assert (scale.tensor, scale.quant, scale.tile, scale.type.dtype) == ("s2", "w", "k", dt.i32)


def test_two_level_k_blocks_that_could_overflow_keep_the_per_weight_scale() -> None:
    """2**14 * 255 * BLOCK_K < 2**31 holds up to BLOCK_K = 512; a 1024-wide K block is left alone."""
    assert 2**14 * 255 * 512 < 2**31 <= 2**14 * 255 * 1024
    wide = w4a8(Schedule(blocks={"m": 16, "n": 16, "k": 1024}))
    assert defer_group_scale(wide, {"group": 1024}) == wide
    ok = update(defer_group_scale(w4a8(Schedule(blocks={"m": 16, "n": 16, "k": 512})), {"group": 512}))
    assert isinstance(ok, ir.Binary) and isinstance(ok.right, ir.Binary) and ok.right.op == "*"


def test_two_level_unaligned_groups_are_left_alone() -> None:
    before = w4a8()
    assert defer_group_scale(before, {"group": 32}) == before == defer_group_scale(before, {})
