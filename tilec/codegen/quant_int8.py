"""Two-level weights (W4A8) with the group scale deferred: ``code - zero`` as an int8 dot operand, four
codes per 32-bit operation (SIMD within a register), never one int32 per code.

For ``uintB`` (B = 1, 2, 4) a byte of a packed word holds ``8 / B`` consecutive codes, so::

    lanes_j = (word >> j*B) & field * 0x01010101      byte b = code b * (8/B) + j      (j < 8/B)
    int8s_j = (lanes_j + (128 - zero) * 0x01010101) ^ 0x80808080

Each byte of ``lanes_j + (128 - zero)`` is ``code - zero + 128``, in [0, 255] with no carry into the next
byte when ``0 <= zero <= 128`` (every two-level zero point: quantize clamps it to [0, 2**B - 1]); XOR-ing
the top bit turns ``code - zero + 128`` into the two's complement byte of ``code - zero``.  A zero point
above 128 belongs to no valid two-level weight (``|(code - zero) * s2| <= 127`` with s2 >= 1 forbids it);
its bytes may carry into the next code of the same row and group, where the per-weight path wraps too.

*The K order of the product* (uint4).  A dot product does not depend on the order of its K terms, only
on both operands using the same one.  The tile is produced in an order where each thread's ``lanes_j``
register is one 32-bit register of Triton's int8 mma operand layout, so the unpacked weights stay in
registers instead of taking a shared-memory round trip, and the activation tile is permuted the same way
where the product is emitted (tilec/codegen/lowering.py ``_dot``).  That layout depends on the Triton
version (measured from sm_90 cubins at the 16 x 128 x 128 decode tile): 3.9 gives int8 operands
``kWidth = 4`` (4 consecutive K per thread, its registers 16 K apart): in each 4-word group of K, stream
order ``[word q, byte b, lane j]`` becomes ``[lane j, word q, byte b]`` (17.3 instructions per word; the
stream order takes 29.8, through shared memory); 3.6 gives ``kWidth = 8`` (8 consecutive K per thread):
within each word ``[byte b, lane j]`` becomes ``[lane j, byte b]`` (17.4; stream order 31.9, the other
order 26.7 through shared memory).  Either order is correct under either version.  Padding lanes are
zeroed before the permutation; other widths keep the stream order.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir

if TYPE_CHECKING:
    from tilec.codegen.triton_emit import Emitter


def applies(kernel: ir.Kernel, e: ir.QuantLoad) -> bool:
    """``code - zero`` wanted as int8 with the scale deferred (defer_group_scale, which puts such a load
    only under a product's transpose), unsigned codes of 1, 2 or 4 bits (a byte holds whole codes and
    ``code - zero + 128`` cannot carry); the caller checks that the K block holds whole words."""
    param = kernel.param(e.tensor)
    if not isinstance(param, ir.PackedParam) or param.bits not in (1, 2, 4) or param.signed or param.table:
        return False
    return e.scale is None and e.zero is not None and e.tile_group and e.type.dtype == dt.i8


@functools.cache
def mma_int8_kwidth() -> int:
    """Consecutive K per thread in Triton's int8 mma operand layout: 8 under 3.6, 4 under 3.9 (read from
    the TTGIR of both; versions in between are taken to be like 3.9)."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("triton").split(".")[:2])
    return 8 if (major, minor) < (3, 9) else 4


def permuted_block(kernel: ir.Kernel, e: ir.QuantLoad) -> int | None:
    """The K block when ``e`` (which :func:`applies`) is emitted in the product's K order (uint4, whole
    4-word groups), else None (stream order)."""
    col_ix = e.index[1]
    block = kernel.tile_vars()[col_ix.tile].block if isinstance(col_ix, ir.TileIndex) else None
    param = kernel.param(e.tensor)
    ok = isinstance(param, ir.PackedParam) and param.bits == 4 and block is not None and block % 32 == 0
    return block if ok else None


