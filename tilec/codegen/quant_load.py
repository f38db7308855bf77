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

from tilec.codegen import quant_int8
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.types import Axis

if TYPE_CHECKING:
    from tilec.codegen.triton_emit import Emitter


def emit_quant_load(em: Emitter, e: ir.QuantLoad) -> str:
    param = em.kernel.param(e.tensor)
    assert isinstance(param, ir.PackedParam)
    row_ix, col_ix = e.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex)
    rows, cols = em.offsets[row_ix.tile], em.offsets[col_ix.tile]
    mask = _lane_mask(em, e)
    masked = f", mask={mask}, other=0" if mask else ""
    bits = param.bits
    name = e.tensor
    em.line(f"# {name}[{row_ix.tile}, {col_ix.tile}]: {param.format} codes, {bits}-bit fields of 32-bit words")
    row = _row(em, e.tensor, rows)
    tv = em.kernel.tile_vars()[col_ix.tile]
    per_word = 32 // bits if 32 % bits == 0 else 0
    whole = bool(per_word) and tv.block is not None and tv.block % per_word == 0
    if whole and denormal_applies(em.kernel, e):
        return _denormal_values(em, e, param, _load_words(em, e, param, row, tv, per_word), per_word, mask)
    if whole and _magic_applies(em, e, param):
        return _magic_values(em, e, param, _load_words(em, e, param, row, tv, per_word), per_word, mask)
    if whole and quant_int8.applies(em.kernel, e):
        words = _load_words(em, e, param, row, tv, per_word)
        assert e.zero is not None and e.group is not None
        zero = em.bind(f"tl.load({_row_vector(em, e.zero, row_ix, col_ix.tile, e.group)})", f"{e.zero}_{name}")
        return quant_int8.emit_int8_lanes(em, e, param, words, zero, mask)
    if whole:
        codes = _unpack_whole_words(em, e, _load_words(em, e, param, row, tv, per_word), tv, per_word)
    else:
        codes = _gather_codes(em, e, param, row, cols, mask, masked)
    code = em.bind(f"({codes} & {(1 << bits) - 1}).to(tl.int32)", f"{name}_codes")
    if param.signed:  # two's complement in the low bits: sign-extend
        code = em.bind(f"({code} ^ {1 << (bits - 1)}) - {1 << (bits - 1)}", f"{name}_signed")
    if param.table:  # minifloat / codebook: the code indexes the format's value table (host-computed, exact)
        code = em.bind(f"tl.load({em.tables[name]} + {code})", f"{name}_values")
    if e.scale is None and e.zero is not None and e.type.dtype == dt.i8:  # two-level, s2 deferred
        value = f"({code} - {_zero_points(em, e, rows, cols, masked, dt.i32)})"
        if mask:
            value = f"tl.where({mask}, {value}, 0)"
        return f"{em.bind(value, f'{name}_{row_ix.tile}{col_ix.tile}')}.to(tl.int8)"
    if e.scale is None and e.zero is not None:  # code - zero; the scale follows the product (defer_group_scale)
        value = f"({code}.to(tl.float32) - {_zero_points(em, e, rows, cols, masked)})"
        if mask:
            value = f"tl.where({mask}, {value}, 0.0)"
        return f"{em.bind(value, f'{name}_{row_ix.tile}{col_ix.tile}')}.to({e.type.dtype.triton})"
    if e.scale is None:
        return f"{code}.to({e.type.dtype.triton})"
    assert e.group is not None
    group = em.bind(f"{cols} // {em.expr(e.group)}", f"{name}_group")
    if e.type.dtype == dt.i8:
        return _integer_levels(em, e, code, rows, group, masked, f"{name}_{row_ix.tile}{col_ix.tile}")
    if param.e8m0_scales:  # 2 ** (code - 127) built from its bits (exact); code 0 is 2**-127, 255 NaN
        raw = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.int32)", f"{e.scale}_e8m0")
        scale = em.bind(f"tl.where({raw} == 0, 0x00400000, tl.where({raw} == 255, 0x7FC00000, {raw} << 23))"
                        f".to(tl.float32, bitcast=True)", f"{e.scale}_{name}")
    elif param.e4m3_scales:  # nvfp4: block scales are fp8_e4m3 codes, decoded through that format's table
        raw = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.int32)", f"{e.scale}_e4m3")
        scale = em.bind(f"tl.load({em.tables[name + ':scales']} + {raw})", f"{e.scale}_{name}")
    elif e.tile_group:  # the tile lies within one group: one scale per row
        scale = em.bind(f"tl.load({_row_vector(em, e.scale, row_ix, col_ix.tile, e.group)}).to(tl.float32)",
                        f"{e.scale}_{name}") + "[:, None]"
    else:
        scale = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.float32)", f"{e.scale}_{name}")
    value = f"{code}.to(tl.float32)"
    if e.zero is not None:
        value = f"({value} - {_zero_points(em, e, rows, cols, masked)})"
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
    # One scale and zero point per code even where the tile lies within one group (tile_group): per-row
    # vectors measured worse at 128 x 128 x 128 / 8 warps on sm_90 (1272 B spilled against none).
    scale = em.bind(f"tl.load({grouped(em, e.scale, rows, group)}{masked}).to(tl.int32)", f"{e.scale}_{name}")
    zero = em.bind(f"tl.load({grouped(em, e.zero, rows, group)}{masked}).to(tl.int32)", f"{e.zero}_{name}")
    # padding lanes hold 0 (passes/masks.py relies on it): their scale was loaded as 0 under the mask
    return f"{em.bind(f'({code} - {zero}) * {scale}', out)}.to(tl.int8)"


