"""Emit a tiled, masked kernel IR as readable Triton source plus its calling convention.

The generated function reads top to bottom like a Triton tutorial kernel:
program id -> tile offsets and masks -> the spec's statements in order, each
preceded by a comment quoting the spec line it comes from.  The calling
convention (:class:`KernelABI`) tells the launcher which tensor, size, stride
or block goes into each argument; it is data, not text, so the launcher and
the source cannot disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tilec.codegen import split_k
from tilec.codegen.lowering import LOWERINGS, strip_parens
from tilec.codegen.names import Namer, safe_identifier
from tilec.errors import Span
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.ir.types import Axis, TileType
from tilec.passes.masks import Facts

# passes/interior_tiles.py's three loops, as the generated code says them
_PART_COMMENTS = {
    "head": "head: key tiles some rows see only in part (masked)",
    "interior": "interior: key tiles every row sees whole, inside the key axis: no masks",
    "tail": "tail: the remaining key tiles (masked)",
}


@dataclass(frozen=True)
class Arg:
    name: str  # the argument's name in generated code
    kind: str  # "tensor" | "table" | "scalar" | "dim" | "stride" | "trip_count" | "workspace" | "arrivals"
    #            | "constexpr"
    source: str = ""  # parameter or dimension it comes from (workspace: the accumulator)
    axis: int = 0  # for strides
    value: int = 0  # for constexprs; the block size for trip counts (cdiv(dim, value)); workspace: elements
    #                 of one partial tile
    split: int = 1  # trip counts of a split loop: cdiv(cdiv(dim, value), split) tiles per split
    dtype: str = ""  # workspace: its torch dtype ("float32" | "int32")


@dataclass(frozen=True)
class KernelABI:
    fn_name: str
    args: tuple[Arg, ...]
    grid_tiles: tuple[tuple[str, int], ...]  # (dimension, block) per parallel tile, in grid order
    split_k: int = 1  # the grid's third axis: programs sharing each tile's reduction (split-K, split-KV)
    grid_points: tuple[str, ...] = ()  # dimensions of the range() axes: the grid's second axis, their product
    int64: bool = False  # offsets in int64: sizes and strides arrive as 64-bit integers (tensors over 2^31)


@dataclass(frozen=True)
class GeneratedKernel:
    source: str
    abi: KernelABI


def emit(kernel: ir.Kernel, schedule: Schedule, facts: Facts, *, unit_strides: frozenset[tuple[str, int]] = frozenset(),
         int64: bool = False, target: str = "cuda", computed_loop_bounds: bool = True) -> GeneratedKernel:
    """``computed_loop_bounds=False`` is for an interpreter that takes only integers as loop
    bounds (Triton 3.6's under NumPy 2): a loop whose bounds are computed in the kernel walks
    every tile and guards its body instead."""
    emitter = Emitter(kernel, schedule, facts, unit_strides, int64, target)
    emitter.computed_loop_bounds = computed_loop_bounds
    return emitter.run()


class Emitter:
    def __init__(self, kernel: ir.Kernel, schedule: Schedule, facts: Facts,
                 unit_strides: frozenset[tuple[str, int]], int64: bool, target: str):
        self.kernel = kernel
        self.schedule = schedule
        self.facts = facts
        self.unit_strides = unit_strides
        self.int64 = int64
        self.target = target
        self.computed_loop_bounds = True
        self.namer = Namer()
        self.names: dict[str, str] = {}  # user names (params, dims, variables) -> code names
        self.offsets: dict[str, str] = {}  # tile variable -> its offsets vector
        self.tile_index: dict[str, str] = {}  # tile variable -> its tile number (program or loop index)
        self.masks: dict[str, str] = {}  # tile variable or full dimension -> its mask vector
        self.first_rows: dict[str, str] = {}  # query tile -> its first row (key_range)
        self.parts: dict[tuple[str, Span], dict[str, tuple[str, str]]] = {}  # split loops' tile ranges
        self.full_offsets: dict[str, str] = {}
        self.blocks: dict[str, str] = {}  # tile variable / full dimension -> constexpr name
        self.lines: list[str] = []
        self.last_comment = -1  # the spec line of the latest comment
        self.depth = 1
        self.pid = ""  # the program's tile number (axis 0 of the grid)
        # split-K (codegen/split_k.py): the split's number, the SPLIT_K constexpr, workspace and counters
        self.split_index = ""
        self.split_const: str | None = None
        self.partial_ptrs: dict[str, str] = {}
        self.arrivals_ptr = ""
        for p in kernel.params:
            self.names[p.name] = self.namer.claim(p.name)
        for d in kernel.dims:
            self.names[d] = self.namer.claim(d)
        for point in kernel.body.points:
            self.names[point.name] = self.namer.claim(point.name)
        for stmt in ir.walk_stmts(kernel.body.body):
            if isinstance(stmt, ir.Assign) and stmt.declares:
                self.names[stmt.name] = self.namer.claim(stmt.name)

    # ------------------------------------------------------------------ text
    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def comment(self, span: Span) -> None:
        if self.last_comment == span.line:
            return  # consecutive statements from one spec line (a pass's rewrite of it) share its comment
        text = span.source.line(span.line).strip()
        text = "".join(c if c.isprintable() else "?" for c in text)
        self.line(f"# {os.path.basename(span.source.name)}:{span.line}  {text}")
        self.last_comment = span.line

    def bind(self, code: str, hint: str) -> str:
        """Give ``code`` a name (for values used more than once)."""
        if code.isidentifier():
            return code
        name = self.namer.fresh(hint)
        self.line(f"{name} = {strip_parens(code)}")
        return name

    # ------------------------------------------------------------------ run
    def run(self) -> GeneratedKernel:
        k = self.kernel
        fn_name = self.namer.fresh(safe_identifier(k.name))
        args: list[Arg] = []
        for tensor in k.tensors:
            args.append(Arg(self.namer.fresh(f"{tensor.name}_ptr"), "tensor", tensor.name))
        self.tables: dict[str, str] = {}  # packed tensor -> its format's value table (f32, index = code)
        for tensor in k.tensors:
            if isinstance(tensor, ir.PackedParam) and tensor.table:
                self.tables[tensor.name] = self.namer.fresh(f"{tensor.format}_values")
                args.append(Arg(self.tables[tensor.name], "table", tensor.format))
            if isinstance(tensor, ir.PackedParam) and tensor.e4m3_scales:
                self.tables[tensor.name + ":scales"] = self.namer.fresh("fp8_e4m3_values")
                args.append(Arg(self.tables[tensor.name + ":scales"], "table", "fp8_e4m3"))
        for scalar in k.scalars:
            args.append(Arg(self.names[scalar.name], "scalar", scalar.name))
        for d in k.dims:
            args.append(Arg(self.names[d], "dim", d))
        for p in k.tensors:
            for axis in range(len(p.dims)):
                if (p.name, axis) not in self.unit_strides:
                    args.append(Arg(self.namer.fresh(f"{p.name}_stride{axis}"), "stride", p.name, axis))
        # A sequential loop's trip count cdiv(D, BLOCK) is computed by the launcher: an integer
        # argument is a valid loop bound in every Triton version's interpreter (3.6's fails on
        # tl.cdiv results under NumPy 2), and it costs the compiled kernel nothing.
        self.trip_counts: dict[str, str] = {}
        split = 1
        for loop in ir.walk_loops(k.body.body):
            tv = loop.tile
            if tv.name in self.trip_counts:
                continue  # another part of a loop split by passes/interior_tiles.py: the same tiles
            name = self.namer.fresh(f"num_tiles_{tv.name}" + ("_per_split" if loop.split > 1 else ""))
            self.trip_counts[tv.name] = name
            args.append(Arg(name, "trip_count", tv.dim, value=tv.block or 0, split=loop.split))
            split = max(split, loop.split)
        if split > 1:
            args += split_k.workspace_args(self, k)
        self.ptrs = {a.source: a.name for a in args if a.kind == "tensor"}
        self.strides = {(a.source, a.axis): a.name for a in args if a.kind == "stride"}
        tiles = k.tile_vars()
        for name, tv in tiles.items():
            assert tv.block is not None
            self.blocks[name] = self.namer.fresh(f"BLOCK_{name.upper()}")
            args.append(Arg(self.blocks[name], "constexpr", value=tv.block))
        for dim, block in k.full_blocks:
            self.blocks[":" + dim] = self.namer.fresh(f"BLOCK_FULL_{dim}")
            args.append(Arg(self.blocks[":" + dim], "constexpr", value=block))
        grid_tiles = k.body.tiles
        group = len(grid_tiles) == 2 and self.schedule.group_m > 1
        if group:
            args.append(Arg(self.namer.fresh("GROUP_M"), "constexpr", value=self.schedule.group_m))

        self.prologue(args)
        self.par_loop(k.body, args[-1].name if group else None)
        header = self.header(fn_name, args)
        abi = KernelABI(fn_name, tuple(args), tuple((t.dim, t.block or 0) for t in grid_tiles), split, int64=self.int64,
                        grid_points=tuple(p.dim for p in k.body.points))
        return GeneratedKernel("\n".join(header + self.lines) + "\n", abi)

    def header(self, fn_name: str, args: list[Arg]) -> list[str]:
        k = self.kernel
        bindings = ", ".join(f"{v}={d.name}" for v, d in k.type_bindings) or "none"
        blocks = ", ".join(f"{a.name}={a.value}" for a in args if a.kind == "constexpr")
        out = [
            f"# Generated by tilec from {os.path.basename(k.source.name)}, kernel {k.name}. Do not edit.",
            f"# dtype variables: {bindings}; target: {self.target}; {blocks}",
            f"# num_warps={self.schedule.num_warps}, num_stages={self.schedule.num_stages}",
            "import triton",
            "import triton.language as tl",
            "",
            "",
            "@triton.jit",
            f"def {fn_name}(",
        ]
        groups = [("tensors", "tensor"), ("format value tables", "table"), ("scalars", "scalar"), ("dimensions", "dim"),
                  ("strides (unit strides are folded in)", "stride"), ("sequential loop trip counts", "trip_count"),
                  ("split-K partial sums and per-tile arrival counters", "workspace"), ("", "arrivals")]
        for label, kind in groups:
            names = [a.name for a in args if a.kind == kind]
            if names:
                out.append(f"    {', '.join(names)}," + (f"  # {label}" if label else ""))
        consts = [f"{a.name}: tl.constexpr" for a in args if a.kind == "constexpr"]
        out.append(f"    {', '.join(consts)},")
        out.append("):")
        return out

    def prologue(self, args: list[Arg]) -> None:
        for p in self.kernel.scalars:
            if p.dtype.is_float:  # torch.compile may pass Python floats as fp64
                self.line(f"{self.names[p.name]} = tl.cast({self.names[p.name]}, {p.dtype.triton})")

    # ----------------------------------------------------------------- loops
    def tile_offsets(self, tv: ir.TileVar, index: str, whole: bool = False) -> None:
        """``whole``: every tile of this loop lies inside the dimension (an interior loop): no mask."""
        block = self.blocks[tv.name]
        offs = self.namer.fresh(f"offs_{tv.name}")
        start = f"{index}.to(tl.int64) * {block}" if self.int64 else f"{index} * {block}"
        self.line(f"{offs} = {start} + tl.arange(0, {block})")
        self.offsets[tv.name] = offs
        self.tile_index[tv.name] = index
        if whole:
            self.masks.pop(tv.name, None)  # a use would be a bug: fail at generation, not with a stale mask
        elif tv.name not in self.facts.divisible:
            mask = self.namer.fresh(f"mask_{tv.name}")
            self.line(f"{mask} = {offs} < {self.extent(tv.extent)}")
            self.masks[tv.name] = mask

    def par_loop(self, loop: ir.ParLoop, group_m: str | None) -> None:
        self.comment(loop.span)
        pid = self.namer.fresh("pid")
        self.line(f"{pid} = tl.program_id(axis=0)")
        self.pid = pid
        self.flat_tile = pid  # the program's (tile, grid position) number: split-K's workspace and counters
        if loop.points:
            self.grid_points(loop)
        if self.split_const is not None:
            self.split_index = self.namer.fresh("split")
            self.line(f"{self.split_index} = tl.program_id(axis=2)  # which share of the reduction loop (split)")
        counts = []
        for tv in loop.tiles:
            count = self.namer.fresh(f"num_tiles_{tv.name}")
            self.line(f"{count} = tl.cdiv({self.extent(tv.extent)}, {self.blocks[tv.name]})")
            counts.append(count)
        indices = [self.namer.fresh(f"tile_{tv.name}") for tv in loop.tiles]
        if group_m is not None:
            self.line(f"# grouped order: {group_m} row tiles sweep the columns together (L2 reuse)")
            per_group = self.namer.fresh("tiles_per_group")
            first = self.namer.fresh("first_tile_m")
            rows = self.namer.fresh("group_rows")
            self.line(f"{per_group} = {group_m} * {counts[1]}")
            self.line(f"{first} = ({pid} // {per_group}) * {group_m}")
            self.line(f"{rows} = tl.minimum({counts[0]} - {first}, {group_m})")
            self.line(f"{indices[0]} = {first} + ({pid} % {per_group}) % {rows}")
            self.line(f"{indices[1]} = ({pid} % {per_group}) // {rows}")
        else:
            rest = pid
            for i in range(len(indices) - 1, -1, -1):
                if i == 0:
                    self.line(f"{indices[i]} = {rest}")
                else:
                    self.line(f"{indices[i]} = {rest} % {counts[i]}")
                    nxt = self.namer.fresh("pid_rest")
                    self.line(f"{nxt} = {rest} // {counts[i]}")
                    rest = nxt
        for tv, index in zip(loop.tiles, indices):
            self.tile_offsets(tv, index)
        for dim, _ in self.kernel.full_blocks:
            block = self.blocks[":" + dim]
            offs = self.namer.fresh(f"offs_full_{dim}")
            self.line(f"{offs} = tl.arange(0, {block})")
            self.full_offsets[dim] = offs
            if dim not in self.facts.exact:
                mask = self.namer.fresh(f"mask_full_{dim}")
                self.line(f"{mask} = {offs} < {self.extent_of_dim(dim)}")
                self.masks[":" + dim] = mask
        self.stmts(loop.body)

    def grid_points(self, loop: ir.ParLoop) -> None:
        """The range() axes: the grid's second axis enumerates their positions, the last fastest."""
        point = self.namer.fresh("point")
        ranges = ", ".join(f"{p.name} in range({p.dim})" for p in loop.points)
        self.line(f"{point} = tl.program_id(axis=1)  # {ranges}")
        rest = point
        for i in range(len(loop.points) - 1, -1, -1):
            p = loop.points[i]
            if i == 0:
                self.line(f"{self.names[p.name]} = {rest}")
            else:
                self.line(f"{self.names[p.name]} = {rest} % {self.extent(p.extent)}")
                nxt = self.namer.fresh("point_rest")
                self.line(f"{nxt} = {rest} // {self.extent(p.extent)}")
                rest = nxt
        flat = self.namer.fresh("program")
        self.line(f"{flat} = {point} * tl.num_programs(axis=0) + {self.pid}")
        self.flat_tile = flat

    def seq_loop(self, loop: ir.SeqLoop) -> None:
        self.comment(loop.span)
        tv = loop.tile
        index = self.namer.fresh(f"tile_{tv.name}")
        guarded = False
        if loop.split > 1:
            step = self.namer.fresh(f"step_{tv.name}")
            self.line(f"# split-K: this program walks the {self.split_index}-th run of "
                      f"{self.trip_counts[tv.name]} = cdiv(cdiv({tv.dim}, {self.blocks[tv.name]}), SPLIT_K) tiles")
            self.line(f"for {step} in range(0, {self.trip_counts[tv.name]}):")
            self.depth += 1
            self.line(f"{index} = {self.split_index} * {self.trip_counts[tv.name]} + {step}")
        elif loop.key_range is not None or loop.part != "all":
            start, stop = self.part_bounds(loop) if loop.part != "all" else self.key_range(loop)
            if loop.part != "all":
                self.line(f"# {_PART_COMMENTS[loop.part]}")
            if self.computed_loop_bounds:
                self.line(f"for {index} in range({start}, {stop}):")
                self.depth += 1
            else:  # the same tiles, by a guard: see emit()
                self.line(f"for {index} in range(0, {self.trip_counts[tv.name]}):")
                self.line(f"    if ({index} >= {start}) & ({index} < {stop}):")
                self.depth += 2
                guarded = True
        else:
            trips = self.trip_counts[tv.name]
            self.line(f"for {index} in range(0, {trips}):  # cdiv({tv.dim}, {self.blocks[tv.name]})")
            self.depth += 1
        self.tile_offsets(tv, index, whole=loop.part == "interior")
        self.stmts(loop.body)
        self.depth -= 2 if guarded else 1

    def key_range(self, loop: ir.SeqLoop) -> tuple[str, str]:
        """The key tiles a query tile can see (passes/key_range.py): the rest are masked for every row."""
        assert loop.key_range is not None
        rows, lower, upper = loop.key_range
        block_rows, block_keys = self.blocks[rows], self.blocks[loop.tile.name]
        trips = self.trip_counts[loop.tile.name]
        self.line(f"# only key tiles some row of this {rows} tile can see: the others are masked for every row")
        first = self.bind(f"{self.tile_index[rows]} * {block_rows}", f"first_{rows}")
        self.first_rows[rows] = first
        start, stop = "0", trips
        if lower is not None:  # keys > row + lower
            start = self.bind(f"tl.maximum({first} + {strip_parens(self.expr(lower))} + 1, 0) // {block_keys}",
                              f"first_tile_{loop.tile.name}")
        if upper is not None:  # keys <= row + upper
            stop = self.bind(f"tl.minimum({trips}, tl.cdiv(tl.maximum({first} + {block_rows} + "
                             f"{strip_parens(self.expr(upper))}, 0), {block_keys}))", f"end_tile_{loop.tile.name}")
        return start, stop

    def part_bounds(self, loop: ir.SeqLoop) -> tuple[str, str]:
        """The tiles of one part of a loop split by passes/interior_tiles.py.  The first part met computes
        every boundary: start <= interior_start <= interior_end <= stop."""
        key = (loop.tile.name, loop.span)
        if key not in self.parts:
            tv = loop.tile
            block_keys = self.blocks[tv.name]
            rows, lower, upper = loop.key_range or ("", None, None)
            start, stop = self.key_range(loop) if loop.key_range is not None else ("0", self.trip_counts[tv.name])
            inner_start = start
            if loop.part == "head":  # a head exists only for a band with a lower bound (see the pass)
                assert lower is not None
                inner_start = self.bind(  # clamped to stop: a band narrower than nothing leaves the head alone
                    f"tl.minimum({stop}, tl.maximum({start}, tl.cdiv(tl.maximum({self.first_rows[rows]} + "
                    f"{self.blocks[rows]} + {strip_parens(self.expr(lower))}, 0), {block_keys})))",
                    f"interior_start_{tv.name}")
            limits = [stop]
            if upper is not None:
                limits.append(f"tl.maximum({self.first_rows[rows]} + {strip_parens(self.expr(upper))} + 1, 0) "
                              f"// {block_keys}")
            if tv.name not in self.facts.divisible:
                limits.append(f"{self.extent(tv.extent)} // {block_keys}")  # tiles wholly inside {tv.dim}
            end = limits[0]
            for limit in limits[1:]:
                end = f"tl.minimum({end}, {limit})"
            inner_end = self.bind(f"tl.maximum({inner_start}, {end})", f"interior_end_{tv.name}")
            self.parts[key] = {"head": (start, inner_start), "interior": (inner_start, inner_end),
                               "tail": (inner_end, stop)}
        return self.parts[key][loop.part]

    def stmts(self, body: tuple[ir.Stmt, ...]) -> None:
        for i, s in enumerate(body):
            if isinstance(s, ir.SeqLoop) and s.split > 1:
                self.seq_loop(s)
                split_k.join_partials(self, s)  # opens the block of the last split to arrive
                self.depth += 1
                self.stmts(body[i + 1:])
                self.depth -= 1
                return
            if isinstance(s, ir.SeqLoop):
                self.seq_loop(s)
            elif isinstance(s, ir.Assign):
                self.comment(s.span)
                value = strip_parens(self.expr(s.value))
                self.line(f"{self.names[s.name]} = {value}")
            elif isinstance(s, ir.Store):
                self.comment(s.span)
                value = strip_parens(self.expr(s.value))
                addr, mask = self.address(s.tensor, s.index)
                mask_arg = f", mask={mask}" if mask else ""
                self.line(f"tl.store({addr}, {value}{mask_arg})")

    # ----------------------------------------------------------- expressions
    def expr(self, e: ir.Expr) -> str:
        return LOWERINGS[type(e)](self, e)

    def extent(self, extent: object) -> str:
        text = str(extent)
        return text if text.isdigit() else self.names[safe_identifier(text)]

    def extent_of_dim(self, dim: str) -> str:
        return dim if dim.isdigit() else self.names[dim]

    def block(self, axis: Axis) -> str:
        if axis.kind == "one":
            return "1"
        return self.blocks[(":" + axis.name) if axis.kind == "full" else axis.name]

    def shape(self, ttype: TileType) -> str:
        dims = [self.block(a) for a in ttype.axes]
        return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"

    def axis_mask(self, ttype: TileType, pos: int) -> str:
        """The validity mask of axis ``pos`` of a tile of type ``ttype``, broadcast to its rank."""
        axis = ttype.axes[pos]
        mask = self.masks[(":" + axis.name) if axis.kind == "full" else axis.name]
        return mask + _expand(pos, ttype.rank)

    def address(self, tensor: str, index: tuple[ir.Index, ...]) -> tuple[str, str]:
        param = self.kernel.param(tensor)
        assert isinstance(param, ir.TensorParam)
        rank = len(self.blocks_of_index(tensor, index))
        terms: list[str] = [self.ptrs[tensor]]
        masks: list[str] = []
        pos = 0
        gathered: dict[Axis, int] = {}  # a gather's tile axis -> its position in the loaded tile
        scalar_masks: list[str] = []
        for axis, (ix, extent) in enumerate(zip(index, param.dims)):
            stride = self.strides.get((tensor, axis))
            if isinstance(ix, ir.PointIndex):
                offs = self.expr(ix.value)
                if ix.needs_mask:
                    value = self.bind(offs, "position")
                    offs = value
                    scalar_masks.append(f"({value} >= 0) & ({value} < {self.extent(extent)})")
            elif isinstance(ix, ir.GatherIndex):
                tile_axis = ix.value.type.axes[0]
                if tile_axis not in gathered:
                    gathered[tile_axis] = pos
                    pos += 1
                expand = _expand(gathered[tile_axis], rank)
                value = self.bind(strip_parens(self.expr(ix.value)), "gathered")
                bounds = f"({value} >= 0) & ({value} < {self.extent(extent)})"
                lane = self.masks.get((":" + tile_axis.name) if tile_axis.kind == "full" else tile_axis.name)
                masks.append(f"({bounds}{' & ' + lane if lane else ''}){expand}" if expand
                             else f"{bounds}{' & ' + lane if lane else ''}")
                offs = f"{value}{expand}"
            else:
                expand = _expand(pos, rank)
                if isinstance(ix, ir.TileIndex):
                    offs = self.offsets[ix.tile]
                    if ix.offset is not None:
                        offs = f"({offs} + {self.expr(ix.offset)})"  # keep its parentheses: the offset may be a << b
                        if ix.needs_mask:
                            masks.append(f"(({offs} >= 0) & ({offs} < {self.extent(extent)})){expand}")
                    elif ix.needs_mask:
                        masks.append(self.masks[ix.tile] + expand)
                else:
                    offs = self.full_offsets[ix.dim]
                    if ix.needs_mask:
                        masks.append(self.masks[":" + ix.dim] + expand)
                offs += expand
                pos += 1
            terms.append(f"{offs} * {stride}" if stride else offs)
        if scalar_masks:
            cond = " & ".join(f"({m})" for m in scalar_masks)
            if rank == 0:
                masks = [cond]
            else:  # the interpreter rejects `tile_mask & scalar`: select between the tile mask and False
                shape = "(" + ", ".join(self.blocks_of_index(tensor, index)) + ",)"
                lanes = " & ".join(masks) if masks else f"tl.full({shape}, True, tl.int1)"
                masks = [f"tl.where({cond}, {lanes}, False)"]
        return " + ".join(terms), " & ".join(masks)

    def blocks_of_index(self, tensor: str, index: tuple[ir.Index, ...]) -> list[str]:
        """The block of each axis of the tile that ``tensor[index]`` loads or stores."""
        out: list[str] = []
        seen: list[Axis] = []
        for ix in index:
            if isinstance(ix, ir.TileIndex):
                out.append(self.blocks[ix.tile])
            elif isinstance(ix, ir.FullIndex):
                out.append(self.blocks[":" + ix.dim])
            elif isinstance(ix, ir.GatherIndex) and ix.value.type.axes[0] not in seen:
                seen.append(ix.value.type.axes[0])
                out.append(self.block(ix.value.type.axes[0]))
        return out

    def load(self, e: ir.Load) -> str:
        addr, mask = self.address(e.tensor, e.index)
        other = ", other=0.0" if e.type.dtype.is_float else ", other=0"
        call = f"tl.load({addr}, mask={mask}{other})" if mask else f"tl.load({addr})"
        hint = e.tensor + "_" + "".join(a.name if a.kind == "tile" else "all" for a in e.type.axes)
        name = self.namer.fresh(hint if e.type.axes else e.tensor + "_value")
        self.line(f"{name} = {call}")
        return name


def _expand(pos: int, rank: int) -> str:
    if rank <= 1:
        return ""
    return "[" + ", ".join(":" if i == pos else "None" for i in range(rank)) + "]"
