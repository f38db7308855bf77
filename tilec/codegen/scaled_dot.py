"""Emission of a block-scaled product (``ir.ScaledDot``) as ``tl.dot_scaled``.

Each operand is read as ``tl.dot_scaled`` wants it, straight from the QTensor's storage: no dequantisation.
tilec packs codes little-endian into 32-bit words along K (stream bit ``t`` = bit ``t % 32`` of word
``t // 32``), and torch's tensors are little-endian in memory, so the words of a row read as bytes are the
code stream itself: byte ``i`` holds code ``i`` (8-bit elements) or codes ``2i`` (low nibble) and ``2i + 1``
(high nibble), which is dot_scaled's e2m1 packing ("the first element in lower bits").  So a tile is a
plain byte load through the word pointer cast to ``uint8``::

    a_codes = tl.load(a_ptr.to(tl.pointer_type(tl.uint8)) + rows * (row_stride * 4) + k_bytes)   # [BM, BK*B/8]
    a_scales = tl.load(a_scale_ptr + rows * stride + k_tile * (BK // 32) + tl.arange(0, BK // 32))  # e8m0 codes
    acc = tl.dot_scaled(a_codes, a_scales, "e4m3", tl.trans(w_codes), w_scales, "e2m1", acc=acc)

8-bit codes are bitcast to Triton's fp8 types; e2m1 stays uint8.  Scales are MX's e8m0 codes as uint8
(blocks of 32) or nvfp4's e4m3 codes bitcast to ``tl.float8e4nv`` (blocks of 16).  Lanes past the tensor
load 0 (code 0 is +0.0 in every element format; scale code 0 is 2**-127 in e8m0, 0 in e4m3), so padding
contributes exactly 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilec.codegen.lowering import arg
from tilec.codegen.quant_load import grouped
from tilec.ir import nodes as ir

if TYPE_CHECKING:
    from tilec.codegen.triton_emit import Emitter

_FP8 = {"e4m3": "tl.float8e4nv", "e5m2": "tl.float8e5"}


def emit_scaled_dot(em: Emitter, e: ir.ScaledDot) -> str:
    a_codes, a_scales = _operand(em, e.a, e.a_format, e.block)
    b_codes, b_scales = _operand(em, e.b, e.b_format, e.block)
    args = [a_codes, a_scales, f'"{e.a_format}"', f"tl.trans({b_codes})", b_scales, f'"{e.b_format}"']
    if e.acc is not None:
        args.append(f"acc={arg(em, e.acc)}")
    return f"tl.dot_scaled({', '.join(args)})"


def _operand(em: Emitter, load: ir.QuantLoad, fmt: str, block: int) -> tuple[str, str]:
    param = em.kernel.param(load.tensor)
    assert isinstance(param, ir.PackedParam) and load.scale is not None
    row_ix, col_ix = load.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex)
    tv = em.kernel.tile_vars()[col_ix.tile]
    assert tv.block is not None and tv.block % block == 0 and 8 % param.bits == 0
    name, rows = load.tensor, em.offsets[row_ix.tile]
    row_mask = f"{em.masks[row_ix.tile]}[:, None]" if row_ix.needs_mask else ""
    scale_kind = "e4m3" if param.e4m3_scales else "e8m0"
    em.line(f"# {name}[{row_ix.tile}, {col_ix.tile}]: {param.format} codes as bytes ({fmt}), "
            f"{scale_kind} scales per {block} along {col_ix.tile}")
    nbytes = tv.block * param.bits // 8
    offs = em.bind(f"{em.tile_index[tv.name]} * {nbytes} + tl.arange(0, {nbytes})", f"{name}_byte")
    stride = em.strides.get((name, 0))
    row_bytes = f"({stride} * 4)" if stride else "4"  # row stride in words -> bytes
    ptr = f"{em.ptrs[name]}.to(tl.pointer_type(tl.uint8)) + {rows}[:, None] * {row_bytes} + {offs}[None, :]"
    masks = [row_mask] if row_mask else []
    if col_ix.needs_mask:
        valid = em.bind(f"({em.extent(param.dims[1])} * {param.bits} + 7) // 8", f"{name}_bytes_per_row")
        masks.append(f"({offs} < {valid})[None, :]")
    masked = f", mask={' & '.join(masks)}, other=0" if masks else ""
    codes = f"tl.load({ptr}{masked})"
    if fmt in _FP8:
        codes = f"{codes}.to({_FP8[fmt]}, bitcast=True)"
    codes = em.bind(codes, f"{name}_codes")
    scale = load.scale
    groups = em.bind(f"{em.tile_index[tv.name]} * {tv.block // block} + tl.arange(0, {tv.block // block})",
                     f"{scale}_group")
    scale_param = em.kernel.param(scale)
    assert isinstance(scale_param, ir.TensorParam)
    # Always bounded by the scale tensor's own G (BLOCK_K / block lanes a row): nothing ties G to K at launch.
    scale_masks = ([row_mask] if row_mask else []) + [f"({groups} < {em.extent(scale_param.dims[1])})[None, :]"]
    scale_masked = f", mask={' & '.join(scale_masks)}, other=0"
    scales = f"tl.load({grouped(em, scale, rows, groups)}{scale_masked})"
    if param.e4m3_scales:  # nvfp4: the uint8 codes are fp8_e4m3 scales, which dot_scaled takes typed
        scales = f"{scales}.to(tl.float8e4nv, bitcast=True)"
    scales = em.bind(scales, f"{scale}_{scale_kind}")
    return codes, scales