def _lane_mask(em: Emitter, e: ir.QuantLoad) -> str:
    row_ix, col_ix = e.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex)
    masks = []
    if row_ix.needs_mask:
        masks.append(f"{em.masks[row_ix.tile]}[:, None]")
    if col_ix.needs_mask:
        masks.append(f"{em.masks[col_ix.tile]}[None, :]")
    return " & ".join(masks)


def block_of(em: Emitter, e: ir.QuantLoad) -> tuple[str, int]:
    """The tile's shape: the row block's name and the K block."""
    col_ix = e.index[1]
    assert isinstance(col_ix, ir.TileIndex)
    block = em.kernel.tile_vars()[col_ix.tile].block
    assert block is not None
    return em.block(e.type.axes[0]), block


def _row(em: Emitter, tensor: str, rows: str) -> str:
    stride = em.strides.get((tensor, 0))
    return f"{em.ptrs[tensor]} + {rows}[:, None]" + (f" * {stride}" if stride else "")


def grouped(em: Emitter, tensor: str, rows: str, group: str) -> str:
    col_stride = em.strides.get((tensor, 1))
    col = f"{group}[None, :]" + (f" * {col_stride}" if col_stride else "")
    return f"{_row(em, tensor, rows)} + {col}"


def _load_words(em: Emitter, e: ir.QuantLoad, param: ir.PackedParam, row: str, tv: ir.TileVar,
                per_word: int) -> str:
    """Widths dividing 32: the tile's words, each loaded once ([rows, BLOCK_K / per_word], uint32)."""
    name, bits = e.tensor, param.bits
    assert tv.block is not None
    words = tv.block // per_word
    offs_w = em.bind(f"{em.tile_index[tv.name]} * {words} + tl.arange(0, {words})", f"{name}_word")
    row_ix, col_ix = e.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex)
    masks = [f"{em.masks[row_ix.tile]}[:, None]"] if row_ix.needs_mask else []
    if col_ix.needs_mask:  # the last K tile may run past the row's words
        total = em.bind(f"({em.extent(tv.extent)} * {bits} + 31) // 32", f"{name}_words_per_row")
        masks.append(f"({offs_w} < {total})[None, :]")
    masked = f", mask={' & '.join(masks)}, other=0" if masks else ""
    return em.bind(f"tl.load({row} + {offs_w}[None, :]{masked}).to(tl.uint32, bitcast=True)", f"{name}_words")


