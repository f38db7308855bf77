"""The :class:`Layout` value and the integer-tuple arithmetic under it.

Import everything from :mod:`tilec.ir.layout`, which re-exports this module
and adds the layout algebra (composition, complement, divides, products).

An *IntTuple* is an ``int`` or a tuple of IntTuples, e.g. ``(4, (2, 3))``.
A layout is a pair of congruent IntTuples ``shape : stride`` (same nesting,
same leaf count) and denotes a function from coordinates to offsets:

* a coordinate congruent with the shape maps to ``sum(c_k * d_k)`` over the
  leaves (coordinate ``c_k``, stride ``d_k``);
* an integer ``i`` is first split colexicographically (leftmost mode fastest)
  over the shape.  As in CuTe the last mode at each level is not reduced
  modulo its extent, so ``layout(i)`` is defined for ``i >= size`` too: the
  layout continues along its last leaf.  Operations promise results only on
  ``range(size)`` unless they say otherwise.

Shapes are positive Python ints.  Strides are ints, or sympy expressions for
symbolic strides (``K``, ``2*K``): evaluation, ``str``, coalesce and
composition with an integer ``B`` accept them; operations that must order
strides (complement, inverses, products) require integers and raise
:class:`LayoutError` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import sympy

from tilec.errors import TilecError

IntTuple: TypeAlias = int | tuple["IntTuple", ...]
# A stride leaf is an int or a sympy expression.
StrideTuple: TypeAlias = int | sympy.Expr | tuple["StrideTuple", ...]


class LayoutError(TilecError):
    """A layout or layout operation that is not defined (bad shapes, divisibility conditions...)."""

    kind = "LayoutError"


# ----------------------------------------------------------------------------
# IntTuple helpers


def is_tuple(x: object) -> bool:
    return isinstance(x, tuple)


def leaves(t: Any) -> tuple[Any, ...]:
    """The leaves of a (possibly nested) tuple, left to right: ``leaves((4, (2, 3))) == (4, 2, 3)``."""
    if isinstance(t, tuple):
        return tuple(x for sub in t for x in leaves(sub))
    return (t,)


def product(shape: IntTuple) -> int:
    """The number of coordinates of ``shape`` (the product of its leaves; 1 for ``()``)."""
    return math.prod(leaves(shape))


def unflatten(flat: Sequence[Any], profile: Any) -> Any:
    """Arrange ``flat`` (one item per leaf of ``profile``) with ``profile``'s nesting."""
    items = iter(flat)

    def build(p: Any) -> Any:
        return tuple(build(x) for x in p) if isinstance(p, tuple) else next(items)

    out = build(profile)
    if next(items, None) is not None:
        raise LayoutError(f"{len(flat)} items do not fit the profile {tuple_str(profile)}")
    return out


def congruent(a: Any, b: Any) -> bool:
    """Same nesting and the same number of leaves at every level."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(congruent(x, y) for x, y in zip(a, b))
    return not isinstance(a, tuple) and not isinstance(b, tuple)


def compatible(a: IntTuple, b: IntTuple) -> bool:
    """CuTe's ``compatible(A, B)``: every coordinate of shape ``a`` is also a coordinate of shape ``b``.

    An int ``a`` is compatible with any ``b`` of that size; a tuple ``a`` needs a tuple ``b`` of the
    same length whose modes are compatible one by one.
    """
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(compatible(x, y) for x, y in zip(a, b))
    return a == product(b)


def tuple_str(t: Any) -> str:
    """CuTe's spelling: ``(4,(2,3))``, ``8``, ``(2*K,1)``."""
    if isinstance(t, tuple):
        return "(" + ",".join(tuple_str(x) for x in t) + ")"
    return str(t).replace(" ", "")


def idx2crd(index: int, shape: IntTuple) -> IntTuple:
    """The coordinate (congruent with ``shape``) of the 1-D index ``index``, colexicographic.

    The last mode at each level takes the quotient unreduced (so indices past ``product(shape)``
    continue along the last leaf), matching :func:`crd2idx`.
    """
    if not isinstance(shape, tuple):
        return index
    out: list[IntTuple] = []
    for k, s in enumerate(shape):
        if k == len(shape) - 1:
            out.append(idx2crd(index, s))
        else:
            n = product(s)
            out.append(idx2crd(index % n, s))
            index //= n
    return tuple(out)


def crd2idx(coord: IntTuple, shape: IntTuple, stride: StrideTuple) -> Any:
    """The offset of ``coord`` in the layout ``shape : stride``.

    ``coord`` is an int (a 1-D coordinate, split with :func:`idx2crd`) or a tuple with the rank of
    ``shape`` whose entries are again ints or tuples, at any level.
    """
    if isinstance(coord, tuple):
        if not isinstance(shape, tuple) or len(shape) != len(coord):
            raise LayoutError(f"coordinate {tuple_str(coord)} does not match shape {tuple_str(shape)}")
        assert isinstance(stride, tuple)
        return sum((crd2idx(c, s, d) for c, s, d in zip(coord, shape, stride)), start=0)
    if isinstance(shape, tuple):
        return crd2idx(idx2crd(coord, shape), shape, stride)
    return coord * stride


def col_major_strides(shape: IntTuple) -> IntTuple:
    """Compact column-major (CuTe ``LayoutLeft``) strides: leaves left to right, the first fastest."""
    out, acc = [], 1
    for s in leaves(shape):
        out.append(acc)
        acc *= s
    return unflatten(out, shape)


def row_major_strides(shape: IntTuple) -> IntTuple:
    """Compact row-major (CuTe ``LayoutRight``) strides: the last leaf fastest."""
    out, acc = [], 1
    for s in reversed(leaves(shape)):
        out.append(acc)
        acc *= s
    return unflatten(out[::-1], shape)


