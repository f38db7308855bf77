"""The typed kernel IR.

A kernel is a structured program: one parallel tile loop (the launch grid)
holding assignments, stores and sequential tile loops (reductions).  Every
expression node is a frozen dataclass with its :class:`TileType` and the
:class:`Span` of the spec text it came from; passes rebuild trees with
``dataclasses.replace`` and never mutate.

Variables are mutable names (``acc += ...`` inside a loop reassigns ``acc``);
the checker guarantees a name keeps one type, which is what Triton's own
loop-carried values need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from tilec.errors import Source, Span
from tilec.ir.dtypes import DType
from tilec.ir.types import TileType

# ----------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class TensorParam:
    name: str
    dims: tuple[sympy.Expr, ...]  # symbols (M, K) or integers
    dtype: DType
    span: Span


@dataclass(frozen=True)
class PackedParam(TensorParam):
    """A 2-D ``[rows, K]`` tensor of ``bits``-wide integer codes packed along K into 32-bit words
    (``dtype`` is the storage type, i32); bound at launch to a :class:`tilec.QTensor`."""

    format: str = ""
    bits: int = 0
    signed: bool = False
    table: bool = False  # codes decode through the format's value table (minifloats, codebooks, MX elements)
    e8m0_scales: bool = False  # MX: scales are e8m0 codes (2 ** (code - 127)), blocks of 32
    e4m3_scales: bool = False  # nvfp4: scales are fp8_e4m3 codes, blocks of 16 (times a tensor scale in the spec)

    @property
    def fixed_block(self) -> int | None:
        """The block size the format's specification fixes (OCP MX: 32, nvfp4: 16); None: any group."""
        return 32 if self.e8m0_scales else 16 if self.e4m3_scales else None


@dataclass(frozen=True)
class ScalarParam:
    name: str
    dtype: DType
    span: Span


Param = TensorParam | ScalarParam


@dataclass(frozen=True)
class TileVar:
    """A tile loop variable: it walks ``dim`` in blocks of ``block`` (set by the tiling pass)."""

    name: str
    dim: str
    extent: sympy.Expr
    span: Span
    block: int | None = None


@dataclass(frozen=True)
class GridPoint:
    """``range(B)`` in a parallel loop header (``for b, h, m in product(range(B), range(H), tiles(M))``):
    one program per position of ``dim``; inside the loop ``name`` is that position, a scalar i32."""

    name: str
    dim: str
    extent: sympy.Expr
    span: Span


# ----------------------------------------------------------------------------
# expressions


@dataclass(frozen=True)
class Const:
    value: int | float | bool
    type: TileType
    span: Span


@dataclass(frozen=True)
class ScalarArg:
    name: str
    type: TileType
    span: Span


@dataclass(frozen=True)
class DimValue:
    """The size of a dimension used as a value (``sum(x, axis=1) / N``)."""

    name: str
    type: TileType
    span: Span


@dataclass(frozen=True)
class GridValue:
    """The position of a parallel ``range`` axis (a :class:`GridPoint`) in this program: a scalar i32."""

    name: str
    type: TileType
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    type: TileType
    span: Span


@dataclass(frozen=True)
class TileIndex:
    """Index an axis by tile variable ``tile``, shifted by a scalar ``offset``."""

    tile: str
    offset: Expr | None
    offset_sym: sympy.Expr  # offset as a sympy expression, for the mask prover
    needs_mask: bool = True  # cleared by the mask pass where provably in bounds


@dataclass(frozen=True)
class FullIndex:
    """``:``: the whole axis, as a power-of-two block."""

    dim: str
    needs_mask: bool = True


@dataclass(frozen=True)
class PointIndex:
    """A scalar integer index: the axis is dropped.  ``needs_mask``: not provably in bounds (the masks pass
    clears it for a grid position over the axis's own dimension, or a constant inside it)."""

    value: Expr
    needs_mask: bool = True


@dataclass(frozen=True)
class GatherIndex:
    """An integer tile as an index (a gather): ``pool[pages, slots, h, :]`` with ``pages`` an i32 tile ``[n]``
    reads one row per lane of ``n``.  The tile's axis becomes the load's axis (index entries gathering along
    the same tile axis share it).  Lanes outside ``0 <= value < extent`` and padding lanes of the index tile
    read 0 (the mask is never proved away: the values are data)."""

    value: Expr


Index = TileIndex | FullIndex | PointIndex | GatherIndex


@dataclass(frozen=True)
class Load:
    tensor: str
    index: tuple[Index, ...]
    type: TileType
    span: Span


@dataclass(frozen=True)
class QuantLoad:
    """``dequantize(w[n, k], scale, zero, group)`` (or plain ``w[n, k]``: codes) on a packed tensor.

    Lowers to word loads, shifts and masks (codes may cross word boundaries), then
    ``(code - zero[n, k // group]) * scale[n, k // group]``; padding lanes are 0.  With ``scale`` None and
    ``zero`` set, ``code - zero`` (passes/defer_group_scale.py moves the scale after the product).
    ``tile_group``: the reduction tile lies within one group (proved by that pass), so zero points are
    one per row per tile.
    """

    tensor: str
    index: tuple[Index, ...]
    scale: str | None
    zero: str | None
    group: Expr | None
    type: TileType
    span: Span
    tile_group: bool = False


