"""Split-K: several programs share one output tile's reduction loop (the decode path of small-M GEMMs).

IR in, IR out.  Before: ``SeqLoop(k, body)``; after: ``SeqLoop(k, body, split=S, partials=("acc",))``.
With few output tiles (M = 1..16 makes one row of tiles) a GPU has more SMs than programs; splitting the
K walk over ``S`` programs per tile multiplies the programs by ``S``.  Code generation (codegen/split_k.py)
gives each split a contiguous run of K tiles, writes each split's partial accumulators to a workspace, and
lets the last split to arrive at the tile add them up, in split order (so the result does not depend on
the order of arrival), and run the statements after the loop: epilogues stay fused and run once.

The rewrite is exact algebra only when the loop is a pure sum, so this pass proves that first
(:func:`split_blocker`): one reduction loop at the top of the tile loop, no stores before or inside it,
and every value the loop carries starts at zero and is only ever increased by terms that do not read a
carried value (``acc += a @ b``, fused or not).  Accumulators must be f32 or i32 (the workspace's types).
"""

from __future__ import annotations

from dataclasses import replace

from tilec.errors import ScheduleError
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir

MAX_SPLIT = 64


def split_k(kernel: ir.Kernel, split: int) -> ir.Kernel:
    if split == 1:
        return kernel
    if not 1 <= split <= MAX_SPLIT:
        raise ScheduleError(f"split_k={split} is not in 1..{MAX_SPLIT}", kernel.span)
    reason = split_blocker(kernel)
    if reason is not None:
        raise ScheduleError(f"split_k={split} cannot split {kernel.name}: {reason}", kernel.span,
                            hint="use split_k=1 for this kernel")
    body = kernel.body.body
    at = next(i for i, s in enumerate(body) if isinstance(s, ir.SeqLoop))
    loop = body[at]
    assert isinstance(loop, ir.SeqLoop)
    split_loop = replace(loop, split=split, partials=_carried(body[:at], loop))
    new_body = (*body[:at], split_loop, *body[at + 1:])
    return replace(kernel, body=replace(kernel.body, body=new_body))


def split_blocker(kernel: ir.Kernel) -> str | None:
    """Why the reduction loop of ``kernel`` cannot be split, or None when it can."""
    body = kernel.body.body
    loops = [i for i, s in enumerate(body) if isinstance(s, ir.SeqLoop)]
    if len(loops) != 1:
        return f"it has {len(loops)} reduction loops at the top of its tile loop (split-K needs exactly one)"
    at = loops[0]
    loop = body[at]
    assert isinstance(loop, ir.SeqLoop)
    before = body[:at]
    if any(isinstance(s, ir.Store) for s in before):
        return "it stores before its reduction loop (every split would store)"
    if any(not isinstance(s, ir.Assign) for s in loop.body):
        return "its reduction loop holds stores or nested loops"
    carried = _carried(before, loop)
    if not carried:
        return "its reduction loop carries no accumulator"
    if loop.softmax_state is not None:
        return _softmax_blocker(before, loop, carried)
    # Before passes/online_softmax.py (the default schedule looks at the checked IR): `lse = logsumexp(s)` over
    # the loop's axis becomes part of the online state, which splits and merges by log-sum-exp.
    lse = {s.name for s in loop.body if isinstance(s, ir.Assign) and isinstance(s.value, ir.Softmax)}
    carried = tuple(name for name in carried if name not in lse)
    for name in carried:
        inits = [s for s in before if isinstance(s, ir.Assign) and s.name == name]
        if len(inits) != 1 or not isinstance(inits[0].value, ir.Full) or inits[0].value.value != 0:
            return f"'{name}' does not start at zeros(...) (each split would add its start value)"
        if inits[0].value.type.dtype not in (dt.f32, dt.i32):
            return f"'{name}' is {inits[0].value.type.dtype.name}; split partial sums are f32 or i32"
    for stmt in loop.body:
        assert isinstance(stmt, ir.Assign)
        if stmt.name in lse:
            continue
        terms = _increment(stmt) if stmt.name in carried else (stmt.value,)
        if terms is None:
            return f"'{stmt.name}' is not only increased in the loop ('{stmt.name} += ...')"
        if any(isinstance(e, ir.Var) and e.name in carried for t in terms for e in ir.walk_exprs(t)):
            return f"the loop's update of '{stmt.name}' reads an accumulator"
    return None


def _softmax_blocker(before: tuple[ir.Stmt, ...], loop: ir.SeqLoop, carried: tuple[str, ...]) -> str | None:
    """An online-softmax loop (passes/online_softmax.py) splits too: its partials (accumulators, running max
    and sum) merge by log-sum-exp.  Its accumulators must start at zero, as for a sum."""
    assert loop.softmax_state is not None
    for name in carried:
        if name in loop.softmax_state:
            continue
        inits = [s for s in before if isinstance(s, ir.Assign) and s.name == name]
        if len(inits) != 1 or not isinstance(inits[0].value, ir.Full) or inits[0].value.value != 0:
            return f"'{name}' does not start at zeros(...) (each split would rescale its start value)"
        if inits[0].value.type.dtype != dt.f32:
            return f"'{name}' is {inits[0].value.type.dtype.name}; softmax accumulators are f32"
    return None


def _carried(before: tuple[ir.Stmt, ...], loop: ir.SeqLoop) -> tuple[str, ...]:
    declared = {s.name for s in before if isinstance(s, ir.Assign)}
    names: list[str] = []
    for s in loop.body:
        if isinstance(s, ir.Assign) and s.name in declared and s.name not in names:
            names.append(s.name)
    return tuple(names)


def _increment(stmt: ir.Assign) -> tuple[ir.Expr, ...] | None:
    """The terms added to ``stmt.name`` by ``stmt`` (``acc = dot(a, b, acc)`` or ``acc = acc + t``), else None."""
    v = stmt.value
    if isinstance(v, (ir.Dot, ir.ScaledDot)) and isinstance(v.acc, ir.Var) and v.acc.name == stmt.name:
        return (v.a, v.b)
    if isinstance(v, ir.Binary) and v.op == "+":
        for own, term in ((v.left, v.right), (v.right, v.left)):
            if isinstance(own, ir.Var) and own.name == stmt.name:
                return (term,)
    return None
