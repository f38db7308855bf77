"""Fuse ``acc += a @ b`` into one matrix instruction with an accumulator.

IR in, IR out.  Before: ``Assign(acc, Binary('+', Var(acc), Dot(a, b)))``;
after: ``Assign(acc, Dot(a, b, acc=Var(acc)))``, which Triton lowers to a
single mma/wgmma chain instead of a product followed by an addition.  Any
addend of the accumulator's type folds in the same way (``acc * 2 + a @ b``
becomes ``dot(a, b, acc * 2)``): the products are then summed onto it, a
reassociation of the same kind as FMA contraction.
"""

from __future__ import annotations

from dataclasses import replace

from tilec.ir import nodes as ir


def fuse_dot_acc(kernel: ir.Kernel) -> ir.Kernel:
    return replace(kernel, body=replace(kernel.body, body=_stmts(kernel.body.body)))


def _stmts(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
    out: list[ir.Stmt] = []
    for s in body:
        if isinstance(s, ir.SeqLoop):
            s = replace(s, body=_stmts(s.body))
        elif isinstance(s, ir.Assign):
            s = replace(s, value=_fuse(s.value))
        out.append(s)
    return tuple(out)


def _fuse(e: ir.Expr) -> ir.Expr:
    if isinstance(e, ir.Binary) and e.op == "+":
        for acc, dot in ((e.left, e.right), (e.right, e.left)):
            if isinstance(dot, ir.Dot) and dot.acc is None and acc.type == dot.type:
                return replace(dot, acc=acc, span=e.span)
    return e
