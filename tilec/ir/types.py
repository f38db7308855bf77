"""Tile types: an element dtype and a tuple of axes.

An axis says how big a tile is along one dimension without fixing a number:
``tile(m)`` is the block of tile loop variable ``m`` (a schedule parameter),
``full(N)`` spans a whole dimension (``x[m, :]``, padded to a power of two),
``one`` is a broadcast axis of size 1 (``v[:, None]``).  Two tiles combine
elementwise when their axes agree after NumPy-style right-aligned broadcasting.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from tilec.ir.dtypes import DType


@dataclass(frozen=True)
class Axis:
    kind: str  # "tile" | "full" | "one"
    name: str  # tile variable (tile), dimension name (full), "" (one)
    extent: sympy.Expr  # the dimension the axis covers (1 for "one")

    def __str__(self) -> str:
        if self.kind == "one":
            return "1"
        if self.kind == "full":
            return f":{self.name}"
        return self.name

    @staticmethod
    def tile(tile_var: str, extent: sympy.Expr) -> Axis:
        return Axis("tile", tile_var, extent)

    @staticmethod
    def full(dim: str, extent: sympy.Expr) -> Axis:
        return Axis("full", dim, extent)

    @staticmethod
    def one() -> Axis:
        return Axis("one", "", sympy.Integer(1))


@dataclass(frozen=True)
class TileType:
    axes: tuple[Axis, ...]
    dtype: DType

    @property
    def rank(self) -> int:
        return len(self.axes)

    @property
    def is_scalar(self) -> bool:
        return not self.axes

    def with_dtype(self, dtype: DType) -> TileType:
        return TileType(self.axes, dtype)

    def __str__(self) -> str:
        if not self.axes:
            return f"{self.dtype.name} scalar"
        return f"{self.dtype.name}[{', '.join(str(a) for a in self.axes)}]"


def broadcast_axes(a: tuple[Axis, ...], b: tuple[Axis, ...]) -> tuple[Axis, ...] | None:
    """Right-aligned broadcast of two axis tuples; None when they do not agree."""
    out: list[Axis] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else None
        y = b[-i] if i <= len(b) else None
        if x is None or (y is not None and x.kind == "one"):
            assert y is not None
            out.append(y)
        elif y is None or y.kind == "one" or x == y:
            out.append(x)
        else:
            return None
    return tuple(reversed(out))
