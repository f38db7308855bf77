"""The checker: a kernel's syntax tree becomes typed IR, or a located error.

Names are resolved, shapes and dtypes inferred (NumPy broadcasting, explicit
promotion), indices checked against the tensors' symbolic shapes.  Expression
typing lives in :mod:`tilec.ir.typing_rules`; this module walks statements,
scopes and indices.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy

from tilec.errors import Source, Span, TileNameError, TileShapeError, TileSyntaxError, TileTypeError
from tilec.frontend import ast
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.signature import (
    LANGUAGE_NAMES,
    MX_FORMATS,
    TABLE_DECODED,
    Signature,
    analyze_signature,
    check_identifier,
)
from tilec.ir.types import Axis, TileType, broadcast_axes
from tilec.ir.typing_rules import ExprTyper

_STMT_HINTS = {
    "return": "kernels return nothing: store results into an output tensor, e.g. out[m, n] = y",
    "if": "branch per element with where(cond, a, b)",
    "while": "loop over tiles with `for k in tiles(K):`",
    "import": "kernels see only the tile language's builtins",
}


@dataclass
class _Scope:
    names: dict[str, TileType] = field(default_factory=dict)
    spans: dict[str, Span] = field(default_factory=dict)


def build_kernel(kdef: ast.KernelDef, source: Source, bindings: Mapping[str, dt.DType] | None = None) -> ir.Kernel:
    """Check ``kdef`` and return its typed IR; ``bindings`` gives each dtype variable a dtype
    (unbound variables default to f16, so a generic kernel is checked at definition time)."""
    sig = analyze_signature(kdef)
    resolved = {v: (bindings or {}).get(v, dt.f16) for v in sig.dtype_vars}
    return _Builder(sig, source, resolved).kernel(kdef)


class _Builder(ExprTyper):
    def __init__(self, sig: Signature, source: Source, bindings: dict[str, dt.DType]):
        self.sig = sig
        self.source = source
        self.bindings = bindings
        self.dims: dict[str, sympy.Symbol] = {d: sympy.Symbol(d, integer=True, positive=True) for d in sig.dims}
        self.params: dict[str, ir.Param] = {}
        for p in sig.params:
            if p.kind == "dim":
                continue  # only a dimension's size: self.dims has it
            if p.kind == "packed":
                extents = tuple(self.dims[d] if isinstance(d, str) else sympy.Integer(d) for d in p.dims)
                from tilec import formats

                self.params[p.name] = ir.PackedParam(p.name, extents, dt.i32, p.span, format=p.dtype,
                                                     bits=formats.get(p.dtype).bits,
                                                     signed=p.dtype.startswith("int"),
                                                     table=p.dtype in TABLE_DECODED,
                                                     e8m0_scales=p.dtype in MX_FORMATS,
                                                     e4m3_scales=p.dtype == "nvfp4")
                continue
            dtype = dt.DTYPES.get(p.dtype) or bindings[p.dtype]
            if p.kind == "tensor":
                extents = tuple(self.dims[d] if isinstance(d, str) else sympy.Integer(d) for d in p.dims)
                self.params[p.name] = ir.TensorParam(p.name, extents, dtype, p.span)
            else:
                self.params[p.name] = ir.ScalarParam(p.name, dtype, p.span)
        self.scopes: list[_Scope] = []
        self.tiles: dict[str, ir.TileVar] = {}  # every tile variable seen (names are kernel-unique)
        self.points: dict[str, ir.GridPoint] = {}  # range() axes of the parallel loop
        self.loop_stack: list[str] = []  # tile variables of the sequential loops being checked, outermost first
        self.active_tiles: set[str] = set()
        self.out_of_scope: dict[str, Span] = {}

    # ------------------------------------------------------------------ kernel
    def kernel(self, kdef: ast.KernelDef) -> ir.Kernel:
        body = [s for s in kdef.body if not isinstance(s, ast.Pass)]
        par = [s for s in body if isinstance(s, ast.For)]
        for stmt in body:
            if not isinstance(stmt, ast.For):
                self._reject_stmt(stmt)
                raise TileSyntaxError("statements must sit inside the kernel's parallel tile loop", stmt.span,
                                      hint="start the body with `for m, n in tiles(M, N):` and indent the rest")
        if not par:
            raise TileSyntaxError(f"kernel '{kdef.name}' has no parallel tile loop", kdef.span,
                                  hint="its body is one `for m in tiles(M):` loop; the loop becomes the launch grid")
        if len(par) > 1:
            raise TileSyntaxError("a kernel has exactly one parallel tile loop", par[1].span,
                                  hint="nest this loop inside the first one, or write a second kernel")
        loop = self._par_loop(par[0])
        return ir.Kernel(
            name=kdef.name, params=tuple(self.params.values()), dims=self.sig.dims, body=loop, span=kdef.span,
            source=self.source, type_bindings=tuple(sorted(self.bindings.items())),
        )

    def _tile_vars(self, stmt: ast.For) -> list[ir.TileVar]:
        it = stmt.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "tiles"):
            raise TileSyntaxError("a tile loop iterates over tiles(...)", _span(it),
                                  hint="e.g. `for m, n in tiles(M, N):`; range() loops are not part of the language")
        if it.keywords:
            raise TileSyntaxError("tiles() takes dimension names only", it.keywords[0].span,
                                  hint="block sizes are schedule parameters, not written in the spec")
        if len(it.args) != len(stmt.targets):
            raise TileSyntaxError(f"{len(stmt.targets)} loop variable(s) for {len(it.args)} dimension(s)", stmt.span,
                                  hint="one tile variable per dimension: `for m, n in tiles(M, N):`")
        out = []
        for target, dim in zip(stmt.targets, it.args):
            if not isinstance(dim, ast.Name) or dim.id not in self.dims:
                raise TileNameError("tiles() takes dimension names declared in the parameters", _span(dim),
                                    hint="known dimensions: " + (", ".join(self.dims) or "none"))
            name = check_identifier(target.id, target.span, "tile variable")
            self._check_fresh(name, target.span)
            tv = ir.TileVar(name, dim.id, self.dims[dim.id], target.span)
            self.tiles[name] = tv
            out.append(tv)
        return out

    def _par_loop(self, stmt: ast.For) -> ir.ParLoop:
        it = stmt.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "product":
            tiles, points = self._product(stmt, it)
        else:
            tiles, points = self._tile_vars(stmt), []
        if len(tiles) > 3:
            raise TileSyntaxError("a parallel tile loop covers at most 3 tiled dimensions", stmt.span)
        self.active_tiles |= {t.name for t in tiles}
        body = self._block(stmt.body)
        return ir.ParLoop(tuple(tiles), body, stmt.span, tuple(points))

    def _product(self, stmt: ast.For, it: ast.Call) -> tuple[list[ir.TileVar], list[ir.GridPoint]]:
        """``product(range(B), range(H), tiles(M))``: one program per position of each ``range`` axis and
        per tile of the ``tiles`` axes (itertools.product's meaning); ranges first, tiles last."""
        hint = "e.g. `for b, h, m in product(range(B), range(H), tiles(M)):`"
        if it.keywords or not it.args:
            raise TileSyntaxError("product() takes range(D) and tiles(...) parts", it.span, hint=hint)
        parts: list[tuple[str, ast.Expr]] = []
        for part in it.args:
            if not (isinstance(part, ast.Call) and isinstance(part.func, ast.Name)
                    and part.func.id in ("range", "tiles") and not part.keywords and part.args):
                raise TileSyntaxError("product() takes range(D) and tiles(...) parts", _span(part), hint=hint)
            if part.func.id == "range" and len(part.args) != 1:
                raise TileSyntaxError("range() takes one dimension name here", part.span,
                                      hint="`range(B)`: one program per position of B")
            parts += [(part.func.id, dim) for dim in part.args]
        if len(parts) != len(stmt.targets):
            raise TileSyntaxError(f"{len(stmt.targets)} loop variable(s) for {len(parts)} dimension(s)", stmt.span,
                                  hint="one loop variable per range() or tiles() dimension")
        kinds = [kind for kind, _ in parts]
        if "tiles" in kinds and "range" in kinds[kinds.index("tiles"):]:
            raise TileSyntaxError("range() parts come before tiles() parts in product()", it.span, hint=hint)
        tiles: list[ir.TileVar] = []
        points: list[ir.GridPoint] = []
        for target, (kind, dim) in zip(stmt.targets, parts):
            if not isinstance(dim, ast.Name) or dim.id not in self.dims:
                raise TileNameError(f"{kind}() takes dimension names declared in the parameters", _span(dim),
                                    hint="known dimensions: " + (", ".join(self.dims) or "none"))
            name = check_identifier(target.id, target.span, "loop variable")
            self._check_fresh(name, target.span)
            if kind == "range":
                point = ir.GridPoint(name, dim.id, self.dims[dim.id], target.span)
                self.points[name] = point
                points.append(point)
            else:
                tv = ir.TileVar(name, dim.id, self.dims[dim.id], target.span)
                self.tiles[name] = tv
                tiles.append(tv)
        if not tiles:
            raise TileSyntaxError("product() needs at least one tiles() part", it.span, hint=hint)
        return tiles, points

    def _seq_loop(self, stmt: ast.For) -> ir.SeqLoop:
        tiles = self._tile_vars(stmt)
        if len(tiles) != 1:
            raise TileSyntaxError("a sequential tile loop walks one dimension", stmt.span,
                                  hint="nest one `for k in tiles(K):` loop per dimension")
        self.active_tiles.add(tiles[0].name)
        self.loop_stack.append(tiles[0].name)
        body = self._block(stmt.body)
        self.loop_stack.pop()
        self.active_tiles.discard(tiles[0].name)
        return ir.SeqLoop(tiles[0], body, stmt.span)

    def _block(self, stmts: tuple[ast.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        self.scopes.append(_Scope())
        out: list[ir.Stmt] = []
        for stmt in stmts:
            out.extend(self._stmt(stmt))
        scope = self.scopes.pop()
        self.out_of_scope.update(scope.spans)
        return tuple(out)

    # -------------------------------------------------------------- statements
    def _stmt(self, stmt: ast.Stmt) -> list[ir.Stmt]:
        if isinstance(stmt, ast.Pass):
            return []
        if isinstance(stmt, ast.For):
            return [self._seq_loop(stmt)]
        if isinstance(stmt, ast.Assign):
            value = self.expr(stmt.value)
            return [self._assign(stmt.target, value, stmt.span)]
        if isinstance(stmt, ast.AugAssign):
            return [self._aug_assign(stmt)]
        self._reject_stmt(stmt)
        raise AssertionError("unreachable")

    def _reject_stmt(self, stmt: ast.Stmt) -> None:
        if isinstance(stmt, ast.UnsupportedStmt):
            raise TileSyntaxError(f"'{stmt.what}' is not part of the tile language", stmt.span,
                                  hint=_STMT_HINTS.get(stmt.what, "see docs/language.md for what a kernel may contain"))
        if isinstance(stmt, ast.ExprStmt):
            raise TileSyntaxError("this expression's value is never used", stmt.span,
                                  hint="assign it to a name or store it into a tensor")

    def _assign(self, target: ast.Expr, value: ir.Expr, span: Span) -> ir.Stmt:
        if isinstance(target, ast.Subscript):
            return self._store(target, value, span)
        if not isinstance(target, ast.Name):
            raise TileSyntaxError("only a name or a tensor element can be assigned", _span(target))
        name = target.id
        if name in self.params or name in self.dims or name in self.tiles or name in self.points:
            raise TileNameError(f"'{name}' is a parameter, dimension or loop variable and cannot be reassigned",
                                target.span, hint="assign to a new name")
        check_identifier(name, target.span, "variable")
        known = self._lookup(name)
        if known is None:
            self.scopes[-1].names[name] = value.type
            self.scopes[-1].spans[name] = target.span
            return ir.Assign(name, value, span, declares=True)
        if known != value.type:
            raise TileTypeError(
                f"'{name}' is {known} but is assigned {value.type}", span,
                hint="a name keeps one type; " + (f"cast with .to({known.dtype.name})"
                                                   if known.axes == value.type.axes else "use a new name"))
        return ir.Assign(name, value, span)

    def _aug_assign(self, stmt: ast.AugAssign) -> ir.Stmt:
        rhs = self.expr(stmt.value)
        if isinstance(stmt.target, ast.Subscript):
            current = self.load_or_view(stmt.target)
        elif isinstance(stmt.target, ast.Name):
            current = self.name(stmt.target)
        else:
            raise TileSyntaxError("only a name or a tensor element can be updated", _span(stmt.target))
        if stmt.op == "@":
            raise TileSyntaxError("'@=' is not supported", stmt.span, hint="write acc += a @ b")
        combined = self.binary(stmt.op, current, rhs, stmt.span)
        if isinstance(stmt.target, ast.Name) and combined.type != current.type:
            if combined.type.axes != current.type.axes:
                raise TileShapeError(f"'{stmt.target.id}' is {current.type}; the update gives {combined.type}",
                                     stmt.span, hint="reduce or broadcast the right-hand side to the same shape")
            combined = ir.Cast(combined, current.type, stmt.span)
        return self._assign(stmt.target, combined, stmt.span)

    def _store(self, target: ast.Subscript, value: ir.Expr, span: Span) -> ir.Store:
        tensor = self._tensor(target.value)
        index, ttype = self.index(tensor, target)
        if any(isinstance(ix, ir.GatherIndex) for ix in index):
            raise TileTypeError(f"storing through a gather index (a scatter) into '{tensor.name}' is not supported",
                                span, hint="store with tile variables, ':' or scalar integers")
        if broadcast_axes(value.type.axes, ttype.axes) != ttype.axes:
            raise TileShapeError(f"cannot store {value.type} into {tensor.name}[...] of shape {ttype}", span,
                                 hint="the stored tile must match (or broadcast to) the indexed tile")
        if value.type.dtype != tensor.dtype:
            value = ir.Cast(value, value.type.with_dtype(tensor.dtype), value.span)
        return ir.Store(tensor.name, index, value, span)

    def innermost_loop_tile(self) -> str | None:
        return self.loop_stack[-1] if self.loop_stack else None

    # ------------------------------------------------------------------- names
    def _lookup(self, name: str) -> TileType | None:
        for scope in reversed(self.scopes):
            if name in scope.names:
                return scope.names[name]
        return None

    def _check_fresh(self, name: str, span: Span) -> None:
        if (name in self.tiles or name in self.points or name in self.params or name in self.dims
                or self._lookup(name) is not None):
            raise TileNameError(f"'{name}' is already defined", span, hint="tile variables need kernel-unique names")

    def name(self, node: ast.Name) -> ir.Expr:
        name = node.id
        known = self._lookup(name)
        if known is not None:
            return ir.Var(name, known, node.span)
        param = self.params.get(name)
        if isinstance(param, ir.ScalarParam):
            return ir.ScalarArg(name, TileType((), param.dtype), node.span)
        if isinstance(param, ir.TensorParam):
            raise TileTypeError(f"'{name}' is a tensor; index it to get a tile", node.span,
                                hint=f"e.g. {name}[{', '.join('m' for _ in param.dims)}] with tile variables")
        if name in self.dims:
            return ir.DimValue(name, TileType((), dt.i32), node.span)
        if name in self.points:
            return ir.GridValue(name, TileType((), dt.i32), node.span)
        if name in self.tiles:
            raise TileTypeError(f"'{name}' is a tile variable, not a value", node.span,
                                hint=f"use it to index tensors, or index({name}) for its positions")
        if name == "inf":
            return ir.Const(float("inf"), TileType((), dt.f32), node.span)
        if name in dt.DTYPES or name in self.bindings:
            raise TileTypeError(f"dtype '{name}' is not a value", node.span, hint=f"use it in a cast: x.to({name})")
        if name in LANGUAGE_NAMES:
            raise TileTypeError(f"'{name}' is a function of the tile language", node.span, hint=f"call it: {name}(...)")
        if name in self.out_of_scope:
            raise TileNameError(f"'{name}' is not defined here", node.span,
                                hint=f"it is defined inside a loop at {self.out_of_scope[name].location}; "
                                     "assign it before the loop to use it after")
        candidates = [n for s in self.scopes for n in s.names] + list(self.params) + list(self.dims)
        close = difflib.get_close_matches(name, candidates, n=1)
        raise TileNameError(f"name '{name}' is not defined", node.span,
                            hint=f"did you mean '{close[0]}'?" if close else None)

    def dtype(self, node: ast.Expr) -> dt.DType:
        if isinstance(node, ast.Name):
            if node.id in dt.DTYPES:
                return dt.DTYPES[node.id]
            if node.id in self.bindings:
                return self.bindings[node.id]
        raise TileTypeError("expected a dtype", _span(node),
                            hint="dtypes: " + ", ".join(list(dt.DTYPES) + list(self.bindings)))

    def _tensor(self, node: ast.Expr) -> ir.TensorParam:
        if isinstance(node, ast.Name) and isinstance(self.params.get(node.id), ir.PackedParam):
            raise TileTypeError(f"packed tensor '{node.id}' is read-only", _span(node),
                                hint="kernels read quantised weights; store results into a plain tensor")
        if isinstance(node, ast.Name) and isinstance(self.params.get(node.id), ir.TensorParam):
            param = self.params[node.id]
            assert isinstance(param, ir.TensorParam)
            return param
        raise TileTypeError("only tensor parameters can be stored into", _span(node),
                            hint="assign tiles to names with `x = ...`; store into tensors with `out[m] = ...`")

    # ----------------------------------------------------------------- indices
    def load_or_view(self, node: ast.Subscript) -> ir.Expr:
        base = node.value
        if isinstance(base, ast.Name) and isinstance(self.params.get(base.id), ir.PackedParam):
            return self.quant_load(node, None, None, None, node.span)
        if isinstance(base, ast.Name) and isinstance(self.params.get(base.id), ir.TensorParam):
            tensor = self.params[base.id]
            assert isinstance(tensor, ir.TensorParam)
            index, ttype = self.index(tensor, node)
            return ir.Load(tensor.name, index, ttype, node.span)
        return self.view(self.expr(base), node)

    def quant_load(self, node: ast.Subscript, scale: ir.TensorParam | None, zero: ir.TensorParam | None,
                   group: ir.Expr | None, span: Span) -> ir.QuantLoad:
        """A tile of a packed tensor: its codes, or (with a scale) its dequantised values."""
        assert isinstance(node.value, ast.Name)
        param = self.params[node.value.id]
        assert isinstance(param, ir.PackedParam)
        index, ttype = self.index(param, node)
        if not all(isinstance(ix, ir.TileIndex) and ix.offset is None for ix in index):
            raise TileShapeError(f"packed tensor '{param.name}' is indexed by plain tile variables", node.span,
                                 hint=f"e.g. {param.name}[n, k]")
        for aux, what in ((scale, "scale"), (zero, "zero")):
            if aux is None:
                continue
            if len(aux.dims) != 2 or sympy.simplify(aux.dims[0] - param.dims[0]) != 0:
                raise TileShapeError(f"{what} tensor '{aux.name}' must be [{param.dims[0]}, groups]", span,
                                     hint="one row per row of the packed tensor, one column per group along K")
        if zero is not None and not zero.dtype.is_int:
            raise TileTypeError(f"zero points '{zero.name}' must be integers (u8), not {zero.dtype.name}", span)
        coded = param.e8m0_scales or param.e4m3_scales
        if scale is not None and coded and scale.dtype != dt.u8:
            raise TileTypeError(f"{param.format} scales '{scale.name}' are 8-bit codes (u8), not {scale.dtype.name}",
                                span)
        integer = scale is not None and not coded and scale.dtype.is_int  # two-level (W4A8): an i8 tile
        if integer and scale is not None:
            _check_integer_dequantize(param, scale, zero, span)
        elif scale is not None and not coded and not scale.dtype.is_float:
            raise TileTypeError(f"scales '{scale.name}' must be floats, not {scale.dtype.name}", span)
        if zero is not None and (param.signed or param.table):
            raise TileTypeError(f"'{param.name}' holds {'float' if param.table else 'signed'} codes; it takes no "
                                "zero points", span, hint="pass None for the zero points")
        if integer:
            dtype = dt.i8  # (code - zero) * scale is an exact int8 (tilec.formats.two_level)
        elif param.table and (scale is None or coded):
            dtype = dt.f32  # element values (times a power-of-two MX scale): f32, cast as needed
        else:
            dtype = scale.dtype if scale is not None else (dt.i8 if param.signed else dt.u8)
        return ir.QuantLoad(param.name, index, scale.name if scale else None, zero.name if zero else None, group,
                            ttype.with_dtype(dtype), span)

    def index(self, tensor: ir.TensorParam, node: ast.Subscript) -> tuple[tuple[ir.Index, ...], TileType]:
        if len(node.indices) != len(tensor.dims):
            raise TileShapeError(f"'{tensor.name}' has {len(tensor.dims)} axes but is indexed with {len(node.indices)}",
                                 node.span, hint="give one index per axis: a tile variable, ':' or an integer")
        index: list[ir.Index] = []
        axes: list[Axis] = []
        for pos, (ix, extent) in enumerate(zip(node.indices, tensor.dims)):
            entry, axis = self._index_entry(tensor, pos, ix, extent)
            index.append(entry)
            if axis is None:
                continue
            if isinstance(entry, ir.GatherIndex) and any(
                    isinstance(prev, ir.GatherIndex) and prev.value.type.axes[0] == axis for prev in index[:-1]):
                continue  # gathers along the same tile axis: one axis of the result (pool[page, slot, :])
            axes.append(axis)
        return tuple(index), TileType(tuple(axes), tensor.dtype)

    def _index_entry(self, tensor: ir.TensorParam, pos: int, ix: ast.Expr,
                     extent: sympy.Expr) -> tuple[ir.Index, Axis | None]:
        tile_name, offset = _split_tile_offset(ix)
        if tile_name is not None and tile_name in self.tiles:
            tv = self.tiles[tile_name]
            if tile_name not in self.active_tiles:
                raise TileNameError(f"tile '{tile_name}' is used outside its loop", _span(ix),
                                    hint=f"its loop is at {tv.span.location}")
            if sympy.simplify(tv.extent - extent) != 0:
                raise TileShapeError(
                    f"tile '{tile_name}' ranges over {tv.dim}, but axis {pos} of '{tensor.name}' has extent {extent}",
                    _span(ix), hint=f"index axis {pos} of '{tensor.name}' with a tile over {extent}")
            off_ir, off_sym = None, sympy.Integer(0)
            if offset is not None:
                sign, off_node = offset
                off_ir = self.expr(off_node)
                if off_ir.type.rank or not off_ir.type.dtype.is_int:
                    raise TileTypeError("a tile offset is a scalar integer", _span(off_node),
                                        hint="e.g. x[m + 1, n] or x[m - shift, n] with shift: i32")
                off_sym = sign * self.symbolic(off_ir)
                if sign < 0:
                    off_ir = ir.Unary("neg", off_ir, off_ir.type, off_ir.span)
            return ir.TileIndex(tile_name, off_ir, off_sym), Axis.tile(tile_name, tv.extent)
        if isinstance(ix, ast.Slice):
            if ix.lower is not None or ix.upper is not None or ix.step is not None:
                raise TileSyntaxError("only the whole-axis slice ':' is supported", ix.span,
                                      hint="index part of an axis with a tile variable: x[m, k]")
            dim = str(extent)
            return ir.FullIndex(dim), Axis.full(dim, extent)
        if isinstance(ix, ast.NoneLit):
            raise TileShapeError("None adds an axis to a tile value, not to a tensor index", ix.span,
                                 hint="load first, then broadcast: v = x[m]; v[:, None]")
        value = self.expr(ix)
        if not value.type.dtype.is_int:
            raise TileTypeError(f"an index must be an integer, not {value.type.dtype.name}", _span(ix))
        if value.type.rank:
            if value.type.rank != 1 or value.type.axes[0].kind == "one":
                raise TileShapeError(f"a gather index is a 1-D integer tile, not {value.type}", _span(ix),
                                     hint="e.g. pool[table[b, index(n) // BS], index(n) % BS, h, :]")
            return ir.GatherIndex(value), value.type.axes[0]
        return ir.PointIndex(value), None

    def symbolic(self, e: ir.Expr) -> sympy.Expr:
        """A scalar integer expression as sympy (unknown scalars become integer symbols)."""
        if isinstance(e, ir.Const):
            return sympy.Integer(int(e.value))
        if isinstance(e, ir.DimValue):
            return self.dims[e.name]
        if isinstance(e, ir.ScalarArg):
            return sympy.Symbol(e.name, integer=True)
        if isinstance(e, ir.Unary) and e.op == "neg":
            return -self.symbolic(e.operand)
        if isinstance(e, ir.Binary) and e.op in ("+", "-", "*"):
            a, b = self.symbolic(e.left), self.symbolic(e.right)
            return a + b if e.op == "+" else a - b if e.op == "-" else a * b
        if isinstance(e, ir.Cast):
            return self.symbolic(e.operand)
        return sympy.Dummy("offset", integer=True)

    def view(self, value: ir.Expr, node: ast.Subscript) -> ir.Expr:
        pattern: list[int | None] = []
        axes: list[Axis] = []
        kept = 0
        for ix in node.indices:
            if isinstance(ix, ast.NoneLit):
                pattern.append(None)
                axes.append(Axis.one())
            elif isinstance(ix, ast.Slice) and ix.lower is None and ix.upper is None and ix.step is None:
                if kept >= value.type.rank:
                    raise TileShapeError(f"too many ':' for a tile of rank {value.type.rank}", ix.span)
                pattern.append(kept)
                axes.append(value.type.axes[kept])
                kept += 1
            else:
                raise TileSyntaxError("a tile value is indexed only with ':' and None (broadcasting)", _span(ix),
                                      hint="load from the tensor to index by tiles: x[m, k]")
        if kept != value.type.rank:
            raise TileShapeError(f"a tile of rank {value.type.rank} needs {value.type.rank} ':' entries, got {kept}",
                                 node.span, hint="e.g. v[:, None] turns [m] into [m, 1]")
        return ir.View(value, tuple(pattern), TileType(tuple(axes), value.type.dtype), node.span)


def _split_tile_offset(ix: ast.Expr) -> tuple[str | None, tuple[int, ast.Expr] | None]:
    """``m`` -> ("m", None); ``m + 1`` -> ("m", (1, <1>)); ``m - s`` -> ("m", (-1, <s>))."""
    if isinstance(ix, ast.Name):
        return ix.id, None
    if isinstance(ix, ast.BinOp) and ix.op in ("+", "-") and isinstance(ix.left, ast.Name):
        return ix.left.id, (1 if ix.op == "+" else -1, ix.right)
    return None, None


def _span(node: object) -> Span:
    span = getattr(node, "span", None)
    assert isinstance(span, Span)
    return span


def _check_integer_dequantize(param: ir.PackedParam, scale: ir.TensorParam, zero: ir.TensorParam | None,
                              span: Span) -> None:
    """Integer scales (a two-level QTensor's second level): uintB codes, u8 scales and u8 zero points."""
    hint = "two-level weights: w: Tensor[N, K, uint4], s2: Tensor[N, G, u8], zero: Tensor[N, G, u8]"
    if param.signed or param.table:
        raise TileTypeError(f"integer scales '{scale.name}' dequantise unsigned integer codes (uintB), not "
                            f"{param.format}", span, hint=hint)
    if scale.dtype != dt.u8:
        raise TileTypeError(f"integer scales '{scale.name}' must be u8, not {scale.dtype.name}", span, hint=hint)
    if zero is None or zero.dtype != dt.u8:
        got = "None" if zero is None else zero.dtype.name
        raise TileTypeError(f"integer scales '{scale.name}' need u8 zero points, got {got}", span, hint=hint)
