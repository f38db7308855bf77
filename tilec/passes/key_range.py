"""Key range: an online-softmax loop walks only the key tiles its query tile can see.

IR in, IR out.  Causal attention masks every key after the query (``where(index(n)[None, :] <= index(m)[:, None]
+ e, s, -inf)``); about half of the key tiles of a causal prefill are then masked entirely, and a sliding
window masks all but a band.  A masked key changes nothing in the online form (passes/online_softmax.py: its
probability is exp(-inf) = 0, the running max and sum keep their values), so a tile whose every key is
masked for every row of the query tile may be skipped exactly.  This pass reads the visibility condition the
spec wrote and records, on the loop, the positions its query tile can see:

    keys <= index(m) + upper    ->  the loop ends at tile cdiv(last row of the m tile + upper + 1, BLOCK_N)
    keys >  index(m) + lower    ->  the loop starts at tile (first row of the m tile + lower + 1) // BLOCK_N
    (also <, >=, and the mirrored forms index(m) + e >= index(n))

``upper`` and ``lower`` are scalar expressions (``N - M``, ``N - M - window``).  Only conjuncts (``&``) of a
``where(cond, s, -inf)`` whose result is the online softmax's scores count, and only for a loop that is not
split (a split loop's runs are fixed on the host).  Tiles inside the range keep their masks: only tiles
wholly outside it are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.types import TileType


def key_range(kernel: ir.Kernel) -> ir.Kernel:
    body = tuple(_stmt(s) for s in kernel.body.body)
    return replace(kernel, body=replace(kernel.body, body=body))


def _stmt(stmt: ir.Stmt) -> ir.Stmt:
    if not isinstance(stmt, ir.SeqLoop):
        return stmt
    stmt = replace(stmt, body=tuple(_stmt(s) for s in stmt.body))
    if stmt.softmax_state is None or stmt.split > 1:
        return stmt
    band = loop_band(stmt)
    return stmt if band is None else replace(stmt, key_range=(band.rows, band.lower, band.upper))


def _scores(loop: ir.SeqLoop) -> tuple[ir.Expr, dict[str, ir.Expr]] | None:
    """The expression the online softmax's scores are (``loop.softmax_scores``, the name online_softmax
    gave them), following names assigned earlier in the loop body."""
    assigned: dict[str, ir.Expr] = {}
    for s in loop.body:
        if isinstance(s, ir.Assign):
            value = s.value
            if isinstance(value, ir.Var) and value.name in assigned:
                value = assigned[value.name]
            assigned[s.name] = value
            if s.name == loop.softmax_scores:
                return value, assigned
    return None


@dataclass(frozen=True)
class Band:
    """The visibility band a ``where(cond, s, -inf)`` states: keys with row + lower < key <= row + upper
    (either bound None: none), read from the conjuncts ``used`` of ``cond`` (the others are not bounds)."""

    rows: str
    lower: ir.Expr | None
    upper: ir.Expr | None
    where: ir.Where
    conjuncts: tuple[ir.Expr, ...]
    used: tuple[int, ...]  # positions in conjuncts


def visibility_band(scores: ir.Expr, key_tile: str, assigned: dict[str, ir.Expr]) -> Band | None:
    if not (isinstance(scores, ir.Where) and isinstance(scores.otherwise, ir.Const)
            and scores.otherwise.value == -math.inf):
        return None
    rows: str | None = None
    lower: ir.Expr | None = None
    upper: ir.Expr | None = None
    conjuncts = tuple(_conjuncts(scores.cond, assigned))
    used: list[int] = []
    for i, cond in enumerate(conjuncts):
        found = _compare(cond, key_tile)
        if found is None:
            continue
        row_tile, kind, offset = found
        if rows not in (None, row_tile):
            continue
        rows = row_tile
        if kind == "upper" and upper is None:
            upper = offset
            used.append(i)
        elif kind == "lower" and lower is None:
            lower = offset
            used.append(i)
    if rows is None:
        return None
    return Band(rows, lower, upper, scores, conjuncts, tuple(used))


def loop_band(loop: ir.SeqLoop) -> Band | None:
    """The band of an online-softmax loop's scores (None: no band, or not an online-softmax loop)."""
    located = _scores(loop)
    if located is None:
        return None
    scores, assigned = located
    return visibility_band(scores, loop.tile.name, assigned)


def _conjuncts(e: ir.Expr, assigned: dict[str, ir.Expr]) -> list[ir.Expr]:
    if isinstance(e, ir.Var) and e.name in assigned:  # visible = ...; s = where(visible, s, -inf)
        e = assigned[e.name]
    if isinstance(e, ir.Binary) and e.op == "&":
        return _conjuncts(e.left, assigned) + _conjuncts(e.right, assigned)
    return [e]


def _compare(e: ir.Expr, key_tile: str) -> tuple[str, str, ir.Expr] | None:
    """``index(n) <= index(m) + e`` -> (m, "upper", e) meaning keys <= row + e; ``>`` -> "lower": keys > row + e."""
    if not isinstance(e, ir.Compare) or e.op not in ("<", "<=", ">", ">="):
        return None
    op, left, right = e.op, e.left, e.right
    if _positions(right) == key_tile:  # mirror: row + e >= key  <=>  key <= row + e
        op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
        left, right = right, left
    if _positions(left) != key_tile:
        return None
    split = _row_plus(right)
    if split is None:
        return None
    row_tile, offset = split
    if row_tile == key_tile:
        return None
    one = ir.Const(1, offset.type, offset.span)
    if op == "<=":
        return row_tile, "upper", offset
    if op == "<":  # key < row + e  <=>  key <= row + e - 1
        return row_tile, "upper", ir.Binary("-", offset, one, offset.type, offset.span)
    if op == ">":
        return row_tile, "lower", offset
    return row_tile, "lower", ir.Binary("-", offset, one, offset.type, offset.span)  # >=: key > row + e - 1


def _positions(e: ir.Expr) -> str | None:
    """The tile whose positions ``e`` is (``index(n)``, broadcast or cast), else None."""
    while isinstance(e, (ir.View, ir.Cast)):
        e = e.operand
    return e.tile if isinstance(e, ir.TilePositions) else None


def _row_plus(e: ir.Expr) -> tuple[str, ir.Expr] | None:
    """``index(m) + a - b ...`` (scalar a, b) -> (m, a - b ...); None if not of that form."""
    row = _positions(e)
    if row is not None:
        return row, ir.Const(0, TileType((), dt.i32), e.span)
    if isinstance(e, ir.Binary) and e.op in ("+", "-"):
        left = _row_plus(e.left)
        if left is not None and _invariant(e.right):
            zero = isinstance(left[1], ir.Const) and left[1].value == 0
            if zero and e.op == "+":
                return left[0], e.right
            return left[0], ir.Binary(e.op, left[1], e.right, left[1].type, e.span)
        if e.op == "+":
            right = _row_plus(e.right)
            if right is not None and _invariant(e.left):
                return right[0], ir.Binary("+", e.left, right[1], right[1].type, e.span)
    return None


def _invariant(e: ir.Expr) -> bool:
    """A scalar integer the loop does not change: literals, scalar parameters, dimensions, grid positions."""
    return not e.type.rank and e.type.dtype.is_int and all(
        isinstance(x, (ir.Const, ir.ScalarArg, ir.DimValue, ir.GridValue, ir.Binary, ir.Unary, ir.Cast))
        for x in ir.walk_exprs(e))
