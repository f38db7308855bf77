"""Masks: which loads and stores need bounds masks, and which reductions need padding guards.

IR in, IR out.  A tile axis is *padded* when its block may run past the
dimension (``M`` not a multiple of ``BLOCK_M``; ``N`` not a power of two for a
whole-axis ``:`` block).  Before this pass every index entry has
``needs_mask=True`` and every reduction and product ``guard=True``; after it:

- an index entry keeps its mask only where sympy cannot prove the accessed
  positions in bounds (given the specialisation's divisibility facts);
- a reduction keeps its guard (``where(mask, x, identity)``) only where the
  operand's value in the padding is not already the reduction's identity;
  a product keeps its guard only where the operand's padding is not already 0.

The padding analysis follows values through the program: a masked load gives
0 in its padding, ``exp`` of that gives 1, ``x - rowmax`` gives an unknown
value, and so on (constant folding restricted to the padding region, per axis).
It is what makes ``max(x[m, :])`` correct when N is not a power of two, and
what keeps a plain GEMM's main loop free of guards.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import sympy

from tilec.ir import nodes as ir
from tilec.ir.types import Axis

Pad = float | int | bool | None  # a known value in the padding, or None (unknown)
PadEnv = dict[str, dict[Axis, Pad]]

_IDENTITY: dict[str, float] = {"sum": 0.0, "max": -math.inf, "min": math.inf}
_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
_MATH: dict[str, Callable[[float], float]] = {
    "exp": math.exp, "exp2": lambda x: 2.0**x, "abs": abs, "sqrt": math.sqrt, "tanh": math.tanh,
    "sigmoid": lambda x: 1 / (1 + math.exp(-x)), "silu": lambda x: x / (1 + math.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))), "log": math.log, "log2": math.log2,
    "rsqrt": lambda x: 1 / math.sqrt(x),
}


@dataclass(frozen=True)
class Facts:
    """What the specialisation knows: tiles whose dimension divides by the block, and
    whole-axis dimensions that equal their power-of-two block."""

    divisible: frozenset[str] = frozenset()
    exact: frozenset[str] = frozenset()


def elide_masks(kernel: ir.Kernel, facts: Facts) -> ir.Kernel:
    analysis = _Analysis(kernel, facts)
    body = analysis.stmts(kernel.body.body, {})
    return replace(kernel, body=replace(kernel.body, body=body))


class _Analysis:
    def __init__(self, kernel: ir.Kernel, facts: Facts):
        self.kernel = kernel
        self.facts = facts
        self.tiles = kernel.tile_vars()
        self.env: PadEnv = {}

    # ------------------------------------------------------------ statements
    def stmts(self, body: tuple[ir.Stmt, ...], env: PadEnv) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for s in body:
            if isinstance(s, ir.Assign):
                value = self.expr(s.value, env)
                env[s.name] = {ax: self.pad(value, ax, env) for ax in value.type.axes if self.padded(ax)}
                out.append(replace(s, value=value))
            elif isinstance(s, ir.Store):
                index = self.index(s.index, s.tensor)
                out.append(replace(s, index=index, value=self.expr(s.value, env)))
            elif isinstance(s, ir.SeqLoop):
                out.append(self.loop(s, env))
            else:
                out.append(s)
        return tuple(out)

    def loop(self, loop: ir.SeqLoop, env: PadEnv) -> ir.SeqLoop:
        if loop.part == "interior":  # passes/interior_tiles.py: only tiles wholly inside the key axis
            outer = self.facts
            self.facts = replace(outer, divisible=outer.divisible | {loop.tile.name})
            try:
                return self._loop(loop, env)
            finally:
                self.facts = outer
        return self._loop(loop, env)

    def _loop(self, loop: ir.SeqLoop, env: PadEnv) -> ir.SeqLoop:
        # Loop-carried names: iterate until the padding facts entering the body are stable.
        for _ in range(4):
            inner = {k: dict(v) for k, v in env.items()}
            body = self.stmts(loop.body, inner)
            merged = {name: {ax: _meet(pads.get(ax), inner[name].get(ax)) for ax in pads}
                      for name, pads in env.items()}
            if merged == env:
                break
            env.clear()
            env.update(merged)
        return replace(loop, body=body)

    # ---------------------------------------------------------------- masks
    def padded(self, axis: Axis) -> bool:
        if axis.kind == "tile":
            return axis.name not in self.facts.divisible
        if axis.kind == "full":
            return axis.name not in self.facts.exact
        return False

    def index(self, index: tuple[ir.Index, ...], tensor: str) -> tuple[ir.Index, ...]:
        param = self.kernel.param(tensor)
        assert isinstance(param, ir.TensorParam)
        out: list[ir.Index] = []
        for ix, extent in zip(index, param.dims):
            if isinstance(ix, ir.TileIndex):
                ix = replace(ix, needs_mask=not self.in_bounds(ix, extent))
            elif isinstance(ix, ir.FullIndex):
                ix = replace(ix, needs_mask=ix.dim not in self.facts.exact)
            elif isinstance(ix, ir.PointIndex):
                ix = replace(ix, needs_mask=not self.point_in_bounds(ix.value, extent))
            out.append(ix)
        return tuple(out)

    def point_in_bounds(self, value: ir.Expr, extent: sympy.Expr) -> bool:
        """A scalar index provably in [0, extent): a grid position over that very dimension, or a constant."""
        if isinstance(value, ir.GridValue):
            point = next(p for p in self.kernel.body.points if p.name == value.name)
            return bool(sympy.simplify(point.extent - extent) == 0)
        if isinstance(value, ir.Const) and isinstance(value.value, int) and value.value >= 0:
            return bool(sympy.simplify(extent - 1 - value.value).is_nonnegative)
        return False

    def in_bounds(self, ix: ir.TileIndex, extent: sympy.Expr) -> bool:
        """Prove 0 <= position < extent for every lane of the tile (padding lanes included)."""
        tv = self.tiles[ix.tile]
        block = tv.block
        assert block is not None
        if tv.name not in self.facts.divisible:
            return False  # the last tile has lanes past the dimension
        # With D = q * B, tile t covers t*B .. t*B + B - 1 for t in [0, q): the lowest position is
        # 0 + offset and the highest q*B - 1 + offset.
        q = sympy.Symbol("q", integer=True, positive=True)
        dim = tv.extent
        lowest = ix.offset_sym
        highest = q * block - 1 + ix.offset_sym
        below = (extent - 1 - highest).subs(dim, q * block) if dim.free_symbols else extent - 1 - highest
        return bool(sympy.simplify(lowest).is_nonnegative) and bool(sympy.simplify(below).is_nonnegative)

    # ------------------------------------------------------------ expressions
    def expr(self, e: ir.Expr, env: PadEnv) -> ir.Expr:
        if isinstance(e, (ir.Load, ir.QuantLoad, ir.GroupScale)):
            index = tuple(replace(ix, value=self.expr(ix.value, env)) if isinstance(ix, ir.GatherIndex) else ix
                          for ix in e.index)
            return replace(e, index=self.index(index, e.tensor))
        if isinstance(e, (ir.Unary, ir.Cast, ir.View, ir.Trans)):
            return replace(e, operand=self.expr(e.operand, env))
        if isinstance(e, (ir.Binary, ir.Compare)):
            return replace(e, left=self.expr(e.left, env), right=self.expr(e.right, env))
        if isinstance(e, ir.Where):
            return replace(e, cond=self.expr(e.cond, env), then=self.expr(e.then, env),
                           otherwise=self.expr(e.otherwise, env))
        if isinstance(e, ir.Math):
            return replace(e, args=tuple(self.expr(a, env) for a in e.args))
        if isinstance(e, ir.Reduce):
            operand = self.expr(e.operand, env)
            axis = operand.type.axes[e.axis]
            guard = self.padded(axis) and self.pad(operand, axis, env) != _IDENTITY[e.op]
            return replace(e, operand=operand, guard=guard)
        if isinstance(e, ir.Dot):
            a, b = self.expr(e.a, env), self.expr(e.b, env)
            acc = self.expr(e.acc, env) if e.acc is not None else None
            k = a.type.axes[1]
            contracted = self.padded(k)
            return replace(e, a=a, b=b, acc=acc, guard_a=contracted and self.pad(a, k, env) != 0,
                           guard_b=contracted and self.pad(b, k, env) != 0)
        if isinstance(e, ir.ScaledDot):  # code and scale loads fill padding with 0: no guard exists to clear
            a_load, b_load = self.expr(e.a, env), self.expr(e.b, env)
            assert isinstance(a_load, ir.QuantLoad) and isinstance(b_load, ir.QuantLoad)
            return replace(e, a=a_load, b=b_load, acc=self.expr(e.acc, env) if e.acc is not None else None)
        return e

    def pad(self, e: ir.Expr, axis: Axis, env: PadEnv) -> Pad:
        """The value ``e`` holds wherever its coordinate along ``axis`` is in the padding."""
        if isinstance(e, (ir.Const, ir.Full)):
            return e.value
        if axis not in e.type.axes:
            return None  # e is broadcast along axis: it holds its ordinary (unknown) values there
        if isinstance(e, (ir.Load, ir.QuantLoad, ir.GroupScale)):
            return 0  # masked loads fill with 0 (a dequantising load zeroes its padding lanes too)
        if isinstance(e, ir.Var):
            return env.get(e.name, {}).get(axis)
        if isinstance(e, (ir.Cast, ir.View, ir.Trans)):
            return _cast(self.pad(e.operand, axis, env), e.type.dtype.kind)
        if isinstance(e, ir.Unary):
            v = self.pad(e.operand, axis, env)
            return None if v is None else (-v if e.op == "neg" else _fold(operator.invert, v))
        if isinstance(e, ir.Binary):
            return _fold2(_BINARY.get(e.op), self.pad(e.left, axis, env), self.pad(e.right, axis, env))
        if isinstance(e, ir.Compare):
            return _fold2(_COMPARE[e.op], self.pad(e.left, axis, env), self.pad(e.right, axis, env))
        if isinstance(e, ir.Where):
            c = self.pad(e.cond, axis, env)
            t, f = self.pad(e.then, axis, env), self.pad(e.otherwise, axis, env)
            if c is None:
                return t if t is not None and t == f else None
            return t if c else f
        if isinstance(e, ir.Math):
            vals = [self.pad(a, axis, env) for a in e.args]
            if e.fn in ("maximum", "minimum"):
                return _fold2(max if e.fn == "maximum" else min, vals[0], vals[1])
            if e.fn == "fma":
                return _fold(lambda a, b, c: a * b + c, *vals)
            return _fold(_MATH[e.fn], vals[0]) if e.fn in _MATH else None
        if isinstance(e, ir.Reduce):
            v = self.pad(e.operand, axis, env)
            return v if e.op != "sum" or v == 0 else None
        if isinstance(e, ir.Dot):
            row_zero = (axis == e.a.type.axes[0] and self.pad(e.a, axis, env) == 0) or (
                axis == e.b.type.axes[1] and self.pad(e.b, axis, env) == 0)
            if not row_zero:
                return None
            return 0 if e.acc is None else self.pad(e.acc, axis, env)
        if isinstance(e, ir.ScaledDot):  # rows of a are along m, rows of b along n; both load 0 in padding
            if axis not in (e.a.type.axes[0], e.b.type.axes[0]):
                return None
            return 0 if e.acc is None else self.pad(e.acc, axis, env)
        return None  # positions, scalars: unknown


def _meet(a: Pad, b: Pad) -> Pad:
    return a if a is not None and b is not None and a == b else None


def _cast(v: Pad, kind: str) -> Pad:
    if v is None:
        return None
    if kind == "bool":
        return bool(v)
    if kind in ("int", "uint"):
        return int(v) if math.isfinite(v) else None
    return float(v)


def _fold(fn: Callable[..., object], *args: Pad) -> Pad:
    if any(a is None for a in args):
        return None
    try:
        out = fn(*args)
    except (ArithmeticError, ValueError, TypeError):
        return None
    if isinstance(out, float) and math.isnan(out):
        return None
    return out if isinstance(out, (bool, int, float)) else None


def _fold2(fn: Callable[[float, float], object] | None, a: Pad, b: Pad) -> Pad:
    return None if fn is None else _fold(fn, a, b)


def facts_for(kernel: ir.Kernel, dim_values: Mapping[str, int]) -> Facts:
    """Facts from concrete dimension sizes (what a launch knows)."""
    # A split loop's last split may run past the tiles (cdiv(tiles, split) each): exact only if split divides them.
    splits = {loop.tile.name: loop.split for loop in ir.walk_loops(kernel.body.body)}
    divisible = frozenset(
        name for name, tv in kernel.tile_vars().items()
        if tv.block is not None and _value(tv.extent, dim_values) % tv.block == 0
        and (_value(tv.extent, dim_values) // tv.block) % splits.get(name, 1) == 0
    )
    exact = frozenset(dim for dim, block in kernel.full_blocks
                      if (int(dim) if dim.isdigit() else dim_values[dim]) == block)
    return Facts(divisible, exact)


def _value(extent: sympy.Expr, dim_values: Mapping[str, int]) -> int:
    return int(extent.subs({s: dim_values[s.name] for s in extent.free_symbols}))
