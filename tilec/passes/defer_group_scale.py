"""Apply an integer format's group scale to the product of each reduction tile, not to every weight.

IR in, IR out.  Before: ``Dot(a, Trans(QuantLoad(w, scale, zero, group)))``: every weight is
``(code - zero) * scale``.  After, when the reduction tile lies within one group (``group`` a multiple of
the K block, known at specialisation)::

    Binary('*', Dot(a, Trans(QuantLoad(w, None, zero, group, tile_group=True))), GroupScale(scale, n, k, group))

i.e. ``acc += dot(x, code - zero) * scale[n, k0 // group]``: one multiply per accumulator element per tile
instead of one per weight.  ``code - zero`` is an integer of at most 8 bits, exact in f16 and bf16, and the
products are summed in f32, so the result is at least as accurate as rounding each dequantised weight to
16 bits (the scale is applied in f32).  Only integer formats with float scales and integer zero points
(at most 8 bits) qualify (minifloat, codebook,
MX and nvfp4 values are not integers); the K block must divide the group.

Two-level weights (W4A8: u8 scale ``s2`` and u8 zero point, ``i8`` dequantisation, an int8 x int8 -> int32
product) are deferred the same way, in int32: ``acc += dot(x_i8, (code - zero)_i8) * s2[n, k0 // group]``.
No rounding is involved, only overflow.  Any int8 operands give ``|dot| <= 128 * 128 * BLOCK_K``, so the
product with ``s2 <= 255`` stays below ``2**31`` for ``BLOCK_K <= 512`` (``2**14 * 255 * 512 < 2**31``;
larger K blocks keep the per-weight path).  For weights satisfying the two-level invariant
(``|(code - zero) * s2| <= 127``, tilec.formats.two_level) ``code - zero`` fits int8 and each tile's
product equals today's tile sum ``sum_k x * ((code - zero) * s2)`` exactly, so the accumulator holds the
same int32 values as the per-weight path (whose bound, ``127 * 127 * K``, is unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.types import TileType
from tilec.passes.rewrite import map_exprs

_POW2_CAP = 1 << 16
MAX_DEFERRED = 32  # f32 products per thread that may sit beside the accumulator
I32_MAX_BLOCK_K = 512  # 2**14 * 255 * BLOCK_K < 2**31: the int32 product times a u8 scale cannot overflow


def group_scalars(kernel: ir.Kernel) -> tuple[str, ...]:
    """Integer scalar arguments used as a dequantisation group size."""
    names = []
    for stmt in ir.walk_stmts(kernel.body.body):
        for root in _roots(stmt):
            for e in ir.walk_exprs(root):
                if isinstance(e, ir.QuantLoad) and isinstance(e.group, ir.ScalarArg) and e.group.name not in names:
                    names.append(e.group.name)
    return tuple(names)


def scalar_facts(names: tuple[str, ...], scalars: Mapping[str, object]) -> tuple[tuple[str, int], ...]:
    """What a specialisation may assume of each group scalar: the largest power of two dividing it (capped)."""
    out = []
    for name in names:
        value = scalars.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out.append((name, min(value & -value, _POW2_CAP)))
    return tuple(out)


def defer_group_scale(kernel: ir.Kernel, pow2: Mapping[str, int], num_warps: int = 4) -> ir.Kernel:
    """``pow2``: scalar name -> a power of two it is known to be a multiple of (see :func:`scalar_facts`).

    Deferring needs the product of each tile in registers beside the accumulator; where that is more than
    ``MAX_DEFERRED`` f32 values per thread (prefill tiles: 64 at 128 x 128 / 8 warps) the second accumulator
    would spill, so the scale stays per weight and the load is only marked ``tile_group`` (one scale and
    zero point per row per tile).  Int32 (two-level) products use the same limit (docs/architecture.md has
    what deferring 64 per thread measured)."""
    tiles = kernel.tile_vars()
    seq = {s.tile.name for s in ir.walk_stmts(kernel.body.body) if isinstance(s, ir.SeqLoop)}

    def aligned(group: ir.Expr, block: int) -> bool:
        if isinstance(group, ir.Const) and isinstance(group.value, int) and not isinstance(group.value, bool):
            return group.value > 0 and group.value % block == 0
        if isinstance(group, ir.ScalarArg):
            return pow2.get(group.name, 0) % block == 0 and group.name in pow2
        return False

    def fn(e: ir.Expr) -> ir.Expr:
        if not (isinstance(e, ir.Dot) and e.acc is None and isinstance(e.b, ir.Trans)):
            return e
        q = e.b.operand
        if not isinstance(q, ir.QuantLoad) or q.scale is None or q.group is None or q.tile_group:
            return e
        param = kernel.param(q.tensor)
        if not isinstance(param, ir.PackedParam) or param.table or param.e8m0_scales or param.e4m3_scales:
            return e
        integer = e.type.dtype == dt.i32
        if integer:  # two-level: u8 scale and zero point, an exact i8 operand
            if q.type.dtype != dt.i8 or q.zero is None or not _small_integer(kernel.param(q.scale)):
                return e
        elif e.type.dtype != dt.f32 or q.type.dtype not in (dt.f16, dt.bf16):
            return e
        if q.zero is not None and not _small_integer(kernel.param(q.zero)):
            return e  # a float zero point would make code - zero inexact at 16 bits
        row, col = q.index
        if not (isinstance(row, ir.TileIndex) and isinstance(col, ir.TileIndex)) or row.offset or col.offset:
            return e
        tv = tiles[col.tile]
        if col.tile not in seq or tv.block is None or e.a.type.axes[1] != q.type.axes[1]:
            return e
        if not aligned(q.group, tv.block) or (integer and tv.block > I32_MAX_BLOCK_K):
            return e
        blocks = [tiles[a.name].block if a.kind == "tile" else None for a in e.type.axes]
        if None in blocks or blocks[0] * blocks[1] // (32 * num_warps) > MAX_DEFERRED:  # type: ignore[operator]
            return replace(e, b=replace(e.b, operand=replace(q, tile_group=True)))
        codes = replace(q, scale=None, tile_group=True)
        product = replace(e, b=replace(e.b, operand=codes))
        scale_type = TileType((q.type.axes[0],), dt.i32 if integer else dt.f32)
        scale = ir.GroupScale(q.scale, q.tensor, (row,), col.tile, q.group, scale_type, q.span)
        return ir.Binary("*", product, scale, e.type, e.span)

    return map_exprs(kernel, fn)


def _small_integer(param: ir.Param) -> bool:
    return isinstance(param, ir.TensorParam) and param.dtype.kind in ("int", "uint") and param.dtype.bits <= 8


def _roots(stmt: ir.Stmt) -> tuple[ir.Expr, ...]:
    if isinstance(stmt, (ir.Assign, ir.Store)):
        return (stmt.value,)
    return ()
