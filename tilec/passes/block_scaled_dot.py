"""Block-scaled products: a product of two dequantised MX (or nvfp4) tiles becomes one ``tl.dot_scaled``.

IR in, IR out; run only when the GPU arch is 100 or newer (the pipeline decides).  Blackwell's
block-scaled MMA (``tcgen05.mma ... block_scale``) multiplies block-scaled operands directly: element codes
and one scale per block along K, for both operands (MX: e8m0 per 32, kind mxf8f6f4 / mxf4; nvfp4: e4m3 per
16, kind mxf4nvf4).  Elsewhere (sm_80, sm_90, the CPU interpreter by
default) the same spec runs as written: each operand dequantised in registers, then an f16/bf16 product;
that is the emulation.

Before (after fuse_dot_acc)::

    Dot(a=Cast(QuantLoad(a[m, k], a_scale, None, 32), T),
        b=Trans(Cast(QuantLoad(w[n, k], w_scale, None, 32), T)), acc=Var(acc))

after::

    ScaledDot(a=QuantLoad(a[m, k], ...), b=QuantLoad(w[n, k], ...), "e4m3", "e2m1", 32, acc=Var(acc))

Matched: both operands ``dequantize(x[rows, k], scale, None, 32)`` of a packed tensor in ``mxfp4``
(e2m1), ``mxfp8_e4m3`` or ``mxfp8_e5m2`` (the element formats ``tl.dot_scaled`` takes; mxfp6 and mxint8
stay emulated), or both ``dequantize(x[rows, k], scale, None, 16)`` in ``nvfp4`` (its tensor scales are
scalars the spec applies in the epilogue, outside the product); optionally cast to f16/bf16/f32, the
second transposed, an f32 result, and a K block that holds whole scale blocks.  The casts are dropped:
the block-scaled product multiplies the exact element values.  The emulation rounds each value to T
first, which is exact unless an element times its scale leaves T's range (f16: beyond 65504 or below
2**-24), where the native product is the more accurate one.  A product of mixed scale kinds (MX with
nvfp4) stays emulated.
"""

from __future__ import annotations

from dataclasses import dataclass

from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.passes.rewrite import map_exprs

NATIVE_SCALED_DOT_ARCH = 100  # compute capability from which tl.dot_scaled is a native instruction
# tilec format -> (dot_scaled element format, scale block along K)
ELEMENT_FORMATS = {"mxfp4": ("e2m1", 32), "mxfp8_e4m3": ("e4m3", 32), "mxfp8_e5m2": ("e5m2", 32),
                   "nvfp4": ("e2m1", 16)}
_LOSSLESS_CASTS = (dt.f16, dt.bf16, dt.f32)


@dataclass(frozen=True)
class ScaledOperands:
    a: ir.QuantLoad  # rows along M
    b: ir.QuantLoad  # rows along N (the product is a @ b.T)
    a_format: str
    b_format: str
    block: int  # 32: e8m0 scales (MX); 16: e4m3 scales (nvfp4)


def block_scaled_dot(kernel: ir.Kernel) -> ir.Kernel:
    tiles = kernel.tile_vars()

    def fn(e: ir.Expr) -> ir.Expr:
        if not isinstance(e, ir.Dot):
            return e
        found = scaled_operands(kernel, e)
        if found is None or not _blocks_fit(tiles, found):
            return e
        return ir.ScaledDot(found.a, found.b, found.a_format, found.b_format, found.block, e.acc, e.type, e.span)

    return map_exprs(kernel, fn)


def scaled_operands(kernel: ir.Kernel, dot: ir.Dot) -> ScaledOperands | None:
    """The two MX loads of ``dot`` when it is ``dequantize(a[m, k]) @ dequantize(b[n, k]).T`` (see above)."""
    if dot.type.dtype != dt.f32:
        return None
    b = dot.b
    if isinstance(b, ir.Cast) and b.type.dtype in _LOSSLESS_CASTS:
        b = b.operand
    if not isinstance(b, ir.Trans):
        return None
    a_load, b_load = _mx_load(kernel, dot.a), _mx_load(kernel, b.operand)
    if a_load is None or b_load is None:
        return None
    k = a_load.type.axes[1]
    if k.kind != "tile" or b_load.type.axes[1] != k:
        return None
    (a_fmt, a_block), (b_fmt, b_block) = (ELEMENT_FORMATS[_param(kernel, x).format] for x in (a_load, b_load))
    if a_block != b_block:  # one scale kind per product: MX with MX, nvfp4 with nvfp4
        return None
    return ScaledOperands(a_load, b_load, a_fmt, b_fmt, a_block)


def _mx_load(kernel: ir.Kernel, e: ir.Expr) -> ir.QuantLoad | None:
    if isinstance(e, ir.Cast) and e.type.dtype in _LOSSLESS_CASTS:
        e = e.operand
    if not isinstance(e, ir.QuantLoad) or e.scale is None or e.zero is not None:
        return None
    known = ELEMENT_FORMATS.get(_param(kernel, e).format)
    if known is None:
        return None
    if not (isinstance(e.group, ir.Const) and e.group.value == known[1]):  # the format's block, by specification
        return None
    if len(e.index) != 2 or not all(isinstance(ix, ir.TileIndex) and ix.offset is None for ix in e.index):
        return None
    return e


def _param(kernel: ir.Kernel, load: ir.QuantLoad) -> ir.PackedParam:
    param = kernel.param(load.tensor)
    assert isinstance(param, ir.PackedParam)
    return param


def _blocks_fit(tiles: dict[str, ir.TileVar], found: ScaledOperands) -> bool:
    """A K block of whole scale blocks (the scale tile is [rows, BLOCK_K / block]); rows of at least 16."""
    blocks = [tiles[ax.name].block for ax in (found.a.type.axes[0], found.b.type.axes[0], found.a.type.axes[1])]
    m, n, k = blocks
    return m is not None and n is not None and k is not None and m >= 16 and n >= 16 and k % found.block == 0