def _unpack_whole_words(em: Emitter, e: ir.QuantLoad, packed: str, tv: ir.TileVar, per_word: int) -> str:
    """Field j of word w is code w * per_word + j, so a row-major reshape restores the code order."""
    name = e.tensor
    fields = em.bind(f"(tl.arange(0, {per_word}) * {32 // per_word}).to(tl.uint32)", f"{name}_fields")
    return f"tl.reshape({packed}[:, :, None] >> {fields}[None, None, :], ({em.block(e.type.axes[0])}, {tv.block}))"


def _magic_applies(em: Emitter, e: ir.QuantLoad, param: ir.PackedParam) -> bool:
    """Integer codes wanted as f16 ``code - zero`` (the scale deferred past the product), or as f16
    ``(code - zero) * scale`` with f16 scales one per row (the f32 product of the two is exact, so rounding
    it to f16 equals the f16 multiply)."""
    if e.scale is not None and (param.e8m0_scales or param.e4m3_scales or em.kernel.param(e.scale).dtype != dt.f16):
        return False
    return (e.group is not None and e.tile_group and e.type.dtype == dt.f16 and not param.table
            and param.bits <= 8)


def _magic_values(em: Emitter, e: ir.QuantLoad, param: ir.PackedParam, packed: str, per_word: int,
                  mask: str) -> str:
    """f16 ``code - zero`` without an integer-to-float conversion per code.

    ``(word >> s*B) & (2**B - 1) * 0x00010001`` holds code s in its low 16-bit lane and code s + per_word/2
    in its high lane; OR-ing 0x6400 (1024.0) into each lane makes f16 1024 + code, exact; subtracting
    1024 + zero (also exact) gives code - zero.  Lanes are reinterpreted as f16 and joined so the last axis
    enumerates a word's codes in stream order (join's new axis is the least significant, so pairing lane s
    with lane s + half at every level yields code index = lane-half * (per_word/2) + s).
    """
    name, bits = e.tensor, param.bits
    half = per_word // 2
    field = (1 << bits) - 1
    # Signed codes: XOR-ing the sign bit too (it is disjoint from 0x6400's bits, so XOR also sets those)
    # gives 1024 + code + 2**(B-1) in one operation.
    magic = 0x64006400 | ((1 << (bits - 1)) * 0x00010001 if param.signed else 0)
    pairs = []
    for s in range(half):
        shifted = f"({packed} >> {s * bits})" if s else packed
        lanes = em.bind(f"({shifted} & {field * 0x00010001:#x}) {'^' if param.signed else '|'} {magic:#x}",
                        f"{name}_lanes{s}")
        lo = f"{lanes}.to(tl.uint16).to(tl.float16, bitcast=True)"
        hi = f"({lanes} >> 16).to(tl.uint16).to(tl.float16, bitcast=True)"
        pairs.append(em.bind(f"tl.join({lo}, {hi})", f"{name}_pair{s}"))
    pairs = [_join_tree(em, pairs, name)]
    row_ix, col_ix = e.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex)
    tv = em.kernel.tile_vars()[col_ix.tile]
    biased = em.bind(f"tl.reshape({pairs[0]}, ({em.block(e.type.axes[0])}, {tv.block}))", f"{name}_plus_1024")
    assert e.group is not None
    if e.zero is not None:  # 1024 + zero as f16: the zero point (< 256) in the mantissa of 1024.0
        zero = em.bind(f"tl.load({_row_vector(em, e.zero, row_ix, col_ix.tile, e.group)})", f"{e.zero}_{name}")
        bias = em.bind(f"({zero}.to(tl.uint16) | 0x6400).to(tl.float16, bitcast=True)[:, None]", f"{e.zero}_plus_1024")
    else:
        bias = repr(1024.0 + (1 << (bits - 1) if param.signed else 0))
    value = f"({biased} - {bias})"
    if e.scale is not None:
        scale = em.bind(f"tl.load({_row_vector(em, e.scale, row_ix, col_ix.tile, e.group)})", f"{e.scale}_{name}")
        value = f"{value} * {scale}[:, None]"
    if mask:  # padding lanes hold 0, as plain masked loads do (passes/masks.py relies on it)
        value = f"tl.where({mask}, {value}, 0.0)"
    return em.bind(value, f"{name}_{row_ix.tile}{col_ix.tile}")


