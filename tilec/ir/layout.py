"""CuTe-style layout algebra: hierarchical ``shape : stride`` layouts and the operations on them.

The definitions follow CuTe's documentation ("01_layout", "02_layout_algebra"); the
:class:`Layout` value itself and the integer-tuple helpers live in
:mod:`tilec.ir.layout_core` and are re-exported here.  A layout is a function
from integers to integers, so every operation is specified by the function it
returns on ``range(size)`` (tests enumerate them):

* ``coalesce(L)``: the same function on ``range(size(L))`` with the fewest modes.
* ``composition(A, B)``: ``R(i) == A(B(i))`` and ``R`` has ``B``'s shape (``compatible(B, R)``).
  ``B`` may also be a *tiler*: a tuple of layouts / ints / tilers applied mode by mode.
* ``complement(A, M)``: the ordered layout ``R`` that "fills the holes" of ``A`` up to ``M``.
* ``logical_divide(A, B) = A o (B, complement(B, size(A)))``: mode 0 is the tile ``A o B``, mode 1
  walks the tiles.
* ``logical_product(A, B) = (A, complement(A, size(A)*cosize(B)) o B)``: ``A`` repeated as ``B`` says.

All layouts here are pure Python values; nothing depends on Triton.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np

from tilec.ir.layout_core import (
    IntTuple,
    Layout,
    LayoutError,
    StrideTuple,
    col_major_strides,
    compatible,
    congruent,
    crd2idx,
    idx2crd,
    is_int,
    leaves,
    product,
    row_major_strides,
    same,
    tuple_str,
)

__all__ = [
    "IntTuple",
    "Layout",
    "LayoutError",
    "StrideTuple",
    "Tiler",
    "blocked_product",
    "coalesce",
    "compatible",
    "complement",
    "composition",
    "congruent",
    "crd2idx",
    "flatten",
    "idx2crd",
    "left_inverse",
    "logical_divide",
    "logical_product",
    "make_layout",
    "make_layout_from_shape",
    "raked_product",
    "right_inverse",
    "tiled_divide",
    "zipped_divide",
]

# A tiler is a Layout (applied as a 1-D function), an int n (the layout n:1), None (leave the
# mode alone; composition only) or a tuple of tilers applied to A's modes one by one.
Tiler: TypeAlias = Layout | int | tuple[Any, ...] | None


# ----------------------------------------------------------------------------
# construction


def make_layout(*layouts: Layout) -> Layout:
    """Concatenation: the layout whose modes are ``layouts`` (``make_layout(4:1, 2:4) == (4,2):(1,4)``)."""
    return Layout(tuple(x.shape for x in layouts), tuple(x.stride for x in layouts))


def make_layout_from_shape(shape: IntTuple, order: str = "col") -> Layout:
    """The compact layout of ``shape``: ``order="col"`` (leftmost leaf fastest, CuTe's default) or ``"row"``.

    ``make_layout_from_shape((2, (3, 4)), "row") == Layout((2, (3, 4)), (12, (4, 1)))``.
    """
    if order == "col":
        return Layout(shape, col_major_strides(Layout(shape).shape))
    if order == "row":
        return Layout(shape, row_major_strides(Layout(shape).shape))
    raise LayoutError(f"order must be 'col' or 'row', got {order!r}")


def flatten(layout: Layout) -> Layout:
    """The leaves of ``layout`` as one flat tuple of modes (an int-shaped layout is returned as is)."""
    if not isinstance(layout.shape, tuple):
        return layout
    return Layout(leaves(layout.shape), leaves(layout.stride))


def _from_modes(modes: list[tuple[int, Any]]) -> Layout:
    """``[]`` -> ``1:0``; one mode -> an int-shaped layout; more -> a flat tuple."""
    if not modes:
        return Layout(1, 0)
    if len(modes) == 1:
        return Layout(*modes[0])
    return Layout(tuple(s for s, _ in modes), tuple(d for _, d in modes))


# ----------------------------------------------------------------------------
# coalesce


def coalesce(layout: Layout, profile: Any = None) -> Layout:
    """The same function on ``range(size)`` with the fewest modes; ``depth(result) <= 1``.

    Leaves are merged left to right: extent-1 modes vanish and ``s0:d0 ++ s1:s0*d0`` becomes
    ``s0*s1:d0``.  A single remaining mode gives an int-shaped layout, none gives ``1:0``.

    With ``profile`` (by-mode coalesce) only the sublayouts at the int leaves of ``profile`` are
    coalesced and the nesting above them is kept: ``coalesce((2,(1,6)):(1,(6,2)), (1, 1)) ==
    (2,6):(1,2)``.  Modes of ``layout`` beyond ``profile``'s length are kept as they are.
    """
    if isinstance(profile, tuple):
        if len(profile) > layout.rank:
            raise LayoutError(f"coalesce profile {tuple_str(profile)} has more modes than {layout}")
        modes = [coalesce(layout[k], p) for k, p in enumerate(profile)]
        return make_layout(*modes, *layout.modes()[len(profile) :])
    merged: list[tuple[int, Any]] = []
    for s, d in layout.leaf_modes():
        if s == 1:
            continue
        if merged and same(merged[-1][0] * merged[-1][1], d):
            merged[-1] = (merged[-1][0] * s, merged[-1][1])
        else:
            merged.append((s, d))
    return _from_modes(merged)


# ----------------------------------------------------------------------------
# composition


def _compose_leaf(a: list[tuple[int, Any]], s: int, d: Any) -> Layout:
    """``A o s:d`` for a coalesced flat ``A`` given as ``[(extent, stride), ...]``.

    1. Divide out ``d``: walk A's modes left to right dividing the remaining stride ``r`` (first
       ``d``) out of the extents.  A mode of extent ``e`` with ``e | r`` is skipped (``r //= e``);
       with ``r | e`` it keeps ``e // r`` elements at stride ``stride*r`` and ``r`` becomes 1.
       Anything else breaks CuTe's *stride divisibility condition*.  The last mode is unbounded
       (layouts continue along their last mode) and just has its stride scaled by ``r``.
    2. Mod out ``s``: keep the first ``s`` elements of the strided layout, left to right; a mode of
       extent ``e`` is taken whole while ``e`` divides what remains, or cut to the remainder when
       that is at most ``e`` (*shape divisibility condition* otherwise); the last mode takes all
       that remains.
    """
    if s == 1:
        return Layout(1, 0)
    if is_int(d) and d == 0:
        return Layout(s, 0)
    if not is_int(d) or d < 0:
        raise LayoutError(f"composition needs B's strides to be non-negative integers, got {d}")
    a_str = str(_from_modes(a))
    rest = d
    strided: list[tuple[int, Any]] = []  # extent 0 marks the unbounded last mode
    for k, (e, st) in enumerate(a):
        if k == len(a) - 1:
            strided.append((0, st * rest))
        elif rest % e == 0:
            rest //= e
        elif e % rest == 0:
            strided.append((e // rest, st * rest))
            rest = 1
        else:
            raise LayoutError(
                f"composition {a_str} o {s}:{d} is not defined: after dividing the stride {d} by the extents "
                f"before mode {k}, {rest} is left, and it and that mode's extent {e} do not divide one another "
                f"(stride divisibility condition)"
            )
    remaining = s
    out: list[tuple[int, Any]] = []
    for e, st in strided:
        if remaining == 1:
            break
        if e == 0 or remaining <= e:
            out.append((remaining, st))
            remaining = 1
        elif remaining % e == 0:
            out.append((e, st))
            remaining //= e
        else:
            raise LayoutError(
                f"composition {a_str} o {s}:{d} is not defined: {remaining} of the {s} elements are left to "
                f"take from a mode of extent {e}; they neither fit in it nor fill it a whole number of times "
                f"(shape divisibility condition)"
            )
    return coalesce(_from_modes(out))


def _compose_layout(a: list[tuple[int, Any]], shape: IntTuple, stride: StrideTuple) -> Layout:
    if isinstance(shape, tuple):
        assert isinstance(stride, tuple)
        return make_layout(*(_compose_layout(a, s, d) for s, d in zip(shape, stride)))
    return _compose_leaf(a, shape, stride)


def composition(a: Layout, b: Tiler) -> Layout:
    """``A o B``: the layout ``R`` with ``R(i) == A(B(i))`` for ``i`` in ``range(size(B))``, shaped like ``B``.

    * ``B`` a :class:`Layout`: both are 1-D functions; ``A`` is coalesced and each leaf ``s:d`` of
      ``B`` becomes ``coalesce(A o s:d)`` (left distributivity), so ``compatible(B, R)``.
      ``B(i)`` may pass ``size(A)``: ``A`` then continues along its last mode (CuTe's convention).
    * ``B`` an int ``n``: ``A o n:1``.
    * ``B`` a tuple (a tiler ``<B0, B1, ...>``): by-mode, ``R = (A[0] o B0, A[1] o B1, ..., A[k], ...)``;
      ``None`` leaves a mode alone, a nested tuple recurses into that mode.

    Raises :class:`LayoutError` when a divisibility condition fails (the result is then not a layout).
    Mode-by-mode composition is exact when ``B``'s non-zero-stride modes do not overlap (sorted by
    stride, each starts past the largest offset of those before it: every compact, strided or
    complemented tiler); for an overlapping ``B`` such as ``(2,2):(1,1)`` the result is checked
    against ``A(B(i))`` on ``range(size(B))`` (numpy) and :class:`LayoutError` raised if they differ.
    Strides of ``A`` may be symbolic (then ``B`` must not overlap); ``B`` must have integer strides.
    """
    if b is None:
        return a
    if isinstance(b, int):
        b = Layout(b, 1)
    if isinstance(b, Layout):
        ca = coalesce(a)
        r = _compose_layout(list(ca.leaf_modes()), b.shape, b.stride)
        if not _superincreasing(b):
            _check_composition(ca, b, r)
        return r
    if isinstance(b, tuple):
        return _by_mode(a, b, composition, "composition")
    raise LayoutError(f"cannot compose a layout with {b!r}")


def _superincreasing(b: Layout) -> bool:
    """Sorted by stride, does every non-zero-stride mode of ``b`` start past the largest offset of those before it?"""
    top = 0
    for s, d in sorted(((s, d) for s, d in b.leaf_modes() if s != 1 and d != 0), key=lambda m: m[1]):
        if d <= top:
            return False
        top += (s - 1) * d
    return True


def _offsets(layout: Layout) -> np.ndarray:
    """``layout(i)`` for every ``i`` in ``range(size)``, as an int64 array (integer strides only)."""
    out = np.zeros(1, dtype=np.int64)
    for s, d in layout.leaf_modes():
        out = (out[None, :] + np.arange(s, dtype=np.int64)[:, None] * d).reshape(-1)
    return out


def _check_composition(ca: Layout, b: Layout, r: Layout) -> None:
    """Mode-by-mode composition equals ``A(B(i))`` when ``B``'s modes do not overlap; otherwise check it.

    ``B = (2,2):(1,1)`` overlaps itself: ``A o B`` is ``(A o 2:1, A o 2:1)`` only where ``A`` is additive
    over ``B``'s image.  ``ca`` is the coalesced ``A`` (its last mode unbounded).
    """
    if not ca.is_static:
        raise LayoutError(
            f"composition {ca} o {b}: with symbolic strides B's non-zero-stride modes must not overlap "
            f"(sorted by stride, each must start past the largest offset of those before it)"
        )
    x = _offsets(b)
    expected = np.zeros_like(x)
    modes = list(ca.leaf_modes())
    for k, (s, d) in enumerate(modes):
        expected += (x if k == len(modes) - 1 else x % s) * d
        x = x // s
    got = _offsets(r)
    if not np.array_equal(got, expected):
        i = int(np.flatnonzero(got != expected)[0])
        raise LayoutError(
            f"composition {ca} o {b} is not a layout: B's modes overlap and A is not additive over them "
            f"(mode by mode, index {i} would map to {int(got[i])} instead of A(B({i})) = {int(expected[i])})"
        )


def _by_mode(a: Layout, tiler: tuple[Any, ...], op: Any, name: str) -> Layout:
    if len(tiler) > a.rank:
        raise LayoutError(f"{name}: tiler with {len(tiler)} modes is longer than {a} (rank {a.rank})")
    modes = [op(a[k], t) for k, t in enumerate(tiler)]
    return make_layout(*modes, *a.modes()[len(tiler) :])


# ----------------------------------------------------------------------------
# complement


def _static_modes(layout: Layout, what: str) -> list[tuple[int, int]]:
    modes = list(layout.leaf_modes())
    if not all(is_int(d) for _, d in modes):
        raise LayoutError(f"{what} needs integer strides, got {layout}")
    return modes


def complement(a: Layout, cotarget: IntTuple | None = None) -> Layout:
    """The layout ``R`` of the "rest" of ``A`` within ``cotarget`` (an int or a shape; default ``cosize(A)``).

    ``R`` is ordered (positive, increasing strides: ``R(i-1) < R(i)``), its image meets ``A``'s only
    at 0, and ``make_layout(A, R)`` covers ``range(M)`` with ``M = size(cotarget)`` rounded up:
    it is a bijection onto ``range(size(A) * size(R))`` when ``A`` has no stride-0 modes.

    Built by sorting ``A``'s modes by stride (extent-1 and stride-0 modes dropped) and filling each
    gap: with ``current`` the extent covered so far (initially 1), a mode ``s:d`` needs
    ``current | d`` and contributes the mode ``d/current : current``; then ``current = s*d``.  A last
    mode ``ceil(M/current) : current`` reaches the cotarget.  The result is coalesced.

    Raises :class:`LayoutError` when ``A`` overlaps itself or ``current`` does not divide a stride
    (``(2,2):(1,3)``: no layout fills ``{2, 5, ...}``), or for negative or symbolic strides.
    """
    static = _static_modes(a, "complement")
    m = int(a.cosize) if cotarget is None else product(cotarget)
    modes = sorted(((s, d) for s, d in static if s != 1 and d != 0), key=lambda x: (x[1], x[0]))
    current = 1
    out: list[tuple[int, Any]] = []
    for s, d in modes:
        if d < 0:
            raise LayoutError(f"complement needs non-negative strides, got {a}")
        if d % current != 0:
            raise LayoutError(
                f"complement of {a} is not defined: stride {d} is not a multiple of {current}, the extent covered "
                f"by the modes of smaller stride (the layout overlaps itself or leaves a hole no layout can fill)"
            )
        out.append((d // current, current))
        current = s * d
    out.append((-(-m // current), current))
    return coalesce(_from_modes(out))


# ----------------------------------------------------------------------------
# divide and product


def _as_layout(t: Layout | int) -> Layout:
    return Layout(t, 1) if isinstance(t, int) else t


def logical_divide(a: Layout, b: Tiler) -> Layout:
    """``A ⊘ B = A o (B, complement(B, size(A)))``: mode 0 is the tile ``A o B``, mode 1 iterates the tiles.

    ``B`` a tuple divides mode by mode: ``((TileM, RestM), (TileN, RestN), L, ...)``.
    ``logical_divide((4,2,3):(2,1,8), 4:2) == ((2,2),(2,3)):((4,1),(2,8))``.
    """
    if isinstance(b, tuple):
        return _by_mode(a, b, logical_divide, "logical_divide")
    if b is None:
        raise LayoutError("logical_divide needs a layout, an int or a tuple of them as tiler")
    tile = _as_layout(b)
    return composition(a, make_layout(tile, complement(tile, a.size)))


def _split_divide(a: Layout, tiler: Tiler) -> tuple[list[Layout], list[Layout]]:
    if not isinstance(tiler, tuple):
        d = logical_divide(a, tiler)
        return [d[0]], [d[1]]
    if any(isinstance(t, tuple) or t is None for t in tiler):
        raise LayoutError("zipped_divide/tiled_divide take a flat tiler of layouts and ints")
    d = logical_divide(a, tiler)
    tiles = [d[k, 0] for k in range(len(tiler))]
    rests = [d[k, 1] for k in range(len(tiler))] + list(d.modes()[len(tiler) :])
    return tiles, rests


def zipped_divide(a: Layout, tiler: Tiler) -> Layout:
    """``((TileM, TileN), (RestM, RestN, L, ...))``: ``zipped_divide(A, T)[0] == composition(A, T)``.

    A layout or int tiler gives ``logical_divide(A, T)`` (already ``(Tile, Rest)``).
    """
    tiles, rests = _split_divide(a, tiler)
    if not isinstance(tiler, tuple):
        return make_layout(tiles[0], rests[0])
    return make_layout(make_layout(*tiles), make_layout(*rests))


def tiled_divide(a: Layout, tiler: Tiler) -> Layout:
    """``((TileM, TileN), RestM, RestN, L, ...)`` (a layout or int tiler gives ``(Tile, Rest)``)."""
    tiles, rests = _split_divide(a, tiler)
    if not isinstance(tiler, tuple):
        return make_layout(tiles[0], rests[0])
    return make_layout(make_layout(*tiles), *rests)


def logical_product(a: Layout, b: Tiler) -> Layout:
    """``A ⊗ B = (A, complement(A, size(A)*cosize(B)) o B)``: ``A`` repeated in the order ``B`` gives.

    Mode 0 is ``A`` itself, mode 1 is compatible with ``B`` and ``size = size(A) * size(B)``.
    A tuple ``B`` multiplies mode by mode.
    """
    if isinstance(b, tuple):
        return _by_mode(a, b, logical_product, "logical_product")
    if b is None:
        raise LayoutError("logical_product needs a layout, an int or a tuple of them")
    rep = _as_layout(b)
    _static_modes(rep, "logical_product")
    return make_layout(a, composition(complement(a, a.size * int(rep.cosize)), rep))


def _rank_product(a: Layout, b: Layout, raked: bool) -> Layout:
    r = max(a.rank, b.rank)
    pad = [Layout(1, 0)] * r
    am = make_layout(*(list(a.modes()) + pad)[:r])
    bm = make_layout(*(list(b.modes()) + pad)[:r])
    reps = logical_product(am, bm)[1]
    modes = [coalesce(make_layout(reps[k], am[k]) if raked else make_layout(am[k], reps[k])) for k in range(r)]
    return modes[0] if r == 1 else make_layout(*modes)


def blocked_product(a: Layout, b: Layout) -> Layout:
    """Rank-sensitive product: mode ``k`` is ``(A[k], Rep[k])`` coalesced, ``A`` tiled as blocks laid out by ``B``.

    ``Rep = logical_product(A, B)[1]``; the shorter of ``A`` and ``B`` is padded with ``1:0`` modes.
    For a compact ``A``: ``result(a_k + shape(A)_k * b_k, ...) == A(a) + size(A) * B(b)``.
    """
    return _rank_product(a, b, raked=False)


def raked_product(a: Layout, b: Layout) -> Layout:
    """Like :func:`blocked_product` with mode ``k`` = ``(Rep[k], A[k])``: ``A``'s elements interleaved (cyclic)."""
    return _rank_product(a, b, raked=True)


# ----------------------------------------------------------------------------
# inverses


def right_inverse(layout: Layout) -> Layout:
    """The largest ``R`` with ``layout(R(i)) == i`` for ``i`` in ``range(size(R))`` (``1:0`` when 0 is all).

    Walk the leaves by increasing stride while each stride equals the extent covered so far; the
    result maps an offset back to the 1-D coordinate (column-major position of the leaf) it came from.
    """
    modes = _static_modes(layout, "right_inverse")
    position = 1
    cands = []
    for s, d in modes:
        if s != 1 and d > 0:
            cands.append((d, s, position))
        position *= s
    out: list[tuple[int, Any]] = []
    current = 1
    for d, s, pos in sorted(cands):
        if d != current:
            break
        out.append((s, pos))
        current *= s
    return coalesce(_from_modes(out))


def left_inverse(layout: Layout) -> Layout:
    """An ``L`` with ``L(layout(i)) == i`` for ``i`` in ``range(size(layout))``, for an injective ``layout``.

    ``right_inverse(make_layout(layout, complement(layout)))``; raises :class:`LayoutError` when the
    layout is not complementable (in particular when it is not injective).
    """
    return right_inverse(make_layout(layout, complement(layout)))
