"""Packing layouts: where the bits of each sub-byte code live in 32-bit words.

One :class:`PackedLayout` describes a packing; everything else is derived from it:

* :meth:`PackedLayout.locate` gives, for element ``i``, the pieces ``(plane, word, bit, nbits)``
  holding its bits;
* :func:`unpack_plan` turns ``locate`` on one *block* of elements into pure data
  (:class:`UnpackPlan`) that the code generator emits as shifts and masks;
* the host :func:`pack` and :func:`unpack` execute that same plan (scatter and gather), so the host
  packer and the in-kernel unpacker are never written twice.

The default packing (design.md, "Packing") is a dense little-endian bit stream along the packed
(last) axis: element ``i`` of a ``b``-bit code occupies stream bits ``[i*b, (i+1)*b)``, stream bit
``t`` is bit ``t % 32`` of word ``t // 32`` (bit 0 = least significant).  Widths that do not divide
32 cross word boundaries: 3-bit codes fill exactly 3 words per 32 codes, and code 10 has two bits in
word 0 and one in word 1.

Two refinements are layouts too:

* ``order``: elements are packed in groups of ``G = len(order)``; stream slot ``k`` of a group holds
  element ``order[k]`` of that group.  ``order=(0, 2, 4, 6, 1, 3, 5, 7)`` at 4 bits puts elements
  0 and 1 of each word in nibbles 0 and 4 (``w & 0x000F000F`` extracts a pair at once).  A
  :class:`~tilec.ir.layout.Layout` of size ``G`` (a bijection onto ``range(G)``) may stand for the
  permutation: ``Layout((4, 2), (2, 1))`` is that order.
* ``planes``: a code is split into bit planes, low bits first, each its own dense stream (its own
  tensor of words): ``bits=6, planes=(4, 2)`` stores the low 4 bits at 4 bits per code and the
  high 2 bits at 2 bits per code, so no code crosses a word.

Words are logically ``uint32``; host tensors hold them as ``int32`` with the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from tilec.ir.layout import Layout, LayoutError

__all__ = ["PackedLayout", "Piece", "UnpackPlan", "UnpackStep", "pack", "pack_planes", "unpack", "unpack_plan"]

WORD_BITS = 32


class Piece(NamedTuple):
    """A run of an element's bits: ``nbits`` bits at bit ``bit`` of word ``word`` of plane ``plane``.

    :meth:`PackedLayout.locate` lists an element's pieces from the code's least significant bits up,
    so piece ``k`` holds code bits ``[sum(nbits of pieces before k), ... + nbits)``.
    """

    plane: int
    word: int
    bit: int
    nbits: int


def _as_permutation(order: Layout | Sequence[int]) -> tuple[int, ...]:
    if isinstance(order, Layout):
        if not order.is_static:
            raise LayoutError(f"a packing order needs integer strides, got {order}")
        perm = tuple(int(order(k)) for k in range(order.size))
    else:
        perm = tuple(int(k) for k in order)
    if sorted(perm) != list(range(len(perm))):
        raise LayoutError(f"packing order {perm} is not a permutation of range({len(perm)})")
    return perm


@dataclass(frozen=True, init=False)
class PackedLayout:
    """How ``bits``-wide codes (1..8) are packed into 32-bit words along the last axis.

    ``order``: the element order within a group (a permutation or a :class:`Layout`, slot -> element),
    default ``(0,)`` (no reordering).  ``planes``: bit widths of the planes, low bits first, summing
    to ``bits``; default ``(bits,)``.  Frozen and hashable; ``order`` is stored as a tuple.
    """

    bits: int
    order: tuple[int, ...]
    planes: tuple[int, ...]

    def __init__(self, bits: int, order: Layout | Sequence[int] = (0,), planes: Sequence[int] | None = None) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise LayoutError(f"packed codes are 1 to 8 bits wide, got {bits!r}")
        perm = _as_permutation(order)
        pl = (bits,) if planes is None else tuple(int(b) for b in planes)
        if not pl or any(b < 1 for b in pl) or sum(pl) != bits:
            raise LayoutError(f"bit planes {pl} must be positive widths summing to {bits}")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "order", perm)
        object.__setattr__(self, "planes", pl)

    def __str__(self) -> str:
        parts = [f"{self.bits}b"]
        if self.group > 1:
            parts.append("order=" + ",".join(map(str, self.order)))
        if len(self.planes) > 1:
            parts.append("planes=" + "+".join(map(str, self.planes)))
        return "packed(" + " ".join(parts) + ")"

    @property
    def group(self) -> int:
        """``G``: elements per reordering group (``len(order)``)."""
        return len(self.order)

    @cached_property
    def slots(self) -> tuple[int, ...]:
        """The inverse of ``order``: element ``e`` of a group sits in stream slot ``slots[e]``."""
        inv = [0] * self.group
        for k, e in enumerate(self.order):
            inv[e] = k
        return tuple(inv)

    def plane_shift(self, plane: int) -> int:
        """The code bit where ``plane`` starts (planes hold the low bits first)."""
        return sum(self.planes[:plane])

    @cached_property
    def block(self) -> int:
        """``P``: the fewest elements (whole groups) that fill a whole number of words in every plane."""
        per_plane = [math.lcm(self.group * b, WORD_BITS) // b for b in self.planes]
        return math.lcm(*per_plane)

    @cached_property
    def block_words(self) -> tuple[int, ...]:
        """Words each plane spends on one block of :attr:`block` elements."""
        return tuple(self.block * b // WORD_BITS for b in self.planes)

    def words(self, n: int) -> tuple[int, ...]:
        """Words per plane for ``n`` elements: ``ceil(ceil(n/G)*G*b / 32)`` for a plane of ``b`` bits.

        The last group is padded with zero codes; ``PackedLayout(3).words(32) == (3,)``.
        """
        padded = -(-n // self.group) * self.group
        return tuple(-(-padded * b // WORD_BITS) for b in self.planes)

    def locate(self, i: int) -> list[Piece]:
        """Where element ``i``'s bits live, least significant first (1 piece, 2 where a word boundary is crossed).

        Element ``i = g*G + e`` sits in stream slot ``t = g*G + slots[e]`` of every plane; a plane of
        ``b`` bits stores it at stream bits ``[t*b, t*b + b)``.  Element ``i + block`` has the same
        pieces with ``word`` advanced by ``block_words[plane]``.
        """
        if i < 0:
            raise LayoutError(f"element index {i} is negative")
        g, e = divmod(i, self.group)
        t = g * self.group + self.slots[e]
        out: list[Piece] = []
        for p, b in enumerate(self.planes):
            word, bit = divmod(t * b, WORD_BITS)
            if bit + b <= WORD_BITS:
                out.append(Piece(p, word, bit, b))
            else:
                low = WORD_BITS - bit
                out += [Piece(p, word, bit, low), Piece(p, word + 1, 0, b - low)]
        return out


# ----------------------------------------------------------------------------
# the unpack plan


@dataclass(frozen=True)
class UnpackStep:
    """One gather: ``code[element] |= ((word[plane][word] >> shift) & mask) << dest``.

    ``element``: index within the block (``0 <= element < plan.block``); ``word``: index within the
    block's words of ``plane`` (``0 <= word < plan.block_words[plane]``); ``shift`` (0..31) is a right
    shift, ``mask = (1 << nbits) - 1``, ``dest`` the code bit the piece starts at.  The mask keeps
    only bits below ``32 - shift``, so an arithmetic right shift of an int32 word is as good as a
    logical one.
    """

    element: int
    plane: int
    word: int
    shift: int
    mask: int
    dest: int


@dataclass(frozen=True)
class UnpackPlan:
    """How to unpack one block of :attr:`block` elements; pure data, derived from ``locate``.

    Shapes: plane ``p``'s words for a row are viewed as ``[nblocks, block_words[p]]`` and the codes as
    ``[nblocks, block]``; every block runs the same :attr:`steps`.  Element ``j``'s code is the OR
    (:attr:`combine`; the pieces' bit ranges are disjoint, so a sum is the same) of its steps, which
    come sorted by ``(element, dest)``: one step per plane, two for a plane where ``j`` crosses a
    word boundary (the low bits from ``word`` at ``shift``, then the high bits from ``word + 1`` at
    shift 0).  Iterating a plan yields its steps.
    """

    layout: PackedLayout
    block: int
    block_words: tuple[int, ...]
    steps: tuple[UnpackStep, ...]
    combine: ClassVar[str] = "or"

    def __iter__(self) -> Iterator[UnpackStep]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def element_steps(self, j: int) -> tuple[UnpackStep, ...]:
        """The steps that build element ``j`` of the block."""
        return tuple(s for s in self.steps if s.element == j)

    def arrays(self, plane: int) -> dict[str, np.ndarray]:
        """The steps of ``plane`` as int64 arrays ``element, word, shift, mask, dest`` (one entry per step)."""
        sel = [s for s in self.steps if s.plane == plane]
        return {k: np.array([getattr(s, k) for s in sel], dtype=np.int64) for k in UNPACK_FIELDS}


UNPACK_FIELDS = ("element", "word", "shift", "mask", "dest")


@lru_cache(maxsize=256)
def unpack_plan(layout: PackedLayout) -> UnpackPlan:
    """The plan for ``layout``: :meth:`PackedLayout.locate` on elements ``0 .. block-1``, as steps."""
    steps = []
    for j in range(layout.block):
        dest = 0
        for piece in layout.locate(j):
            steps.append(UnpackStep(j, piece.plane, piece.word, piece.bit, (1 << piece.nbits) - 1, dest))
            dest += piece.nbits
    return UnpackPlan(layout, layout.block, layout.block_words, tuple(steps))


# ----------------------------------------------------------------------------
# host packer and unpacker, both executing the plan


_CHUNK = 1 << 22  # gathered entries per pass of the host loops: bounds their temporary memory


def _row_chunks(rows: int, per_row: int) -> Iterator[slice]:
    step = max(1, _CHUNK // max(1, per_row))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def _plane_tensors(plan: UnpackPlan, plane: int) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in plan.arrays(plane).items()}


def pack_planes(codes: torch.Tensor | np.ndarray, layout: PackedLayout) -> tuple[torch.Tensor, ...]:
    """Pack ``codes`` ``[..., n]`` (integers in ``[0, 2**bits)``) along the last axis; one tensor per plane.

    Returns int32 tensors ``[..., layout.words(n)[p]]``.  Runs the steps of :func:`unpack_plan` in
    reverse: ``word[plane][word] |= ((code[element] >> dest) & mask) << shift`` for every block.
    """
    c = torch.as_tensor(codes)
    if c.dtype.is_floating_point or c.dtype.is_complex or c.dtype == torch.bool or c.dim() == 0:
        raise LayoutError(f"pack expects an integer tensor [..., n] of codes, got {c.dtype} {tuple(c.shape)}")
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= 1 << layout.bits):
        raise LayoutError(f"codes must lie in [0, {1 << layout.bits}) for {layout.bits}-bit packing")
    plan = unpack_plan(layout)
    *batch, n = c.shape
    rows, nblocks, needs = math.prod(batch), -(-n // plan.block), layout.words(n)
    c = torch.nn.functional.pad(c.reshape(rows, n), (0, nblocks * plan.block - n)).reshape(rows, nblocks, plan.block)
    arrays = [_plane_tensors(plan, p) for p in range(len(plan.block_words))]
    out = [torch.empty((rows, need), dtype=torch.int32) for need in needs]
    for sl in _row_chunks(rows, nblocks * len(plan)):
        cc = c[sl].to(torch.int64)
        for p, (a, nwords, need) in enumerate(zip(arrays, plan.block_words, needs)):
            bits = ((cc[..., a["element"]] >> a["dest"]) & a["mask"]) << a["shift"]  # [rows, nblocks, steps]
            w = torch.zeros((cc.shape[0], nblocks, nwords), dtype=torch.int64).index_add_(-1, a["word"], bits)
            w = w.reshape(cc.shape[0], nblocks * nwords)[:, :need]
            out[p][sl] = torch.where(w >= 1 << 31, w - (1 << 32), w).to(torch.int32)
    return tuple(w.reshape(*batch, w.shape[-1]) for w in out)


def pack(codes: torch.Tensor | np.ndarray, layout: PackedLayout) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """:func:`pack_planes`, returning the single tensor ``[..., words]`` when the layout has one plane."""
    out = pack_planes(codes, layout)
    return out[0] if len(out) == 1 else out


def unpack(words: torch.Tensor | np.ndarray | Sequence[Any], layout: PackedLayout, n: int) -> torch.Tensor:
    """The ``n`` codes ``[..., n]`` (uint8) packed in ``words`` (a tensor ``[..., W]`` or one per plane).

    Each plane's tensor needs at least ``layout.words(n)[p]`` words in its last axis (more are ignored).
    Executes :func:`unpack_plan` on every block at once: ``code[element] |= ((word >> shift) & mask)
    << dest`` in int32, exactly the arithmetic the generated kernel does.
    """
    planes = (words,) if isinstance(words, (torch.Tensor, np.ndarray)) else tuple(words)
    if len(planes) != len(layout.planes):
        raise LayoutError(f"{layout} has {len(layout.planes)} plane(s); got {len(planes)} word tensor(s)")
    tensors = [torch.as_tensor(w) for w in planes]
    batch = tuple(tensors[0].shape[:-1])
    plan = unpack_plan(layout)
    rows, nblocks = math.prod(batch), -(-n // plan.block)
    blocked = []
    for p, (w, nwords, need) in enumerate(zip(tensors, plan.block_words, layout.words(n))):
        if w.dim() == 0 or tuple(w.shape[:-1]) != batch or w.shape[-1] < need:
            raise LayoutError(f"plane {p} of {layout} needs words [*{batch}, >={need}], got {tuple(w.shape)}")
        w = w.reshape(rows, w.shape[-1])[:, : nblocks * nwords]
        blocked.append(torch.nn.functional.pad(w, (0, nblocks * nwords - w.shape[-1])).reshape(rows, nblocks, nwords))
    arrays = [_plane_tensors(plan, p) for p in range(len(plan.block_words))]
    codes = torch.empty((rows, nblocks * plan.block), dtype=torch.uint8)
    for sl in _row_chunks(rows, nblocks * len(plan)):
        acc = torch.zeros((sl.stop - sl.start, nblocks, plan.block), dtype=torch.int32)
        for w, a in zip(blocked, arrays):
            sh, mask, dest = (a[k].to(torch.int32) for k in ("shift", "mask", "dest"))
            piece = ((w[sl].to(torch.int32)[..., a["word"]] >> sh) & mask) << dest  # [rows, nblocks, steps]
            acc.index_add_(-1, a["element"], piece)
        codes[sl] = acc.reshape(acc.shape[0], -1).to(torch.uint8)
    return codes[:, :n].reshape(*batch, n)