DENORMAL_EXP = 9  # _denormal_values computes (code - zero) * 2**-9; emit_group_scale multiplies by 2**9


def denormal_applies(kernel: ir.Kernel, e: ir.QuantLoad) -> bool:
    """Codes in the product's K order (:func:`magic_k_order`) take the f16-subnormal unpack."""
    return magic_k_order(kernel, e) is not None


def _denormal_values(em: Emitter, e: ir.QuantLoad, param: ir.PackedParam, packed: str, per_word: int,
                     mask: str) -> str:
    """f16 ``(code - zero) * 2**-9`` in the product's K order, three instructions per two codes at most.

    Lanes register s holds codes s and s + per_word/2 of a word (bits ``s*B`` and ``s*B + 16``), as in
    :func:`_magic_values`, but without the 1024.0 exponent: a 16-bit lane holding ``code << r`` (all below
    bit 10) *is* the f16 subnormal ``code * 2**(r - 24)``, so one fused multiply-add per register,
    ``lanes * 2**(15 - r) - zero * 2**-9``, gives ``(code - zero) * 2**-9`` in both lanes, exactly (an 8-bit
    integer times a power of two, one rounding of an exact value).  Shifts are by whole bytes (``r < 8``),
    so one serves every field of a byte (uint4: ``w`` and ``w >> 8`` serve the four registers: 1 shift,
    4 AND, 4 HFMA2 per word).  Signed codes flip their sign bit in the same AND-XOR (``code + 2**(B-1)``)
    and take ``-2**(B-1) * 2**-9`` as the bias.  The 2**-9 is exact and undone on the product's f32 group
    scale (:func:`emit_group_scale`).  On a GPU each register takes one ``fma.rn.f16x2`` (PTX keeps f16
    subnormals without ``.ftz``); the interpreter computes the same f16 values one lane at a time.

    *The K order.*  A dot does not depend on its K order, only on both operands using the same one.  Within
    each word, code ``h * per_word/2 + s`` (lane h of register s) goes to position ``2s + h``: each lanes
    register then holds two K-consecutive elements, as every f16 mma operand register does (whatever
    Triton's kWidth), so no lanes are split and re-paired; the activations are permuted alike where the
    product is emitted (quant_int8.permute_activations).  Padding lanes are zeroed before the permutation.
    """
    name, bits = e.tensor, param.bits
    half = per_word // 2
    field = (1 << bits) - 1
    row_ix, col_ix = e.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex) and e.group is not None
    gpu = em.target == "cuda"
    unit = repr(2.0**-DENORMAL_EXP)
    if e.zero is not None:
        zero = em.bind(f"tl.load({_row_vector(em, e.zero, row_ix, col_ix.tile, e.group)})", f"{e.zero}_{name}")
        bias = em.bind(f"({zero}.to(tl.float16) * -{unit})[:, None]", f"{e.zero}_{name}_scaled")  # exact
    else:
        offset = -(1 << (bits - 1)) * 2.0**-DENORMAL_EXP if param.signed else 0.0  # signed: code + 2**(B-1) below
        bias = em.bind(f"tl.full((1, 1), {offset!r}, tl.float16)", f"{name}_no_zero")
    if gpu:  # -zero * 2**-9 in both lanes
        bias = em.bind(f"{bias}.to(tl.uint16, bitcast=True).to(tl.uint32) * 0x00010001", f"{bias}_x2")
    shifted: dict[int, str] = {}
    pairs = []
    for s in range(half):
        shift, r = (s * bits) // 8 * 8, (s * bits) % 8
        if shift not in shifted:
            shifted[shift] = em.bind(f"{packed} >> {shift}", f"{name}_shr{shift}") if shift else packed
        flip = f" ^ {((1 << (bits - 1)) << r) * 0x00010001:#x}" if param.signed else ""  # two's complement + 2**(B-1)
        lanes = em.bind(f"({shifted[shift]} & {(field << r) * 0x00010001:#x}){flip}", f"{name}_lanes{s}")
        mult = 2.0 ** (24 - r - DENORMAL_EXP)
        if gpu:
            f16x2 = ((24 - r - DENORMAL_EXP + 15) << 10) * 0x00010001  # f16 2**(15 - r) in both lanes
            lanes = em.bind(f'tl.inline_asm_elementwise("{{ .reg .b32 m; mov.b32 m, {f16x2:#x}; '
                            f'fma.rn.f16x2 $0, $1, m, $2; }}", "=r,r,r", [{lanes}, {bias}], dtype=tl.uint32, '
                            f"is_pure=True, pack=1)", f"{name}_values{s}")
            lo = f"{lanes}.to(tl.uint16).to(tl.float16, bitcast=True)"
            hi = f"({lanes} >> 16).to(tl.uint16).to(tl.float16, bitcast=True)"
        else:
            lo = f"{lanes}.to(tl.uint16).to(tl.float16, bitcast=True) * {mult!r} + {bias}"
            hi = f"({lanes} >> 16).to(tl.uint16).to(tl.float16, bitcast=True) * {mult!r} + {bias}"
        pairs.append(em.bind(f"tl.join({lo}, {hi})", f"{name}_pair{s}"))
    pairs = [_join_tree(em, pairs, name)]
    rows, block = block_of(em, e)
    value = f"tl.reshape({pairs[0]}, ({rows}, {block}))"
    if mask:  # padding lanes hold 0, as plain masked loads do (passes/masks.py relies on it)
        value = f"tl.where({mask}, {value}, 0.0)"
    stream = em.bind(value, f"{name}_stream")
    em.line(f"# {name}: K permuted within each word (lane pairs (s, s + {half}) are mma operand registers);"
            " the activations follow")
    return em.bind(permute_word_lanes(stream, rows, block, per_word), f"{name}_{row_ix.tile}{col_ix.tile}")


