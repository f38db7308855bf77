"""A bottom-up expression rewriter shared by passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tilec.ir import nodes as ir

Rewrite = Callable[[ir.Expr], ir.Expr]


def map_exprs(kernel: ir.Kernel, fn: Rewrite) -> ir.Kernel:
    """Apply ``fn`` to every expression of ``kernel``, children before parents."""
    return replace(kernel, body=replace(kernel.body, body=_stmts(kernel.body.body, fn)))


def _stmts(body: tuple[ir.Stmt, ...], fn: Rewrite) -> tuple[ir.Stmt, ...]:
    out: list[ir.Stmt] = []
    for s in body:
        if isinstance(s, ir.SeqLoop):
            out.append(replace(s, body=_stmts(s.body, fn)))
        elif isinstance(s, ir.Assign):
            out.append(replace(s, value=rewrite(s.value, fn)))
        elif isinstance(s, ir.Store):
            out.append(replace(s, value=rewrite(s.value, fn), index=_index(s.index, fn)))
        else:
            out.append(s)
    return tuple(out)


def _index(index: tuple[ir.Index, ...], fn: Rewrite) -> tuple[ir.Index, ...]:
    out: list[ir.Index] = []
    for ix in index:
        if isinstance(ix, ir.TileIndex) and ix.offset is not None:
            ix = replace(ix, offset=rewrite(ix.offset, fn))
        elif isinstance(ix, (ir.PointIndex, ir.GatherIndex)):
            ix = replace(ix, value=rewrite(ix.value, fn))
        out.append(ix)
    return tuple(out)


def rewrite(e: ir.Expr, fn: Rewrite) -> ir.Expr:
    if isinstance(e, (ir.Unary, ir.Cast, ir.Reduce, ir.View, ir.Trans, ir.Softmax)):
        e = replace(e, operand=rewrite(e.operand, fn))
    elif isinstance(e, (ir.Binary, ir.Compare)):
        e = replace(e, left=rewrite(e.left, fn), right=rewrite(e.right, fn))
    elif isinstance(e, ir.Where):
        e = replace(e, cond=rewrite(e.cond, fn), then=rewrite(e.then, fn), otherwise=rewrite(e.otherwise, fn))
    elif isinstance(e, ir.Math):
        e = replace(e, args=tuple(rewrite(a, fn) for a in e.args))
    elif isinstance(e, ir.Dot):
        acc = rewrite(e.acc, fn) if e.acc is not None else None
        e = replace(e, a=rewrite(e.a, fn), b=rewrite(e.b, fn), acc=acc)
    elif isinstance(e, ir.ScaledDot):  # operands stay QuantLoads: only the accumulator is rewritten freely
        acc = rewrite(e.acc, fn) if e.acc is not None else None
        e = replace(e, acc=acc)
    elif isinstance(e, ir.Load):
        e = replace(e, index=_index(e.index, fn))
    elif isinstance(e, ir.QuantLoad):
        group = rewrite(e.group, fn) if e.group is not None else None
        e = replace(e, index=_index(e.index, fn), group=group)
    elif isinstance(e, ir.GroupScale):
        e = replace(e, index=_index(e.index, fn), group=rewrite(e.group, fn))
    return fn(e)
