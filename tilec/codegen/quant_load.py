"""Emission of a quantised load: codes from a little-endian bit stream of 32-bit words, then dequantisation.

For a packed tensor ``w: Tensor[N, K, uintB]`` (element ``k`` of a row at stream bits ``[k*B, (k+1)*B)``,
stream bit ``t`` = bit ``t % 32`` of word ``t // 32``; the packing tilec.ir.packing.PackedLayout(B)
describes, and the host packer executes) a tile ``w[n, k]`` becomes::

    bit = offs_k * B;  word = bit >> 5;  shift = bit & 31
    code = (word_lo >> shift) [| word_hi << (32 - shift) where the code crosses a word]  & (2**B - 1)
    value = (code - zero[n, k // group]) * scale[n, k // group]      (0 in padding lanes)

With integer (u8) scales and zeros (a two-level QTensor's second level) the value is computed in int32
and is an exact int8: the tile feeds an int8 x int8 -> int32 dot.

Widths that divide 32 (1, 2, 4, 8 bits) never cross: the tile's words are loaded once and unpacked in
registers (shift by ``j * B``, mask, reshape), when the K block holds whole words.  Other widths gather
the word (and, for codes that cross, the next word) per code.  Choosing the packed order so the unpacked
tile lands in the dot operand's register layout is the layout pass's job (docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilec.codegen.lowering import strip_parens
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir

if TYPE_CHECKING:
    from tilec.codegen.triton_emit import Emitter


def emit_quant_load(em: Emitter, e: ir.QuantLoad) -> str:
    param = em.kernel.param(e.tensor)
    assert isinstance(param, ir.PackedParam)
    row_ix, col_ix = e.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex)
    rows, cols = em.offsets[row_ix.tile], em.offsets[col_ix.tile]
    masks = []
    if row_ix.needs_mask:
        masks.append(f"{em.masks[row_ix.tile]}[:, None]")
    if col_ix.needs_mask:
        masks.append(f"{em.masks[col_ix.tile]}[None, :]")
    mask = " & ".join(masks)
    masked = f", mask={mask}, other=0" if mask else ""
    bits = param.bits
    name = e.tensor
    em.line(f"# {name}[{row_ix.tile}, {col_ix.tile}]: {param.format} codes, {bits}-bit fields of 32-bit words")
    row = _row(em, e.tensor, rows)
    tv = em.kernel.tile_vars()[col_ix.tile]
    per_word = 32 // bits if 32 % bits == 0 else 0
    if per_word and tv.block is not None and tv.block % per_word == 0:
        codes = _unpack_whole_words(em, e, param, row, tv, per_word)
    else:
        codes = _gather_codes(em, e, param, row, cols, mask, masked)
    code = em.bind(f"({codes} & {(1 << bits) - 1}).to(tl.int32)", f"{name}_codes")
    if param.signed:  # two's complement in the low bits: sign-extend
        code = em.bind(f"({code} ^ {1 << (bits - 1)}) - {1 << (bits - 1)}", f"{name}_signed")
    if param.table:  # minifloat / codebook: the code indexes the format's value table (host-computed, exact)
        code = em.bind(f"tl.load({em.tables[name]} + {code})", f"{name}_values")
    if e.scale is None:
        return f"{code}.to({e.type.dtype.triton})"
    assert e.group is not None
    group = em.bind(f"{cols} // {strip_parens(em.expr(e.group))}", f"{name}_group")
    if e.type.dtype == dt.i8:
        return _integer_levels(em, e, code, rows, group, masked, f"{name}_{row_ix.tile}{col_ix.tile}")
    if param.e8m0_scales:  # 2 ** (code - 127) built from its bits (exact); code 0 is 2**-127, 255 NaN
        raw = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.int32)", f"{e.scale}_e8m0")
        scale = em.bind(f"tl.where({raw} == 0, 0x00400000, tl.where({raw} == 255, 0x7FC00000, {raw} << 23))"
                        f".to(tl.float32, bitcast=True)", f"{e.scale}_{name}")
    elif param.e4m3_scales:  # nvfp4: block scales are fp8_e4m3 codes, decoded through that format's table
        raw = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.int32)", f"{e.scale}_e4m3")
        scale = em.bind(f"tl.load({em.tables[name + ':scales']} + {raw})", f"{e.scale}_{name}")
    else:
        scale = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.float32)", f"{e.scale}_{name}")
    value = f"{code}.to(tl.float32)"
    if e.zero is not None:
        zero = em.bind(f"tl.load({grouped(em, e.zero, rows, group)}{masked}).to(tl.float32)", f"{e.zero}_{name}")
        value = f"({value} - {zero})"
    value = f"{value} * {scale}"
    if mask:  # padding lanes hold 0, as plain masked loads do (passes/masks.py relies on it)
        value = f"tl.where({mask}, {value}, 0.0)"
    out = em.bind(value, f"{name}_{row_ix.tile}{col_ix.tile}")
    return out if e.type.dtype == dt.f32 else f"{out}.to({e.type.dtype.triton})"


def _integer_levels(em: Emitter, e: ir.QuantLoad, code: str, rows: str, group: str, masked: str, out: str) -> str:
    """Two-level weights (integer scales): ``(code - zero) * scale`` in int32, an exact int8 by construction
    (tilec.formats.two_level), so the main loop never leaves the integer domain."""
    assert e.scale is not None and e.zero is not None
    name = e.tensor
    scale = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.int32)", f"{e.scale}_{name}")
    zero = em.bind(f"tl.load({grouped(em, e.zero, rows, group)}{masked}).to(tl.int32)", f"{e.zero}_{name}")
    # padding lanes hold 0 (passes/masks.py relies on it): their scale was loaded as 0 under the mask
    return f"{em.bind(f'({code} - {zero}) * {scale}', out)}.to(tl.int8)"


def _row(em: Emitter, tensor: str, rows: str) -> str:
    stride = em.strides.get((tensor, 0))
    return f"{em.ptrs[tensor]} + {rows}[:, None]" + (f" * {stride}" if stride else "")


def grouped(em: Emitter, tensor: str, rows: str, group: str) -> str:
    col_stride = em.strides.get((tensor, 1))
    col = f"{group}[None, :]" + (f" * {col_stride}" if col_stride else "")
    return f"{_row(em, tensor, rows)} + {col}"


def _unpack_whole_words(em: Emitter, e: ir.QuantLoad, param: ir.PackedParam, row: str, tv: ir.TileVar,
                        per_word: int) -> str:
    """Widths dividing 32: load the tile's words once ([rows, BLOCK_K / per_word]) and unpack in registers:
    field j of word w is code w * per_word + j, so a row-major reshape restores the code order."""
    name, bits = e.tensor, param.bits
    assert tv.block is not None
    words = tv.block // per_word
    offs_w = em.bind(f"{em.tile_index[tv.name]} * {words} + tl.arange(0, {words})", f"{name}_word")
    total = em.bind(f"({em.extent(tv.extent)} * {bits} + 31) // 32", f"{name}_words_per_row")
    row_ix = e.index[0]
    assert isinstance(row_ix, ir.TileIndex)
    row_mask = f"{em.masks[row_ix.tile]}[:, None] & " if row_ix.needs_mask else ""
    packed = em.bind(f"tl.load({row} + {offs_w}[None, :], mask={row_mask}({offs_w} < {total})[None, :], other=0)"
                     f".to(tl.uint32, bitcast=True)", f"{name}_words")
    fields = em.bind(f"(tl.arange(0, {per_word}) * {bits}).to(tl.uint32)", f"{name}_fields")
    return f"tl.reshape({packed}[:, :, None] >> {fields}[None, None, :], ({em.block(e.type.axes[0])}, {tv.block}))"


def _gather_codes(em: Emitter, e: ir.QuantLoad, param: ir.PackedParam, row: str, cols: str, mask: str,
                  masked: str) -> str:
    """Any width: fetch the word (and, for a code crossing a word boundary, the next one) for every code."""
    name, bits = e.tensor, param.bits
    bit = em.bind(f"{cols} * {bits}", f"{name}_bit")
    word = em.bind(f"{bit} >> 5", f"{name}_word")
    shift = em.bind(f"({bit} & 31).to(tl.uint32)", f"{name}_shift")
    lo = em.bind(f"tl.load({row} + {word}[None, :]{masked}).to(tl.uint32, bitcast=True)", f"{name}_lo")
    codes = f"({lo} >> {shift}[None, :])"
    if 32 % bits:
        spill = em.bind(f"{shift} > {32 - bits}", f"{name}_crosses")
        hi_mask = f"{mask} & {spill}[None, :]" if mask else f"{spill}[None, :]"
        hi = em.bind(f"tl.load({row} + ({word} + 1)[None, :], mask={hi_mask}, other=0).to(tl.uint32, bitcast=True)",
                     f"{name}_hi")
        codes = f"({codes} | tl.where({spill}[None, :], {hi} << ((32 - {shift}) & 31)[None, :], 0))"
    return codes