def magic_k_order(kernel: ir.Kernel, e: ir.QuantLoad) -> int | None:
    """Codes per word when ``e`` is emitted in the product's K order (the f16-subnormal unpack, scale deferred:
    defer_group_scale puts such a load only under a product's transpose; whole words), else None."""
    param = kernel.param(e.tensor)
    if not isinstance(param, ir.PackedParam) or param.bits not in (1, 2, 4, 8) or param.table:
        return None
    if e.scale is not None or not e.tile_group or e.type.dtype != dt.f16 or e.group is None:
        return None
    col_ix = e.index[1]
    block = kernel.tile_vars()[col_ix.tile].block if isinstance(col_ix, ir.TileIndex) else None
    per_word = 32 // param.bits
    return per_word if block is not None and block % per_word == 0 else None


def permute_word_lanes(tile: str, rows: str, block: int, per_word: int) -> str:
    """Within each word, stream order ``[lane h, s]`` (code h * per_word/2 + s) -> ``[s, lane h]``."""
    shape = f"({rows}, {block // per_word}, 2, {per_word // 2})"
    return f"tl.reshape(tl.permute(tl.reshape({tile}, {shape}), (0, 1, 3, 2)), ({rows}, {block}))"


def _row_vector(em: Emitter, tensor: str, row_ix: ir.TileIndex, tile: str, group: ir.Expr) -> str:
    """Load arguments for ``tensor[rows, (t * BLOCK) // group]``, t the reduction tile: one value per row
    (the tile lies within one group: passes/defer_group_scale.py proved it)."""
    tv = em.kernel.tile_vars()[tile]
    column = f"({em.tile_index[tile]} * {em.block(Axis.tile(tv.name, tv.extent))}) // {em.expr(group)}"
    split = next((loop.split for loop in ir.walk_loops(em.kernel.body.body) if loop.tile.name == tile), 1)
    if split > 1 and tile in em.masks:
        # split-K: the last split's run of tiles may pass the end of K (codegen/split_k.py).  Such a tile's
        # codes are masked to 0, so any in-bounds scale serves: the last group's.
        param = em.kernel.param(tensor)
        assert isinstance(param, ir.TensorParam)
        column = f"tl.minimum({column}, {em.extent(param.dims[1])} - 1)"
    first = em.bind(column, f"{tensor}_column")
    stride0, stride1 = em.strides.get((tensor, 0)), em.strides.get((tensor, 1))
    rows = em.offsets[row_ix.tile] + (f" * {stride0}" if stride0 else "")
    masked = f", mask={em.masks[row_ix.tile]}, other=0" if row_ix.needs_mask else ""
    return f"{em.ptrs[tensor]} + {rows} + {first}" + (f" * {stride1}" if stride1 else "") + masked