def _norm_shape(s: Any) -> IntTuple:
    if isinstance(s, (tuple, list)):
        return tuple(_norm_shape(x) for x in s)
    if isinstance(s, sympy.Basic):
        if not s.is_Integer:
            raise LayoutError(f"shapes must be integers, got {s}")
        s = int(s)
    if isinstance(s, bool) or not hasattr(s, "__index__"):
        raise LayoutError(f"shapes must be integers, got {s!r}")
    s = int(s)
    if s < 1:
        raise LayoutError(f"shape extents must be >= 1, got {s}")
    return s


def _norm_stride(d: Any) -> StrideTuple:
    if isinstance(d, (tuple, list)):
        return tuple(_norm_stride(x) for x in d)
    if isinstance(d, sympy.Basic):
        d = sympy.sympify(d)
        return int(d) if d.is_Integer else d
    if isinstance(d, bool) or not hasattr(d, "__index__"):
        raise LayoutError(f"strides must be integers or sympy expressions, got {d!r}")
    return int(d)


def is_int(x: object) -> bool:
    return isinstance(x, int)


def same(a: Any, b: Any) -> bool:
    """Stride equality; symbolic strides compare after expansion (``2*(K+1) == 2*K + 2``)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return bool(sympy.expand(a - b) == 0)


# ----------------------------------------------------------------------------
# Layout


@dataclass(frozen=True, init=False)
class Layout:
    """A CuTe layout ``shape : stride``, a function from coordinates to offsets.

    ``Layout((4, 2), (2, 1))`` is the 4x2 row-major matrix ``(4,2):(2,1)``: coordinate ``(i, j)`` (or
    1-D index ``i + 4*j``) maps to ``2*i + j``.  ``stride`` defaults to compact column-major.  Lists
    are accepted and stored as tuples; a plain int is a mode of rank 1.  Layouts are frozen and
    hashable, and two layouts are equal when shape and stride are equal as tuples (``(4,1):(1,4)``
    and ``4:1`` are the same function but different layouts; compare ``coalesce`` results for that).
    """

    shape: IntTuple
    stride: StrideTuple

    def __init__(self, shape: Any, stride: Any = None) -> None:
        nshape = _norm_shape(shape)
        nstride = col_major_strides(nshape) if stride is None else _norm_stride(stride)
        if not congruent(nshape, nstride):
            raise LayoutError(f"shape {tuple_str(nshape)} and stride {tuple_str(nstride)} are not congruent")
        object.__setattr__(self, "shape", nshape)
        object.__setattr__(self, "stride", nstride)

    # -- properties -----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of 1-D coordinates: the product of the shape."""
        return product(self.shape)

    @property
    def rank(self) -> int:
        """The number of top-level modes (1 for an int shape)."""
        return len(self.shape) if isinstance(self.shape, tuple) else 1

    @property
    def depth(self) -> int:
        """Nesting depth: 0 for an int shape, 1 for a flat tuple, 2 for ``(4,(2,3))``."""

        def d(t: IntTuple) -> int:
            return 1 + max((d(x) for x in t), default=0) if isinstance(t, tuple) else 0

        return d(self.shape)

    @property
    def cosize(self) -> Any:
        """Largest offset on ``range(size)`` plus one.

        Negative integer strides contribute nothing to the maximum; symbolic strides are assumed
        non-negative (the result is then a sympy expression).
        """
        total: Any = 1
        for s, d in zip(leaves(self.shape), leaves(self.stride)):
            total += (s - 1) * (max(d, 0) if isinstance(d, int) else d)
        return total

    @property
    def is_static(self) -> bool:
        """True when every stride is an integer (no sympy symbols)."""
        return all(isinstance(d, int) for d in leaves(self.stride))

    def modes(self) -> tuple[Layout, ...]:
        """The top-level modes as layouts (``(self,)`` for an int shape)."""
        return tuple(self[i] for i in range(self.rank))

    def leaf_modes(self) -> Iterator[tuple[int, Any]]:
        """``(extent, stride)`` of every leaf, left to right."""
        return zip(leaves(self.shape), leaves(self.stride))

    # -- evaluation and access ------------------------------------------------------------------

    def __call__(self, *coord: Any) -> Any:
        """``L(i)`` for a 1-D index, ``L((i, (j, k)))`` or ``L(i, (j, k))`` for a hierarchical coordinate."""
        c = coord[0] if len(coord) == 1 else tuple(coord)
        if any(isinstance(x, int) and x < 0 for x in leaves(c)):
            raise LayoutError(f"negative coordinate {tuple_str(c)} for layout {self}")
        return crd2idx(c, self.shape, self.stride)

    def __getitem__(self, index: int | tuple[int, ...]) -> Layout:
        """Mode ``index`` as a layout; a tuple index walks down the nesting (``L[1, 0]`` is ``L[1][0]``)."""
        if isinstance(index, tuple):
            out = self
            for k in index:
                out = out[k]
            return out
        if not isinstance(self.shape, tuple):
            if index not in (0, -1):
                raise LayoutError(f"layout {self} has rank 1; mode {index} does not exist")
            return self
        assert isinstance(self.stride, tuple)
        try:
            return Layout(self.shape[index], self.stride[index])
        except IndexError:
            raise LayoutError(f"layout {self} has rank {self.rank}; mode {index} does not exist") from None

    def __str__(self) -> str:
        return f"{tuple_str(self.shape)}:{tuple_str(self.stride)}"

    def __repr__(self) -> str:
        return f"Layout({self.shape!r}, {self.stride!r})"