@dataclass(frozen=True)
class GroupScale:
    """The group scales of one reduction tile that lies within one group: ``scale[n, (t * BLOCK) // group]``
    for reduction tile ``tile`` (f32, one per row ``n``; i32 after an int32 two-level product); placed after
    a product by passes/defer_group_scale.py.  ``quant`` names the packed tensor the scales belong to."""

    tensor: str
    quant: str
    index: tuple[Index, ...]  # (row index,)
    tile: str
    group: Expr
    type: TileType
    span: Span


@dataclass(frozen=True)
class TilePositions:
    """``index(m)``: the global positions of tile ``m`` along its dimension (i32)."""

    tile: str
    type: TileType
    span: Span


@dataclass(frozen=True)
class Unary:
    op: str  # "neg" | "not"
    operand: Expr
    type: TileType
    span: Span


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / // % & | ^ << >>
    left: Expr
    right: Expr
    type: TileType
    span: Span


@dataclass(frozen=True)
class Compare:
    op: str  # < <= > >= == !=
    left: Expr
    right: Expr
    type: TileType
    span: Span


@dataclass(frozen=True)
class Where:
    cond: Expr
    then: Expr
    otherwise: Expr
    type: TileType
    span: Span


@dataclass(frozen=True)
class Math:
    fn: str  # exp exp2 log log2 sqrt rsqrt abs silu gelu sigmoid tanh maximum minimum
    args: tuple[Expr, ...]
    type: TileType
    span: Span


@dataclass(frozen=True)
class Cast:
    operand: Expr
    type: TileType
    span: Span
    rounding: str = "native"  # "native": Triton's .to(); "rne_bits": f32 -> bf16 by integer rounding


@dataclass(frozen=True)
class Reduce:
    op: str  # sum | max | min
    operand: Expr
    axis: int
    type: TileType
    span: Span
    guard: bool = True  # mask the padding of the reduced axis first; cleared by the mask pass


@dataclass(frozen=True)
class Dot:
    """``a @ b`` with f32 (or i32) accumulation; ``acc`` is added in the same instruction."""

    a: Expr
    b: Expr
    acc: Expr | None
    type: TileType
    span: Span
    guard_a: bool = True  # zero a's padding along the contracted axis; cleared by the mask pass
    guard_b: bool = True


@dataclass(frozen=True)
class ScaledDot:
    """``dequantize(a[m, k], ...) @ dequantize(b[n, k], ...).T`` on two block-scaled tiles (MX, or nvfp4
    without its tensor scale), as one block-scaled matrix product (``tl.dot_scaled``; native on sm_100).

    ``a`` and ``b`` are the dequantising loads the product replaced (``b`` untransposed, rows along N); they
    are kept as nodes so the mask pass proves their bounds as for any load, but the lowering reads their
    codes and scale codes directly and never dequantises.  ``a_format``/``b_format`` name the elements the
    way ``tl.dot_scaled`` does (``e2m1``, ``e4m3``, ``e5m2``); ``block`` is the scale block along K (32:
    e8m0 scales, MX; 16: e4m3 scales, nvfp4).  Padding lanes of codes and scales are 0, so padding
    contributes 0 and no guard is needed.
    """

    a: QuantLoad
    b: QuantLoad
    a_format: str
    b_format: str
    block: int
    acc: Expr | None
    type: TileType
    span: Span


@dataclass(frozen=True)
class Full:
    """``zeros(shape, dtype)`` / ``full(shape, value, dtype)``."""

    value: int | float | bool
    type: TileType
    span: Span


@dataclass(frozen=True)
class View:
    """``v[:, None]``: keep (an input axis number) or insert (None) axes."""

    operand: Expr
    pattern: tuple[int | None, ...]
    type: TileType
    span: Span


@dataclass(frozen=True)
class Trans:
    operand: Expr
    type: TileType
    span: Span


@dataclass(frozen=True)
class Softmax:
    """``softmax(s, axis)`` or ``logsumexp(s, axis)`` (``fn``) where the axis is the tile of the enclosing
    sequential loop: the softmax over the loop's *whole* dimension (this tile's block of it), or the
    log-sum-exp over the whole dimension.  Only ``acc += softmax(s, axis=1) @ v`` and ``lse = logsumexp(s,
    axis=1)`` may use them; passes/online_softmax.py rewrites both into the online form (running max, running
    sum, rescaled accumulators), and none reaches code generation."""

    operand: Expr
    axis: int
    type: TileType
    span: Span
    fn: str = "softmax"  # "softmax" | "logsumexp"


Expr = (
    Const | ScalarArg | DimValue | GridValue | Var | Softmax | Load | QuantLoad | GroupScale | TilePositions | Unary
    | Binary | Compare
    | Where | Math | Cast | Reduce | Dot | ScaledDot | Full | View | Trans
)

