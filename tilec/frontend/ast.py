"""The tile language's syntax tree: what the parser returns, before any typing.

Every node is a frozen dataclass carrying the :class:`~tilec.errors.Span` it
came from, so later stages can point diagnostics at the user's source.  The
tree is deliberately close to the surface syntax; meaning (which names are
tiles, which calls are builtins) is decided by :mod:`tilec.ir.build`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tilec.errors import Span

# ----------------------------------------------------------------------------
# expressions


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Int:
    value: int
    span: Span


@dataclass(frozen=True)
class Float:
    value: float
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class NoneLit:
    """``None`` in an index: a new broadcast axis (``v[:, None]``)."""

    span: Span


@dataclass(frozen=True)
class Slice:
    """``lower:upper:step`` inside a subscript; each part may be absent (``:``)."""

    lower: Expr | None
    upper: Expr | None
    step: Expr | None
    span: Span


@dataclass(frozen=True)
class BinOp:
    """``left op right``; op is one of + - * / // % @ & | ^ << >> and or."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class UnaryOp:
    """``op operand``; op is one of - + ~ not."""

    op: str
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Compare:
    """A comparison chain ``a < b <= c``: ``ops[i]`` sits between ``operands[i]`` and ``operands[i+1]``."""

    ops: tuple[str, ...]
    operands: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    func: Expr
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    span: Span


@dataclass(frozen=True)
class Attribute:
    value: Expr
    attr: str
    span: Span  # the whole ``value.attr``
    attr_span: Span  # just ``attr``


@dataclass(frozen=True)
class Subscript:
    value: Expr
    indices: tuple[Expr, ...]  # a Slice or NoneLit may appear here
    span: Span


@dataclass(frozen=True)
class ListExpr:
    elts: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class TupleExpr:
    elts: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Unsupported:
    """Syntax that parses as Python but is outside the tile language (strings, lambdas, ...).

    Kept in the tree so the checker can report it with a precise location and a hint.
    """

    what: str
    span: Span


Expr = (
    Name | Int | Float | Bool | NoneLit | Slice | BinOp | UnaryOp | Compare | Call | Attribute
    | Subscript | ListExpr | TupleExpr | Unsupported
)

# ----------------------------------------------------------------------------
# statements


@dataclass(frozen=True)
class Assign:
    target: Expr  # Name or Subscript (a store); anything else is rejected by the checker
    value: Expr
    span: Span


@dataclass(frozen=True)
class AugAssign:
    target: Expr
    op: str  # "+", "-", "*", "/", ...
    value: Expr
    span: Span


@dataclass(frozen=True)
class ExprStmt:
    value: Expr
    span: Span


@dataclass(frozen=True)
class For:
    targets: tuple[Name, ...]
    iter: Expr
    body: tuple[Stmt, ...]
    span: Span  # the ``for ... :`` header


@dataclass(frozen=True)
class Pass:
    span: Span


@dataclass(frozen=True)
class UnsupportedStmt:
    """A statement outside the tile language (``return``, ``if``, ``while``, ``import``...)."""

    what: str
    span: Span


Stmt = Assign | AugAssign | ExprStmt | For | Pass | UnsupportedStmt

# ----------------------------------------------------------------------------
# top level


@dataclass(frozen=True)
class Param:
    """``name: annotation``.  The annotation is an ordinary expression here:
    ``Tensor[M, K, f16]`` is a Subscript, ``f32`` a Name."""

    name: str
    annotation: Expr | None
    span: Span


@dataclass(frozen=True)
class KernelDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span  # the ``def`` line
    name_span: Span


@dataclass(frozen=True)
class Example:
    """``example kernel(M=37, T=f16, eps=1e-6):`` followed by whole-tensor reference statements."""

    kernel: str
    bindings: tuple[Keyword, ...]
    body: tuple[Stmt, ...]
    span: Span
    kernel_span: Span


@dataclass(frozen=True)
class Module:
    kernels: tuple[KernelDef, ...]
    examples: tuple[Example, ...]
