"""Online softmax: ``acc += softmax(s, axis=1) @ v`` over a tiled key loop becomes FlashAttention's form.

IR in, IR out.  Inside ``for n in tiles(N):`` a softmax (or log-sum-exp) over the loop's tile axis means
the one over the whole of N (ir.Softmax, made by the checker).  The scores are never materialised: each
distinct score tile ``s`` gets a running row maximum ``m`` and a running row sum ``l``::

    before the loop:   m = full([rows], -inf);  l = zeros([rows])
    in the loop:       s' = s * log2(e)                           # base 2: exp2 is one instruction
                       m_new = maximum(m, max(s', axis=1))
                       m_use = where(m_new == -inf, 0, m_new)    # every key so far masked: no NaN
                       p = exp2(s' - m_use[:, None]);  alpha = exp2(m - m_use)
                       l = l * alpha + sum(p, axis=1);  m = m_new
                       acc = acc * alpha[:, None] + p.to(T) @ v   # each accumulator of this softmax
    after the loop:    acc = acc * (1 / maximum(l, 1))[:, None]     # l >= 1 once a key is visible
                       lse = (m + log2(l)) * ln(2)                # for `lse = logsumexp(s, axis=1)`

The factor log2(e) is folded into the spec's scalar scale when the scores are ``where(cond, x * scale,
-inf)`` (the names assigned for them earlier in the loop are substituted and their statements dropped), so
base 2 costs nothing: one multiply per score, as the spec wrote.  When the specialisation knows that scale is
positive (``positive``: the launch's value), the multiply moves after the row max and into the exponent:
``m_new = maximum(m, max(x, axis=1) * c)``, ``p = exp2(fma(x, c, -m_use[:, None]))`` (see _update).

Once a row has a visible key, l >= 1 (its maximum contributes exp(0) = 1), so the division never meets a
small l; a row whose every key is masked (``where(visible, s, -inf)`` false everywhere) keeps acc = 0, l = 0
and m = -inf, and therefore gives an output of 0 and a log-sum-exp of -inf, never NaN.  Several
accumulators may share one softmax (value planes of a quantised cache), each
``acc += softmax(s).to(T) @ v_i``; an accumulator may take any form linear in each row of softmax(s)
(``(softmax(s) * w[None, :]).to(T) @ v``, ``sum(softmax(s) * w[None, :], axis=1)``: a per-key scale
folded into the probabilities), since rescaling the row by alpha commutes with it.  The loop records ``(m, l)`` as its
``softmax_state``, so a split loop (passes/split_k.py) merges its partials by log-sum-exp.

Any other use of ``softmax``/``logsumexp`` over the loop's axis has no online form: it is reported at its
spec location.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from tilec.errors import Span, TileTypeError
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.types import Axis, TileType
from tilec.passes.rewrite import rewrite

LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)
_USE = ("inside a key loop, softmax over the loop's axis is used as `acc += softmax(s, axis=1).to(T) @ v` and "
        "log-sum-exp as `lse = logsumexp(s, axis=1)`")


def online_softmax(kernel: ir.Kernel, positive: frozenset[str] = frozenset()) -> ir.Kernel:
    """``positive``: scalar arguments the specialisation knows to be > 0 (the launch's values): scores that
    are ``x * scale`` then take the scale after the row max (see _update)."""
    names = _Names(kernel)
    body = _block(kernel.body.body, names, positive)
    return replace(kernel, body=replace(kernel.body, body=body))


class _Names:
    """Fresh names that no spec name (parameter, dimension, loop variable, variable) already uses."""

    def __init__(self, kernel: ir.Kernel):
        self.taken = {p.name for p in kernel.params} | set(kernel.dims) | set(kernel.tile_vars())
        self.taken |= {p.name for p in kernel.body.points}
        self.taken |= {s.name for s in ir.walk_stmts(kernel.body.body) if isinstance(s, ir.Assign)}

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self.taken:
            i += 1
            name = f"{hint}{i}"
        self.taken.add(name)
        return name


@dataclass
class _Group:
    """The online state of one score tile: its names and the accumulators it scales."""

    scores: ir.Expr
    rows: TileType  # the scores' row axes (f32): the type of m and l
    max_name: str
    sum_name: str
    alpha: str
    probs: str
    scores_name: str
    max_new: str
    max_used: str
    scores_base2: ir.Expr | None = None  # scores * log2(e), the scale folded in
    accumulators: list[tuple[str, TileType]] = field(default_factory=list)
    lse: list[tuple[str, Span]] = field(default_factory=list)


def _block(body: tuple[ir.Stmt, ...], names: _Names, positive: frozenset[str],
           in_loop: bool = False) -> tuple[ir.Stmt, ...]:
    """Rewrite the loops of ``body``, innermost first; statements of a loop body are _loop's to check."""
    out: list[ir.Stmt] = []
    for stmt in body:
        if isinstance(stmt, ir.SeqLoop):
            out.extend(_loop(replace(stmt, body=_block(stmt.body, names, positive, in_loop=True)), names, positive))
        else:
            if not in_loop:
                _reject_stray(stmt)
            out.append(stmt)
    return tuple(out)


def _loop(loop: ir.SeqLoop, names: _Names, positive: frozenset[str]) -> list[ir.Stmt]:
    groups: list[_Group] = []
    body: list[ir.Stmt] = []
    local: dict[str, list[tuple[int, ir.Expr]]] = {}  # loop-local name -> (position, value) per assignment
    for stmt in loop.body:
        found = _use(stmt, loop.tile.name)
        if found is None:
            _reject_stray(stmt)
            if isinstance(stmt, ir.Assign) and (stmt.declares or stmt.name in local):
                local.setdefault(stmt.name, []).append((len(body), stmt.value))
            body.append(stmt)
            continue
        softmax, acc = found
        group = next((g for g in groups if _same(g.scores, softmax.operand)), None)
        if group is None:
            group = _new_group(softmax, names)
            group.scores_base2 = _base2(softmax.operand, local, len(body))
            groups.append(group)
            body.extend(_update(group, softmax.span, positive))
        assert isinstance(stmt, ir.Assign)
        if softmax.fn == "logsumexp":
            group.lse.append((stmt.name, stmt.span))
            continue
        group.accumulators.append((acc, stmt.value.type))
        body.append(_rescaled(stmt, group, softmax))
    if not groups:
        return [loop]
    if len(groups) > 1 and loop.split > 1:
        raise TileTypeError("a split key loop computes one softmax", loop.span)
    state = (groups[0].max_name, groups[0].sum_name) if len(groups) == 1 else None
    scores = groups[0].scores_name if len(groups) == 1 else None
    before: list[ir.Stmt] = []
    after: list[ir.Stmt] = []
    for g in groups:
        span = loop.span
        before.append(ir.Assign(g.max_name, ir.Full(-math.inf, g.rows, span), span, declares=True))
        before.append(ir.Assign(g.sum_name, ir.Full(0.0, g.rows, span), span, declares=True))
        after.extend(_finish(g, names, span))
    live = _without_dead(body, set(local))
    return [*before, replace(loop, body=live, softmax_state=state, softmax_scores=scores), *after]


def _base2(scores: ir.Expr, local: dict[str, list[tuple[int, ir.Expr]]], at: int) -> ir.Expr:
    """``scores * log2(e)``, the online state's domain (exp2 is one instruction, exp a multiply and exp2),
    with the multiply folded into the spec's own scalar scale where the scores are ``where(cond, x * scale,
    -inf)``: names assigned earlier in the loop are substituted (their statements then die, below)."""
    def inline(e: ir.Expr, upto: int) -> tuple[ir.Expr, int]:
        """``e`` with a loop-local name replaced by its value (and the position that value was computed at)."""
        if isinstance(e, ir.Var) and e.name in local:
            writes = [(pos, v) for pos, v in local[e.name] if pos < upto]
            if writes:
                pos, value = writes[-1]
                if not _reads_later_writes(value, local, pos, at):
                    return inline(value, pos)
        return e, upto

    kept: list[tuple[ir.Expr, int]] = []  # parts left as written, with the position whose names they read

    def push(e: ir.Expr, upto: int) -> ir.Expr:
        e, upto = inline(e, upto)
        if isinstance(e, ir.Where) and isinstance(e.otherwise, ir.Const) and e.otherwise.value == -math.inf:
            kept.append((e.cond, upto))
            return replace(e, then=push(e.then, upto))
        kept.append((e, upto))
        if isinstance(e, ir.Binary) and e.op == "*":
            for tile, scalar in ((e.left, e.right), (e.right, e.left)):
                if scalar.type.rank == 0 and tile.type.rank and scalar.type.dtype == dt.f32:
                    folded = ir.Binary("*", scalar, _f32(LOG2E, e.span), scalar.type, e.span)
                    return ir.Binary("*", tile, folded, e.type, e.span)
        return ir.Binary("*", e, _f32(LOG2E, e.span), e.type, e.span)

    base2 = push(scores, at)
    if any(_reads_later_writes(part, local, pos - 1, at) for part, pos in kept if pos < at):
        # a part still names a value overwritten before the scores are used (`s = s + bias` read back as
        # `s`): keep the scores' own statements and multiply once
        return ir.Binary("*", scores, _f32(LOG2E, scores.span), scores.type, scores.span)
    return base2


def _reads_later_writes(value: ir.Expr, local: dict[str, list[tuple[int, ir.Expr]]], pos: int, at: int) -> bool:
    """Whether moving ``value`` from position ``pos`` to ``at`` would read a name written in between."""
    read = {e.name for e in ir.walk_exprs(value) if isinstance(e, ir.Var)}
    return any(pos < p < at for name in read for p, _ in local.get(name, []))


def _without_dead(body: list[ir.Stmt], local: set[str]) -> tuple[ir.Stmt, ...]:
    """Drop assignments to loop-local names that nothing after them reads (the scores' statements, once
    substituted into the base-2 scores; a declaration whose name is still read later stays)."""
    out = list(body)
    changed = True
    while changed:
        changed = False
        for i, stmt in enumerate(out):
            if not (isinstance(stmt, ir.Assign) and stmt.name in local):
                continue
            later = [e for s in out[i + 1:] for e in _stmt_exprs(s)]
            if not any(isinstance(e, ir.Var) and e.name == stmt.name for root in later for e in ir.walk_exprs(root)):
                if stmt.declares and any(isinstance(s, ir.Assign) and s.name == stmt.name for s in out[i + 1:]):
                    continue  # a later assignment relies on this declaration
                del out[i]
                changed = True
                break
    return tuple(out)


def _stmt_exprs(stmt: ir.Stmt) -> list[ir.Expr]:
    if isinstance(stmt, ir.Assign):
        return [stmt.value]
    if isinstance(stmt, ir.Store):
        return [stmt.value, *ir.index_exprs(stmt.index)]
    if isinstance(stmt, ir.SeqLoop):
        return [e for s in stmt.body for e in _stmt_exprs(s)]
    return []


def _use(stmt: ir.Stmt, tile: str) -> tuple[ir.Softmax, str] | None:
    """``acc = acc + softmax(s).to(T) @ v`` -> (softmax, acc); ``lse = logsumexp(s)`` -> (it, lse)."""
    if not isinstance(stmt, ir.Assign):
        return None
    value = stmt.value
    if isinstance(value, ir.Softmax) and value.fn == "logsumexp" and _over(value, tile):
        if stmt.declares:
            raise TileTypeError("the log-sum-exp over the loop's whole axis is known only after the loop",
                                stmt.span, hint="assign it to a name declared before the loop (lse = zeros([m]))")
        return value, stmt.name
    if isinstance(value, ir.Cast):
        value = value.operand
    if not (isinstance(value, ir.Binary) and value.op == "+" and isinstance(value.left, ir.Var)
            and value.left.name == stmt.name):
        return None
    probs = _linear_softmax(value.right, tile)
    if probs is None:
        return None
    if probs.axis != 1 or probs.type.rank != 2:
        raise TileTypeError("the online softmax takes 2-D scores normalised along axis 1", probs.span,
                            hint="s = q @ k.T: rows are queries, columns are this tile's keys")
    if stmt.declares:
        raise TileTypeError(f"'{stmt.name}' must be declared before the loop to accumulate over it", stmt.span)
    rows = probs.type.axes[0]
    if not value.type.axes or value.type.axes[0] != rows:
        raise TileTypeError(f"'{stmt.name}' accumulates over the softmax but its rows are not the scores' rows",
                            stmt.span, hint="each row of the accumulator must take only its own row of softmax(s)")
    return probs, stmt.name


def _linear_softmax(e: ir.Expr, tile: str) -> ir.Softmax | None:
    """The softmax over the loop's axis that ``e`` is linear in, row by row, or None (no softmax).

    Linear forms: ``softmax(s)`` itself, a cast of one, a product with (or quotient by) a factor without
    softmax, ``L @ v`` and ``sum(L, axis >= 1)``.  They keep each row of the result a linear function of the
    same row of softmax(s), which is what lets the accumulator be rescaled row by row.  A softmax used any
    other way there is reported by the caller.
    """
    if isinstance(e, ir.Softmax):
        return e if e.fn == "softmax" and _over(e, tile) else None
    if isinstance(e, ir.Cast):
        return _linear_softmax(e.operand, tile)
    if isinstance(e, ir.Binary) and e.op in ("*", "/"):
        left, right = _linear_softmax(e.left, tile), None if e.op == "/" else _linear_softmax(e.right, tile)
        if left is not None and not _has_softmax(e.right):
            return left
        if right is not None and not _has_softmax(e.left):
            return right
        return None
    if isinstance(e, ir.Dot) and e.acc is None and not _has_softmax(e.b):
        return _linear_softmax(e.a, tile)
    if isinstance(e, ir.Reduce) and e.op == "sum" and e.axis >= 1:
        return _linear_softmax(e.operand, tile)
    if isinstance(e, ir.View) and e.pattern[:1] == (0,):
        return _linear_softmax(e.operand, tile)
    return None


def _has_softmax(e: ir.Expr) -> bool:
    return any(isinstance(x, ir.Softmax) for x in ir.walk_exprs(e))


def _over(s: ir.Softmax, tile: str) -> bool:
    axis = s.operand.type.axes[s.axis]
    return axis.kind == "tile" and axis.name == tile


def _reject_stray(stmt: ir.Stmt) -> None:
    values: list[ir.Expr] = []
    if isinstance(stmt, (ir.Assign, ir.Store)):
        values.append(stmt.value)
    for root in values:
        for e in ir.walk_exprs(root):
            if isinstance(e, ir.Softmax):
                raise TileTypeError(f"{e.fn}() over the key loop's axis has no online form here", e.span, hint=_USE)


def _same(a: ir.Expr, b: ir.Expr) -> bool:
    """Structural equality, spans ignored (the same scores written in two statements)."""
    return _strip(a) == _strip(b)


def _strip(e: ir.Expr) -> ir.Expr:
    return rewrite(e, lambda x: replace(x, span=None) if hasattr(x, "span") else x)  # type: ignore[arg-type]


def _new_group(softmax: ir.Softmax, names: _Names) -> _Group:
    rows = TileType(softmax.operand.type.axes[:1], dt.f32)
    return _Group(scores=softmax.operand, rows=rows, max_name=names.fresh("row_max"),
                  sum_name=names.fresh("row_sum"), alpha=names.fresh("rescale"), probs=names.fresh("probs"),
                  scores_name=names.fresh("scores"), max_new=names.fresh("row_max_new"),
                  max_used=names.fresh("row_max_used"))


def _f32(value: float, span: Span) -> ir.Const:
    return ir.Const(value, TileType((), dt.f32), span)


def _column(e: ir.Expr, span: Span) -> ir.Expr:
    """[rows] -> [rows, 1], to scale a [rows, cols] tile row by row."""
    return ir.View(e, (0, None), TileType((e.type.axes[0], Axis.one()), e.type.dtype), span)


def _update(g: _Group, span: Span, positive: frozenset[str] = frozenset()) -> list[ir.Stmt]:
    """The statements that advance the running max and sum by one tile of scores.

    Scores ``x * c`` (under an optional ``where(cond, ., -inf)``) with ``c`` a product of positive
    constants and scalars known positive (the spec's scale times log2(e)) keep ``x`` and take ``c`` after the
    row max: ``max(x * c) = max(x) * c`` for c > 0 (rounding is monotonic: the same float), and ``exp2(x * c
    - m)`` is one fused multiply-add (``fma``) per score instead of a multiply and a subtraction."""
    s_type = g.scores.type
    scores = ir.Var(g.scores_name, s_type, span)  # a named copy: the scores are used twice
    m = ir.Var(g.max_name, g.rows, span)
    l_ = ir.Var(g.sum_name, g.rows, span)
    value = g.scores_base2 if g.scores_base2 is not None else g.scores
    factored = _positive_factor(value, positive)
    tile_max: ir.Expr = ir.Reduce("max", scores, 1, g.rows, span)
    m_new_name = g.max_new
    m_new = ir.Var(m_new_name, g.rows, span)
    safe = ir.Where(ir.Compare("==", m_new, _f32(-math.inf, span), g.rows.with_dtype(dt.boolean), span),
                    _f32(0.0, span), m_new, g.rows, span)
    safe_name = g.max_used
    safe_var = ir.Var(safe_name, g.rows, span)
    exponent: ir.Expr = ir.Binary("-", scores, _column(safe_var, span), s_type, span)
    if factored is not None:
        value, factor = factored
        tile_max = ir.Binary("*", tile_max, factor, g.rows, span)
        shift = _column(safe_var, span)
        exponent = ir.Math("fma", (scores, factor, ir.Unary("neg", shift, shift.type, span)), s_type, span)
    probs = ir.Math("exp2", (exponent,), s_type, span)
    alpha = ir.Math("exp2", (ir.Binary("-", m, safe_var, g.rows, span),), g.rows, span)
    total = ir.Binary("+", ir.Binary("*", l_, ir.Var(g.alpha, g.rows, span), g.rows, span),
                      ir.Reduce("sum", ir.Var(g.probs, s_type, span), 1, g.rows, span), g.rows, span)
    return [
        ir.Assign(scores.name, value, span, declares=True),
        ir.Assign(m_new_name, ir.Math("maximum", (m, tile_max), g.rows, span), span, declares=True),
        ir.Assign(safe_name, safe, span, declares=True),
        ir.Assign(g.probs, probs, span, declares=True),
        ir.Assign(g.alpha, alpha, span, declares=True),
        ir.Assign(g.sum_name, total, span),
        ir.Assign(g.max_name, m_new, span),
    ]


def _positive_factor(e: ir.Expr, positive: frozenset[str]) -> tuple[ir.Expr, ir.Expr] | None:
    """``where(cond, x * c, -inf)`` or ``x * c`` with c a positive scalar -> (the same without c, c).

    Only where c holds a spec scalar (the scale, log2(e) folded in): log2(e) alone, after a bias or a soft-cap,
    stays a multiply.  Measured: moving it too made the all-features d = 256 kernel spill under Triton 3.6 on
    sm_80 (255 registers, 16 B; sm_90 222 -> 255 registers) for the same one instruction per score."""
    if isinstance(e, ir.Where) and isinstance(e.otherwise, ir.Const) and e.otherwise.value == -math.inf:
        inner = _positive_factor(e.then, positive)
        return None if inner is None else (replace(e, then=inner[0]), inner[1])
    if isinstance(e, ir.Binary) and e.op == "*":
        for tile, scalar in ((e.left, e.right), (e.right, e.left)):
            if (scalar.type.rank == 0 and tile.type == e.type and tile.type.dtype == dt.f32
                    and _positive(scalar, positive)
                    and any(isinstance(x, ir.ScalarArg) for x in ir.walk_exprs(scalar))):
                return tile, scalar
    return None


def _positive(e: ir.Expr, positive: frozenset[str]) -> bool:
    if isinstance(e, ir.Const):
        return not isinstance(e.value, bool) and isinstance(e.value, (int, float)) and e.value > 0
    if isinstance(e, ir.ScalarArg):
        return e.name in positive
    if isinstance(e, ir.Binary) and e.op == "*":
        return _positive(e.left, positive) and _positive(e.right, positive)
    return False


def _rescaled(stmt: ir.Assign, g: _Group, softmax: ir.Softmax) -> ir.Assign:
    """``acc = acc + L(softmax(s))``  ->  ``acc = acc * alpha[:, None] + L(probs)`` (L linear, see
    _linear_softmax; ``alpha`` without the column for a one-row-per-element accumulator)."""
    value = stmt.value
    cast = value if isinstance(value, ir.Cast) else None
    inner = value.operand if isinstance(value, ir.Cast) else value
    assert isinstance(inner, ir.Binary) and isinstance(inner.left, ir.Var)
    probs: ir.Expr = ir.Var(g.probs, softmax.operand.type, softmax.span)

    def swap(e: ir.Expr) -> ir.Expr:
        return probs if isinstance(e, ir.Softmax) else e

    acc = inner.left
    alpha: ir.Expr = ir.Var(g.alpha, g.rows, stmt.span)
    if acc.type.rank > 1:
        alpha = _column(alpha, stmt.span)
    scaled = ir.Binary("*", acc, alpha, acc.type, stmt.span)
    new = replace(inner, left=scaled, right=rewrite(inner.right, swap))
    return replace(stmt, value=replace(cast, operand=new) if cast is not None else new)


def _finish(g: _Group, names: _Names, span: Span) -> list[ir.Stmt]:
    """After the loop: divide each accumulator by the row sum (0 for a row with no visible key), and give
    each requested log-sum-exp m + log(l) (-inf for such a row)."""
    l_ = ir.Var(g.sum_name, g.rows, span)
    out: list[ir.Stmt] = []
    if g.accumulators:
        inv_name = names.fresh("inv_row_sum")
        inv = ir.Binary("/", _f32(1.0, span), ir.Math("maximum", (l_, _f32(1.0, span)), g.rows, span), g.rows, span)
        out.append(ir.Assign(inv_name, inv, span, declares=True))
        for acc_name, acc_type in dict.fromkeys(g.accumulators):
            acc = ir.Var(acc_name, acc_type, span)
            factor: ir.Expr = ir.Var(inv_name, g.rows, span)
            if acc_type.rank > 1:
                factor = _column(factor, span)
            out.append(ir.Assign(acc_name, ir.Binary("*", acc, factor, acc_type, span), span))
    for lse_name, lse_span in g.lse:
        m = ir.Var(g.max_name, g.rows, lse_span)
        base2 = ir.Binary("+", m, ir.Math("log2", (l_,), g.rows, lse_span), g.rows, lse_span)
        value = ir.Binary("*", base2, _f32(LN2, lse_span), g.rows, lse_span)  # back to the natural log
        out.append(ir.Assign(lse_name, value, lse_span))
    return out