def permute_activations(em: Emitter, e: ir.Dot, a: str) -> str:
    """``a`` (``e``'s left operand, guarded) in the K order of ``e``'s weight operand, or as it is."""
    load = e.b.operand if isinstance(e.b, ir.Trans) else None
    if not isinstance(load, ir.QuantLoad):
        return a
    from tilec.codegen.quant_load import block_of, magic_k_order, permute_word_lanes

    name = f"{a}_k_order" if a.isidentifier() else "a_k_order"
    per_word = magic_k_order(em.kernel, load)  # f16 magic unpack (quant_load.py): K permuted within words
    if per_word is not None:
        _, words_block = block_of(em, load)
        return em.bind(permute_word_lanes(a, em.block(e.a.type.axes[0]), words_block, per_word), name)
    if not applies(em.kernel, load):
        return a
    block = permuted_block(em.kernel, load)
    if block is None:
        return a
    return em.bind(permute_k(a, em.block(e.a.type.axes[0]), block), name)


def permute_k(tile: str, rows: str, block: int) -> str:
    """uint4 stream order -> the product's K order (module docstring), for the installed Triton."""
    if mma_int8_kwidth() == 8:  # within each word: [byte b, lane j] -> [lane j, byte b]
        shape, order = f"({rows}, {block // 8}, 4, 2)", "(0, 1, 3, 2)"
    else:  # within each 4-word group: [word q, byte b, lane j] -> [lane j, word q, byte b]
        shape, order = f"({rows}, {block // 32}, 4, 4, 2)", "(0, 1, 4, 2, 3)"
    return f"tl.reshape(tl.permute(tl.reshape({tile}, {shape}), {order}), ({rows}, {block}))"


def emit_int8_lanes(em: Emitter, e: ir.QuantLoad, param: ir.PackedParam, packed: str, zero: str, mask: str) -> str:
    """``packed``: the tile's words ([rows, words], uint32); ``zero``: the per-row zero points ([rows])."""
    from tilec.codegen.quant_load import block_of

    name, bits = e.tensor, param.bits
    per_byte = 8 // bits
    field = (1 << bits) - 1
    bias = em.bind(f"((128 - {zero}.to(tl.int32)) * 0x01010101).to(tl.uint32)[:, None]", f"{e.zero}_bias")
    parts = []
    for j in range(per_byte):
        shifted = f"({packed} >> {j * bits})" if j else packed
        lanes = em.bind(f"(({shifted} & {field * 0x01010101:#x}) + {bias}) ^ 0x80808080", f"{name}_lanes{j}")
        parts.append(lanes)
    # entry b * per_byte + j: byte b of lanes_j (code index within the word)
    entries = [f"({parts[j]} >> {8 * b}).to(tl.int8)" if b else f"{parts[j]}.to(tl.int8)"
               for b in range(4) for j in range(per_byte)]
    while len(entries) > 1:
        n = len(entries) // 2
        entries = [em.bind(f"tl.join({entries[i]}, {entries[i + n]})", f"{name}_join") for i in range(n)]
    rows, cols = block_of(em, e)
    value = f"tl.reshape({entries[0]}, ({rows}, {cols}))"
    if mask:  # padding lanes hold 0 (passes/masks.py relies on it), in stream order
        value = f"tl.where({mask}, {value}, 0)"
    stream = em.bind(value, f"{name}_stream")
    row_ix, col_ix = e.index
    assert isinstance(row_ix, ir.TileIndex) and isinstance(col_ix, ir.TileIndex)
    block = permuted_block(em.kernel, e)
    if block is None:
        return em.bind(stream, f"{name}_{row_ix.tile}{col_ix.tile}")
    em.line(f"# {name}: K permuted (kWidth {mma_int8_kwidth()}: each thread's words are mma operand registers);"
            " the activations follow")
    return em.bind(permute_k(stream, rows, block), f"{name}_{row_ix.tile}{col_ix.tile}")
