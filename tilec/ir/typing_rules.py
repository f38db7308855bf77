"""Typing of tile-language expressions: broadcasting, promotion, builtins.

Rules, in short (docs/language.md has the full table):

- Elementwise operations broadcast NumPy-style (right-aligned; axes of size 1 stretch).
- Dtypes promote as :func:`tilec.ir.dtypes.promote` says, except that scalars
  (literals, scalar parameters, dimension sizes) are *weak*: ``x * 2.0`` and
  ``x * alpha`` keep ``x``'s dtype, as in PyTorch.  Operands are cast
  explicitly in the IR, so code generation never relies on Triton's own rules.
- ``/`` is true division (integers divide as f32); ``//`` and ``%`` take integers.
- Math functions keep a float operand's dtype (f16/bf16 are computed in f32
  and rounded once); integer operands are converted to f32 first.
- ``sum`` accumulates f16/bf16 in f32 and small integers in i32; ``max``/``min``
  keep the dtype; ``mean`` works over whole axes (':') only.
- ``a @ b`` takes two 2-D tiles of one dtype (f16, bf16, f32 or i8) with the
  same contracted axis and returns f32 (i32 for i8).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from tilec.errors import Span, TileShapeError, TileSyntaxError, TileTypeError
from tilec.frontend import ast
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.types import Axis, TileType, broadcast_axes

if TYPE_CHECKING:
    import sympy

MATH_UNARY = frozenset({"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "abs", "silu", "gelu", "sigmoid", "tanh"})
MATH_BINARY = frozenset({"maximum", "minimum"})
REDUCTIONS = frozenset({"sum", "max", "min", "mean"})
DOT_DTYPES = (dt.f16, dt.bf16, dt.f32, dt.i8, dt.f8e4m3, dt.f8e5m2)
_ARITH = frozenset({"+", "-", "*", "/", "//", "%"})
_BITWISE = frozenset({"&", "|", "^", "<<", ">>"})
_CMP = frozenset({"<", "<=", ">", ">=", "==", "!="})


def _is_weak(e: ir.Expr) -> bool:
    return isinstance(e, (ir.Const, ir.ScalarArg, ir.DimValue))


def _span(node: object) -> Span:
    span = getattr(node, "span", None)
    assert isinstance(span, Span)
    return span


class ExprTyper(ABC):
    """Expression half of the checker; the statement half (:class:`tilec.ir.build._Builder`) provides
    name, dtype, index and view resolution."""

    tiles: dict[str, ir.TileVar]
    dims: dict[str, sympy.Symbol]
    params: dict[str, ir.Param]

    @abstractmethod
    def name(self, node: ast.Name) -> ir.Expr: ...

    @abstractmethod
    def dtype(self, node: ast.Expr) -> dt.DType: ...

    @abstractmethod
    def load_or_view(self, node: ast.Subscript) -> ir.Expr: ...

    @abstractmethod
    def quant_load(self, node: ast.Subscript, scale: ir.TensorParam | None, zero: ir.TensorParam | None,
                   group: ir.Expr | None, span: Span) -> ir.QuantLoad: ...

    # ------------------------------------------------------------------ entry
    def expr(self, node: ast.Expr) -> ir.Expr:
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Bool):
            return ir.Const(node.value, TileType((), dt.boolean), node.span)
        if isinstance(node, ast.Int):
            if not -(2**31) <= node.value < 2**31:
                raise TileTypeError("integer literal out of the i32 range", node.span)
            return ir.Const(node.value, TileType((), dt.i32), node.span)
        if isinstance(node, ast.Float):
            return ir.Const(node.value, TileType((), dt.f32), node.span)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise TileSyntaxError("chained comparisons are not supported", node.span,
                                      hint="combine two comparisons: (a < b) & (b < c)")
            if node.ops[0] not in _CMP:
                raise TileSyntaxError(f"'{node.ops[0]}' is not a tile comparison", node.span,
                                      hint="compare with < <= > >= == !=")
            return self.compare(node.ops[0], self.expr(node.operands[0]), self.expr(node.operands[1]), node.span)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Attribute):
            if node.attr == "T":
                value = self.expr(node.value)
                if value.type.rank != 2:
                    raise TileShapeError(f".T transposes 2-D tiles; this one is {value.type}", node.span)
                ttype = TileType(tuple(reversed(value.type.axes)), value.type.dtype)
                return ir.Trans(value, ttype, node.span)
            raise TileSyntaxError(f"unknown attribute '.{node.attr}'", node.attr_span,
                                  hint="tiles have .T and .to(dtype)")
        if isinstance(node, ast.Subscript):
            return self.load_or_view(node)
        if isinstance(node, ast.Unsupported):
            raise TileSyntaxError(f"{node.what} is not part of the tile language", node.span)
        if isinstance(node, (ast.ListExpr, ast.TupleExpr)):
            raise TileSyntaxError("a list or tuple is not a value", node.span,
                                  hint="lists appear only as shapes: zeros([m, n], f32)")
        raise TileSyntaxError("this is not an expression of the tile language", _span(node))

    # -------------------------------------------------------------- operators
    def _binop(self, node: ast.BinOp) -> ir.Expr:
        if node.op in ("and", "or"):
            raise TileSyntaxError(f"'{node.op}' does not work on tiles", node.span,
                                  hint="use & and | on comparisons: (a > 0) & (b > 0)")
        if node.op == "**":
            raise TileSyntaxError("'**' is not supported", node.span, hint="write x * x, or exp2(y * log2(x))")
        left, right = self.expr(node.left), self.expr(node.right)
        if node.op == "@":
            return self.dot(left, right, node.span)
        return self.binary(node.op, left, right, node.span)

    def _unary(self, node: ast.UnaryOp) -> ir.Expr:
        if node.op == "not":
            raise TileSyntaxError("'not' does not work on tiles", node.span, hint="use ~ on a comparison")
        operand = self.expr(node.operand)
        if node.op == "+":
            return operand
        if node.op == "-":
            if operand.type.dtype.kind in ("bool", "uint"):
                raise TileTypeError(f"cannot negate {operand.type}", node.span)
            if isinstance(operand, ir.Const) and not isinstance(operand.value, bool):
                return ir.Const(-operand.value, operand.type, node.span)
            return ir.Unary("neg", operand, operand.type, node.span)
        if operand.type.dtype.is_float:
            raise TileTypeError(f"'~' needs an integer or boolean tile, not {operand.type}", node.span)
        return ir.Unary("not", operand, operand.type, node.span)

    def _common(self, a: ir.Expr, b: ir.Expr, span: Span) -> tuple[tuple[Axis, ...], dt.DType]:
        axes = broadcast_axes(a.type.axes, b.type.axes)
        if axes is None:
            raise TileShapeError(f"shapes do not broadcast: {a.type} and {b.type}", span,
                                 hint="add a broadcast axis, e.g. v[:, None], or reduce first")
        if _is_weak(a) and not _is_weak(b):
            a, b = b, a
        if _is_weak(b) and not _is_weak(a):
            strong, weak = a.type.dtype, b.type.dtype
            if weak.is_float and not strong.is_float:
                return axes, dt.f32
            return axes, strong if strong.kind != "bool" or weak.kind == "bool" else weak
        return axes, dt.promote(a.type.dtype, b.type.dtype)

    def _convert(self, e: ir.Expr, dtype: dt.DType) -> ir.Expr:
        if e.type.dtype == dtype:
            return e
        if isinstance(e, ir.Const) and not isinstance(e.value, bool):
            value = float(e.value) if dtype.is_float else e.value
            return ir.Const(value, TileType((), dtype), e.span)
        return ir.Cast(e, e.type.with_dtype(dtype), e.span)

    def binary(self, op: str, a: ir.Expr, b: ir.Expr, span: Span) -> ir.Expr:
        axes, dtype = self._common(a, b, span)
        if dtype.is_fp8:  # no fp8 arithmetic on the hardware: compute in f32
            dtype = dt.f32
        if op in _BITWISE:
            if dtype.is_float:
                raise TileTypeError(f"'{op}' needs integer or boolean operands, not {a.type} and {b.type}", span,
                                    hint="compare first to get booleans: (a > 0) & (b > 0)")
            if op in ("<<", ">>") and dtype.kind == "bool":
                raise TileTypeError(f"'{op}' needs integers", span)
        elif op in ("//", "%"):
            if not dtype.is_int:
                raise TileTypeError(f"'{op}' needs integer operands, not {a.type} and {b.type}", span,
                                    hint="use / for floats")
        elif op in _ARITH:
            if dtype.kind == "bool":
                dtype = dt.i32
            if op == "/" and not dtype.is_float:
                dtype = dt.f32
        else:
            raise TileSyntaxError(f"operator '{op}' is not supported", span)
        return ir.Binary(op, self._convert(a, dtype), self._convert(b, dtype), TileType(axes, dtype), span)

    def compare(self, op: str, a: ir.Expr, b: ir.Expr, span: Span) -> ir.Expr:
        axes, dtype = self._common(a, b, span)
        return ir.Compare(op, self._convert(a, dtype), self._convert(b, dtype), TileType(axes, dt.boolean), span)

    def dot(self, a: ir.Expr, b: ir.Expr, span: Span) -> ir.Expr:
        if a.type.rank != 2 or b.type.rank != 2:
            raise TileShapeError(f"'@' multiplies 2-D tiles, got {a.type} and {b.type}", span,
                                 hint="load 2-D tiles, e.g. a[m, k] @ b[k, n]")
        if a.type.axes[1] != b.type.axes[0]:
            raise TileShapeError(
                f"'@' contracts axis '{a.type.axes[1]}' of the left tile with axis '{b.type.axes[0]}' of the right",
                span, hint="the left tile's last axis and the right tile's first must be the same tile or dimension")
        if any(ax.kind == "one" for ax in a.type.axes + b.type.axes):
            raise TileShapeError("'@' needs tiles without broadcast (size 1) axes", span)
        if a.type.dtype != b.type.dtype or a.type.dtype not in DOT_DTYPES:
            hint = f"cast both, e.g. (x).to({a.type.dtype.name}) @ y"
            if dt.i8 in (a.type.dtype, b.type.dtype) and (a.type.dtype.is_float or b.type.dtype.is_float):
                hint = ("an i8 tile (e.g. dequantize() with integer scales) multiplies i8 activations on the "
                        "integer tensor cores; float activations take float scales")
            raise TileTypeError(f"'@' needs two operands of one type among f16, bf16, f32, i8, f8e4m3, f8e5m2; "
                                f"got {a.type.dtype.name} and {b.type.dtype.name}", span, hint=hint)
        out = dt.i32 if a.type.dtype == dt.i8 else dt.f32
        return ir.Dot(a, b, None, TileType((a.type.axes[0], b.type.axes[1]), out), span)

    # ------------------------------------------------------------------ calls
    def _call(self, node: ast.Call) -> ir.Expr:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "to":
            if len(node.args) != 1 or node.keywords:
                raise TileSyntaxError(".to() takes one dtype", node.span, hint="e.g. x.to(f16)")
            value = self.expr(func.value)
            return self.cast(value, self.dtype(node.args[0]), node.span)
        if not isinstance(func, ast.Name):
            raise TileSyntaxError("only builtins of the tile language can be called", _span(func),
                                  hint="tiles have .to(dtype); see docs/language.md for the functions")
        fn = func.id
        args = node.args
        if fn == "cast":
            self._arity(node, 2, 2, ())
            return self.cast(self.expr(args[0]), self.dtype(args[1]), node.span)
        if fn in MATH_UNARY:
            self._arity(node, 1, 1, ())
            return self.math(fn, (self.expr(args[0]),), node.span)
        if fn in MATH_BINARY:
            self._arity(node, 2, 2, ())
            return self.math(fn, (self.expr(args[0]), self.expr(args[1])), node.span)
        if fn in ("max", "min") and len(args) == 2 and not isinstance(args[1], (ast.Int, ast.UnaryOp)):
            raise TileSyntaxError(f"{fn}(a, b) reduces one tile", node.span,
                                  hint=f"for the elementwise {fn}imum of two tiles use {fn}imum(a, b)")
        if fn in REDUCTIONS:
            return self._reduction(fn, node)
        if fn in ("softmax", "logsumexp"):
            self._arity(node, 1, 2, ("axis",))
            x, axis = self._reduction_operand(fn, node)
            return self.softmax(x, axis, node.span) if fn == "softmax" else self.logsumexp(x, axis, node.span)
        if fn == "logaddexp":
            self._arity(node, 2, 2, ())
            return self.logaddexp(self.expr(args[0]), self.expr(args[1]), node.span)
        if fn == "where":
            self._arity(node, 3, 3, ())
            return self.where(self.expr(args[0]), self.expr(args[1]), self.expr(args[2]), node.span)
        if fn in ("zeros", "full"):
            return self._constructor(fn, node)
        if fn == "dequantize":
            return self._dequantize(node)
        if fn == "index":
            self._arity(node, 1, 1, ())
            arg = args[0]
            if not (isinstance(arg, ast.Name) and arg.id in self.tiles):
                raise TileTypeError("index() takes a tile variable", _span(arg), hint="e.g. index(m)")
            tv = self.tiles[arg.id]
            return ir.TilePositions(tv.name, TileType((Axis.tile(tv.name, tv.extent),), dt.i32), node.span)
        if fn == "tiles":
            raise TileSyntaxError("tiles() belongs in a for loop header", node.span,
                                  hint="for m in tiles(M):")
        raise TileSyntaxError(f"unknown function '{fn}'", _span(func),
                              hint="builtins: " + ", ".join(sorted(MATH_UNARY | MATH_BINARY | REDUCTIONS))
                              + ", softmax, logsumexp, logaddexp, where, zeros, full, index, cast")

    def _dequantize(self, node: ast.Call) -> ir.Expr:
        """``dequantize(w[n, k], scale, zero, group)``: zero may be None (symmetric codes)."""
        self._arity(node, 4, 4, ())
        target, scale_node, zero_node, group_node = node.args
        packed = isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and isinstance(
            self.params.get(target.value.id), ir.PackedParam)
        if not packed:
            raise TileTypeError("dequantize() reads a tile of a packed tensor", _span(target),
                                hint="declare the weight as Tensor[N, K, uint4] and write dequantize(w[n, k], ...)")
        scale = self._tensor_param(scale_node, "scales")
        zero = None if isinstance(zero_node, ast.NoneLit) else self._tensor_param(zero_node, "zero points")
        group = self.expr(group_node)
        if group.type.rank or not group.type.dtype.is_int:
            raise TileTypeError("the group size is a scalar integer", _span(group_node))
        assert isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
        param = self.params[target.value.id]
        assert isinstance(param, ir.PackedParam)
        block = param.fixed_block
        if block is not None and isinstance(group, ir.Const) and group.value != block:
            raise TileTypeError(f"{param.format} is block-scaled in blocks of {block}: the group must be {block}, "
                                f"not {group.value}", _span(group_node), hint=f"dequantize({target.value.id}[...], "
                                f"scale, None, {block})")
        return self.quant_load(target, scale, zero, group, node.span)

    def _tensor_param(self, node: ast.Expr, what: str) -> ir.TensorParam:
        param = self.params.get(node.id) if isinstance(node, ast.Name) else None
        if not isinstance(param, ir.TensorParam) or isinstance(param, ir.PackedParam):
            raise TileTypeError(f"the {what} must be a tensor parameter", _span(node))
        return param

    def _arity(self, node: ast.Call, lo: int, hi: int, keywords: tuple[str, ...]) -> None:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise TileSyntaxError(f"{name}() takes {want} positional argument(s), got {len(node.args)}", node.span)
        for kw in node.keywords:
            if kw.name not in keywords:
                raise TileSyntaxError(f"{name}() has no argument '{kw.name}'", kw.span)

    def cast(self, value: ir.Expr, dtype: dt.DType, span: Span) -> ir.Expr:
        if value.type.dtype == dtype:
            return value
        return ir.Cast(value, value.type.with_dtype(dtype), span)

    def math(self, fn: str, args: tuple[ir.Expr, ...], span: Span) -> ir.Expr:
        if len(args) == 2:
            axes, dtype = self._common(args[0], args[1], span)
            if dtype.kind == "bool":
                raise TileTypeError(f"{fn}() needs numbers, not booleans", span)
            return ir.Math(fn, tuple(self._convert(a, dtype) for a in args), TileType(axes, dtype), span)
        (x,) = args
        if x.type.dtype.is_fp8:
            x = self._convert(x, dt.f32)
        if fn == "abs" and x.type.dtype.kind in ("int", "float"):
            return ir.Math(fn, args, x.type, span)
        if not x.type.dtype.is_float:
            if x.type.dtype.kind == "bool":
                raise TileTypeError(f"{fn}() needs numbers, not booleans", span)
            x = self._convert(x, dt.f32)
        return ir.Math(fn, (x,), x.type, span)

    def where(self, cond: ir.Expr, a: ir.Expr, b: ir.Expr, span: Span) -> ir.Expr:
        if cond.type.dtype != dt.boolean:
            raise TileTypeError(f"where() needs a boolean condition, got {cond.type}", _span(cond),
                                hint="compare to get booleans: where(x > 0, x, 0.0)")
        axes, dtype = self._common(a, b, span)
        full = broadcast_axes(cond.type.axes, axes)
        if full is None:
            raise TileShapeError(f"where(): condition {cond.type} does not broadcast with {TileType(axes, dtype)}",
                                 span)
        return ir.Where(cond, self._convert(a, dtype), self._convert(b, dtype), TileType(full, dtype), span)

    # ------------------------------------------------------- softmax family
    def _reduction_operand(self, fn: str, node: ast.Call) -> tuple[ir.Expr, int]:
        """The operand of softmax/logsumexp as f32 and its (non-negative) axis."""
        x = self.expr(node.args[0])
        axis_node = node.args[1] if len(node.args) == 2 else next((k.value for k in node.keywords), None)
        if x.type.rank == 0:
            raise TileShapeError(f"{fn}() reduces a tile; this is a scalar", node.span)
        axis = self._axis_number(fn, x, axis_node, node.span)
        if not x.type.dtype.is_float or x.type.dtype != dt.f32:
            x = self._convert(x, dt.f32)
        return x, axis

    def _axis_number(self, fn: str, x: ir.Expr, axis_node: ast.Expr | None, span: Span) -> int:
        if axis_node is None:
            if x.type.rank != 1:
                raise TileShapeError(f"{fn}() of a {x.type.rank}-D tile needs an axis", span,
                                     hint=f"e.g. {fn}(x, axis=1)")
            return 0
        value = axis_node.value if isinstance(axis_node, ast.Int) else None
        if isinstance(axis_node, ast.UnaryOp) and axis_node.op == "-" and isinstance(axis_node.operand, ast.Int):
            value = -axis_node.operand.value
        if value is None or not -x.type.rank <= value < x.type.rank:
            raise TileShapeError(f"axis must be an integer literal in [{-x.type.rank}, {x.type.rank})",
                                 _span(axis_node))
        return value % x.type.rank

    def _rebroadcast(self, reduced: ir.Expr, axis: int, span: Span) -> ir.Expr:
        """A reduction's result with the reduced axis put back as a broadcast axis of size 1."""
        rank = reduced.type.rank + 1
        pattern: list[int | None] = []
        axes: list[Axis] = []
        kept = 0
        for pos in range(rank):
            if pos == axis:
                pattern.append(None)
                axes.append(Axis.one())
            else:
                pattern.append(kept)
                axes.append(reduced.type.axes[kept])
                kept += 1
        return ir.View(reduced, tuple(pattern), TileType(tuple(axes), reduced.type.dtype), span)

    def _finite_max(self, x: ir.Expr, axis: int, span: Span) -> ir.Expr:
        """max(x, axis), with -inf (every entry -inf: a row with nothing to attend to) replaced by 0, so that
        x - max stays -inf there instead of NaN."""
        rest = x.type.axes[:axis] + x.type.axes[axis + 1:]
        peak = ir.Reduce("max", x, axis, TileType(rest, dt.f32), span)
        return self.where(self.compare("==", peak, ir.Const(-math.inf, TileType((), dt.f32), span), span),
                          ir.Const(0.0, TileType((), dt.f32), span), peak, span)

    def softmax(self, x: ir.Expr, axis: int, span: Span) -> ir.Expr:
        """Over a whole axis (':'): exp(x - max) / sum, a row of -inf giving 0 (never NaN).  Over the tile
        axis of the enclosing sequential loop: the online form's placeholder (passes/online_softmax.py)."""
        reduced = x.type.axes[axis]
        loop = self.innermost_loop_tile()
        if reduced.kind == "tile" and reduced.name == loop:
            return ir.Softmax(x, axis, x.type, span)
        if reduced.kind != "full":
            hint = (f"inside `for {loop} in tiles(...)`, softmax over axis {loop} is the softmax over the loop's "
                    "whole dimension" if loop else "use a whole axis (x[m, :]) or a sequential tile loop")
            raise TileShapeError(f"softmax() over tile axis {reduced.name} would normalise one tile", span,
                                 hint=hint)
        e = self.math("exp", (self.binary("-", x, self._rebroadcast(self._finite_max(x, axis, span), axis, span),
                                          span),), span)
        rest = x.type.axes[:axis] + x.type.axes[axis + 1:]
        total = ir.Reduce("sum", e, axis, TileType(rest, dt.f32), span)
        positive = self.compare(">", total, ir.Const(0.0, TileType((), dt.f32), span), span)
        inv = self.where(positive, self.binary("/", ir.Const(1.0, TileType((), dt.f32), span), total, span),
                         ir.Const(0.0, TileType((), dt.f32), span), span)
        return self.binary("*", e, self._rebroadcast(inv, axis, span), span)

    def logsumexp(self, x: ir.Expr, axis: int, span: Span) -> ir.Expr:
        """log(sum(exp(x), axis)) computed as max + log(sum(exp(x - max))); -inf for a row of -inf.  Over the
        tile axis of the enclosing sequential loop: over the loop's whole dimension (as softmax)."""
        reduced = x.type.axes[axis]
        if reduced.kind == "tile" and reduced.name == self.innermost_loop_tile():
            rest_axes = x.type.axes[:axis] + x.type.axes[axis + 1:]
            return ir.Softmax(x, axis, TileType(rest_axes, dt.f32), span, fn="logsumexp")
        peak = self._finite_max(x, axis, span)
        e = self.math("exp", (self.binary("-", x, self._rebroadcast(peak, axis, span), span),), span)
        rest = x.type.axes[:axis] + x.type.axes[axis + 1:]
        total = ir.Reduce("sum", e, axis, TileType(rest, dt.f32), span)
        return self.binary("+", peak, self.math("log", (total,), span), span)

    def logaddexp(self, a: ir.Expr, b: ir.Expr, span: Span) -> ir.Expr:
        """log(exp(a) + exp(b)), elementwise and stable; -inf where both are -inf."""
        a, b = self._convert(a, dt.f32), self._convert(b, dt.f32)
        peak = self.math("maximum", (a, b), span)
        minus_inf = ir.Const(-math.inf, TileType((), dt.f32), span)
        safe = self.where(self.compare("==", peak, minus_inf, span), ir.Const(0.0, TileType((), dt.f32), span),
                          peak, span)
        total = self.binary("+", self.math("exp", (self.binary("-", a, safe, span),), span),
                            self.math("exp", (self.binary("-", b, safe, span),), span), span)
        return self.binary("+", safe, self.math("log", (total,), span), span)

    def innermost_loop_tile(self) -> str | None:
        """The tile variable of the innermost sequential loop being checked (None outside any)."""
        return None

    def _reduction(self, fn: str, node: ast.Call) -> ir.Expr:
        self._arity(node, 1, 2, ("axis",))
        x = self.expr(node.args[0])
        axis_node = node.args[1] if len(node.args) == 2 else next((k.value for k in node.keywords), None)
        if x.type.rank == 0:
            raise TileShapeError(f"{fn}() reduces a tile; this is a scalar", node.span)
        if axis_node is None:
            if x.type.rank != 1:
                raise TileShapeError(f"{fn}() of a {x.type.rank}-D tile needs an axis", node.span,
                                     hint=f"e.g. {fn}(x, axis=1)")
            axis = 0
        else:
            value = axis_node.value if isinstance(axis_node, ast.Int) else None
            if isinstance(axis_node, ast.UnaryOp) and axis_node.op == "-" and isinstance(axis_node.operand, ast.Int):
                value = -axis_node.operand.value
            if value is None or not -x.type.rank <= value < x.type.rank:
                raise TileShapeError(f"axis must be an integer literal in [{-x.type.rank}, {x.type.rank})",
                                     _span(axis_node))
            axis = value % x.type.rank
        if x.type.dtype.kind == "bool":
            x = self._convert(x, dt.i32)
        reduced = x.type.axes[axis]
        rest = x.type.axes[:axis] + x.type.axes[axis + 1:]
        if fn in ("max", "min"):
            if x.type.dtype.is_fp8:
                x = self._convert(x, dt.f32)
            return ir.Reduce(fn, x, axis, TileType(rest, x.type.dtype), node.span)
        if fn == "mean":
            if reduced.kind != "full":
                raise TileShapeError("mean() averages over a whole axis (':')", node.span,
                                     hint="a tile axis may be partial at the edge; sum per tile and divide yourself")
            x = self._convert(x, dt.f32 if x.type.dtype.bits <= 32 else x.type.dtype)
        acc = x.type.dtype
        if acc.is_half or acc.is_fp8:
            acc = dt.f32
        elif acc.is_int and acc.bits < 32:
            acc = dt.i32
        total = ir.Reduce("sum", self._convert(x, acc), axis, TileType(rest, acc), node.span)
        if fn == "sum":
            return total
        count: ir.Expr
        if reduced.name in self.dims:
            count = ir.DimValue(reduced.name, TileType((), dt.i32), node.span)
        else:
            count = ir.Const(int(reduced.extent), TileType((), dt.i32), node.span)
        return self.binary("/", total, count, node.span)

    def _constructor(self, fn: str, node: ast.Call) -> ir.Expr:
        want = 1 if fn == "zeros" else 2
        self._arity(node, want, want + 1, ("dtype",))
        shape_node = node.args[0]
        if not isinstance(shape_node, (ast.ListExpr, ast.TupleExpr)):
            raise TileSyntaxError(f"{fn}() takes a shape list first", _span(shape_node), hint=f"e.g. {fn}([m, n], ...)")
        axes: list[Axis] = []
        for elt in shape_node.elts:
            if isinstance(elt, ast.Name) and elt.id in self.tiles:
                tv = self.tiles[elt.id]
                axes.append(Axis.tile(tv.name, tv.extent))
            elif isinstance(elt, ast.Name) and elt.id in self.dims:
                axes.append(Axis.full(elt.id, self.dims[elt.id]))
            elif isinstance(elt, ast.Int) and elt.value == 1:
                axes.append(Axis.one())
            else:
                raise TileShapeError("a shape entry is a tile variable, a dimension name or 1", _span(elt))
        value: int | float | bool = 0
        if fn == "full":
            v = self.expr(node.args[1])
            if not isinstance(v, ir.Const):
                raise TileTypeError("full() takes a constant fill value", _span(node.args[1]),
                                    hint="for a computed value use zeros(...) + v")
            value = v.value
        dtype_node = node.args[want] if len(node.args) > want else next((k.value for k in node.keywords), None)
        dtype = self.dtype(dtype_node) if dtype_node is not None else dt.f32
        return ir.Full(value, TileType(tuple(axes), dtype), node.span)
