"""Typed errors that carry a source location.

Every error a user can provoke with a spec or with kernel arguments is a
:class:`TilecError`.  Errors raised for a spec point at the user's own file,
line and column, quote the offending line and put a caret under the column::

    gemm.tile:8:28: TileShapeError: tile 'k' ranges over K, but axis 0 of 'b' has extent N
        acc += a[m, k] @ b[n, k]
                           ^
    hint: index axis 0 of 'b' with a tile over N
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """The text of a spec and where it came from.

    ``first_line`` is the line number (1-based) of ``text``'s first line in
    ``name``; ``col_offset`` is the indentation removed from every line (for
    kernels written inside a Python file), so spans report the user's own
    coordinates.
    """

    name: str
    text: str
    first_line: int = 1
    col_offset: int = 0

    def line(self, lineno: int) -> str:
        """The user's line ``lineno`` (in the file's numbering), or ''."""
        index = lineno - self.first_line
        lines = self.text.splitlines()
        if 0 <= index < len(lines):
            return " " * self.col_offset + lines[index]
        return ""


@dataclass(frozen=True)
class Span:
    """A region of a :class:`Source`; lines and columns are 1-based, in the user's file."""

    source: Source
    line: int
    col: int
    end_line: int
    end_col: int

    def __repr__(self) -> str:  # keep IR dumps short
        return f"Span({self.source.name}:{self.line}:{self.col})"

    @property
    def location(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"


class TilecError(Exception):
    """Base of every error tilec reports to users."""

    kind = "TilecError"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        self.message = message
        self.span = span
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        if self.span is None:
            text = f"{self.kind}: {self.message}"
        else:
            text = f"{self.span.location}: {self.kind}: {self.message}"
            line = self.span.source.line(self.span.line)
            if line:
                width = 1
                if self.span.end_line == self.span.line and self.span.end_col > self.span.col:
                    width = self.span.end_col - self.span.col
                text += f"\n    {line}\n    {' ' * (self.span.col - 1)}{'^' * width}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class TileSyntaxError(TilecError):
    """The spec does not parse, or uses syntax outside the tile language."""

    kind = "TileSyntaxError"


class TileNameError(TilecError):
    """An undefined, reserved, duplicated or otherwise invalid name."""

    kind = "TileNameError"


class TileShapeError(TilecError):
    """Tile shapes, ranks or indexed extents that do not agree."""

    kind = "TileShapeError"


class TileTypeError(TilecError):
    """Element types (dtypes) that do not agree, or a value of the wrong kind."""

    kind = "TileTypeError"


class ScheduleError(TilecError):
    """A schedule (block sizes, warps, stages) that the kernel or target cannot use."""

    kind = "ScheduleError"


class ArgumentError(TilecError):
    """Kernel arguments rejected before launch: shape, dtype, device or stride."""

    kind = "ArgumentError"


class BackendError(TilecError):
    """Triton failed to compile or run generated code (a tilec bug if the spec was valid)."""

    kind = "BackendError"