def _zero_points(em: Emitter, e: ir.QuantLoad, rows: str, cols: str, masked: str, dtype: dt.DType = dt.f32) -> str:
    """Zero points (f32, or ``dtype``): one per row when the tile lies within one group, else one per code."""
    assert e.zero is not None and e.group is not None
    row_ix = e.index[0]
    assert isinstance(row_ix, ir.TileIndex)
    if e.tile_group:
        col_ix = e.index[1]
        assert isinstance(col_ix, ir.TileIndex)
        zero = em.bind(f"tl.load({_row_vector(em, e.zero, row_ix, col_ix.tile, e.group)}).to({dtype.triton})",
                       f"{e.zero}_{e.tensor}")
        return f"{zero}[:, None]"
    group = em.bind(f"{cols} // {em.expr(e.group)}", f"{e.tensor}_group")
    return em.bind(f"tl.load({grouped(em, e.zero, rows, group)}{masked}).to({dtype.triton})", f"{e.zero}_{e.tensor}")


def emit_group_scale(em: Emitter, e: ir.GroupScale) -> str:
    """``scale[n, (t * BLOCK_K) // group]`` as f32 (i32 for two-level u8 scales), one per row of the tile;
    times 2**9 where the product's weights came from :func:`_denormal_values` (exact: a power of two)."""
    row_ix = e.index[0]
    assert isinstance(row_ix, ir.TileIndex)
    value = f"tl.load({_row_vector(em, e.tensor, row_ix, e.tile, e.group)}).to({e.type.dtype.triton})"
    loads = [q for stmt in ir.walk_stmts(em.kernel.body.body) if isinstance(stmt, (ir.Assign, ir.Store))
             for q in ir.walk_exprs(stmt.value) if isinstance(q, ir.QuantLoad) and q.tensor == e.quant
             and q.scale is None and q.tile_group]
    denormal = {denormal_applies(em.kernel, q) for q in loads}
    assert len(denormal) <= 1, f"{e.quant}: products in two unpack scalings"
    if denormal == {True}:
        value = f"{value} * {float(2**DENORMAL_EXP)!r}"
    return em.bind(value, f"{e.tensor}_{e.quant}")


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


def _join_tree(em: Emitter, pairs: list[str], name: str) -> str:
    """Join lane pairs ``[p0, p1, ...]`` pairwise (``p_i`` with ``p_{i + n/2}``) into one tile's last axis."""
    while len(pairs) > 1:
        n = len(pairs) // 2
        pairs = [em.bind(f"tl.join({pairs[i]}, {pairs[i + n]})", f"{name}_join") for i in range(n)]
    return pairs[0]