# ----------------------------------------------------------------------------
# statements


@dataclass(frozen=True)
class Assign:
    name: str
    value: Expr
    span: Span
    declares: bool = False  # first assignment of the name in its scope


@dataclass(frozen=True)
class Store:
    tensor: str
    index: tuple[Index, ...]
    value: Expr
    span: Span


@dataclass(frozen=True)
class SeqLoop:
    """``for k in tiles(K):`` inside the parallel loop: a sequential walk over K's tiles.

    ``split`` > 1 (passes/split_k.py): that many programs share the walk, each taking a contiguous run of
    tiles; the ``partials`` (the loop's accumulators) are summed across them before the statements after
    the loop run, once per output tile."""

    tile: TileVar
    body: tuple[Stmt, ...]
    span: Span
    split: int = 1
    partials: tuple[str, ...] = ()
    # passes/online_softmax.py: (running max, running sum) of the softmax this loop computes online; a
    # split loop then merges its partials by log-sum-exp instead of adding them
    softmax_state: tuple[str, str] | None = None
    softmax_scores: str | None = None  # the name of the scores tile the online softmax reads
    # passes/key_range.py: (query tile, lower, upper): only keys with row + lower < key <= row + upper can be
    # visible to a row of the query tile (either bound None: none), so tiles wholly outside are skipped
    key_range: tuple[str, Expr | None, Expr | None] | None = None
    # passes/interior_tiles.py: which of those tiles this loop walks: "all"; or the masked "head" before the
    # tiles whole for every row, those "interior" tiles (no visibility mask, no bounds mask on the key axis),
    # and the masked "tail" after them, three consecutive loops
    part: str = "all"


@dataclass(frozen=True)
class ParLoop:
    """``for m, n in tiles(M, N):``: one program per tile tuple; the launch grid."""

    tiles: tuple[TileVar, ...]
    body: tuple[Stmt, ...]
    span: Span
    points: tuple[GridPoint, ...] = ()  # range() axes: the grid's second axis, row-major (last fastest)


Stmt = Assign | Store | SeqLoop | ParLoop


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    dims: tuple[str, ...]  # every dimension symbol, in order of first appearance
    body: ParLoop
    span: Span
    source: Source
    type_bindings: tuple[tuple[str, DType], ...] = ()  # dtype variables -> dtypes
    full_blocks: tuple[tuple[str, int], ...] = field(default=())  # dim -> padded block (tiling)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def tensors(self) -> tuple[TensorParam, ...]:
        return tuple(p for p in self.params if isinstance(p, TensorParam))

    @property
    def scalars(self) -> tuple[ScalarParam, ...]:
        return tuple(p for p in self.params if isinstance(p, ScalarParam))

    def tile_vars(self) -> dict[str, TileVar]:
        found: dict[str, TileVar] = {t.name: t for t in self.body.tiles}
        for loop in walk_loops(self.body.body):
            found[loop.tile.name] = loop.tile
        return found


def walk_loops(body: tuple[Stmt, ...]) -> list[SeqLoop]:
    loops: list[SeqLoop] = []
    for stmt in body:
        if isinstance(stmt, SeqLoop):
            loops.append(stmt)
            loops.extend(walk_loops(stmt.body))
    return loops


def children(expr: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of ``expr`` (index offsets included), for generic walks."""
    if isinstance(expr, (Unary, Cast, Reduce, View, Trans, Softmax)):
        return (expr.operand,)
    if isinstance(expr, (Binary, Compare)):
        return (expr.left, expr.right)
    if isinstance(expr, Where):
        return (expr.cond, expr.then, expr.otherwise)
    if isinstance(expr, Math):
        return expr.args
    if isinstance(expr, (Dot, ScaledDot)):
        return (expr.a, expr.b) + ((expr.acc,) if expr.acc is not None else ())
    if isinstance(expr, Load):
        return index_exprs(expr.index)
    if isinstance(expr, QuantLoad):
        return index_exprs(expr.index) + ((expr.group,) if expr.group is not None else ())
    if isinstance(expr, GroupScale):
        return (*index_exprs(expr.index), expr.group)
    return ()


def index_exprs(index: tuple[Index, ...]) -> tuple[Expr, ...]:
    out: list[Expr] = []
    for ix in index:
        if isinstance(ix, TileIndex) and ix.offset is not None:
            out.append(ix.offset)
        elif isinstance(ix, (PointIndex, GatherIndex)):
            out.append(ix.value)
    return tuple(out)


def walk_exprs(expr: Expr) -> list[Expr]:
    """``expr`` and all its descendants, parents first."""
    out = [expr]
    for child in children(expr):
        out.extend(walk_exprs(child))
    return out


def walk_stmts(body: tuple[Stmt, ...]) -> list[Stmt]:
    out: list[Stmt] = []
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, (SeqLoop, ParLoop)):
            out.extend(walk_stmts(stmt.body))
    return out
