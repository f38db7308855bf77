"""Tiling: give every tile variable its block size and every whole-axis load its padded block.

IR in, IR out.  Before: ``TileVar(m, block=None)``; after: ``TileVar(m,
block=64)`` on the parallel loop (the grid has ``cdiv(M, 64)`` programs along
m) and on each sequential loop (``cdiv(K, BLOCK_K)`` iterations).  The
schedule is validated against what the kernel needs, here rather than in
Triton, because Triton's interpreter does not check matrix-instruction sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tilec.errors import ScheduleError
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.ir.types import Axis

MAX_TILE_ELEMENTS = 1 << 20  # Triton's limit on a tensor's element count
WARPS = (1, 2, 4, 8, 16, 32)


def tile(kernel: ir.Kernel, schedule: Schedule, full_blocks: Mapping[str, int]) -> ir.Kernel:
    """Apply ``schedule``; ``full_blocks`` gives the power-of-two block of each dimension loaded whole."""
    tiles = kernel.tile_vars()
    for name in tiles:
        if name not in schedule.blocks:
            raise ScheduleError(f"the schedule gives no block size for tile '{name}'", kernel.span,
                                hint="schedules map every tile variable to a power of two, e.g. {'m': 64}")
    for name, block in schedule.blocks.items():
        if name not in tiles:
            raise ScheduleError(f"the schedule names '{name}', which is not a tile variable of '{kernel.name}'",
                                kernel.span, hint="tile variables: " + ", ".join(tiles))
        if block < 1 or block & (block - 1):
            raise ScheduleError(f"block size {block} for '{name}' is not a power of two", kernel.span)
    if schedule.num_warps not in WARPS:
        raise ScheduleError(f"num_warps={schedule.num_warps} is not one of {WARPS}", kernel.span)
    if schedule.num_stages < 1 or schedule.group_m < 1:
        raise ScheduleError("num_stages and group_m are positive", kernel.span)

    def fix(tv: ir.TileVar) -> ir.TileVar:
        return replace(tv, block=schedule.blocks[tv.name])

    def stmts(body: tuple[ir.Stmt, ...]) -> tuple[ir.Stmt, ...]:
        out: list[ir.Stmt] = []
        for s in body:
            if isinstance(s, ir.SeqLoop):
                out.append(replace(s, tile=fix(s.tile), body=stmts(s.body)))
            else:
                out.append(s)
        return tuple(out)

    body = replace(kernel.body, tiles=tuple(fix(t) for t in kernel.body.tiles), body=stmts(kernel.body.body))
    tiled = replace(kernel, body=body, full_blocks=tuple(sorted(full_blocks.items())))
    _check_sizes(tiled)
    return tiled


def block_of(kernel: ir.Kernel, axis: Axis) -> int:
    """The number of elements a tile holds along ``axis`` once the kernel is tiled."""
    if axis.kind == "one":
        return 1
    if axis.kind == "full":
        blocks = dict(kernel.full_blocks)
        if axis.name not in blocks:
            raise ScheduleError(f"dimension {axis.name} is loaded whole, so its size must be known to tile it",
                                kernel.span, hint=f"give a size for {axis.name} (e.g. --shape {axis.name}=128)")
        return blocks[axis.name]
    block = kernel.tile_vars()[axis.name].block
    assert block is not None, "tile() sets every block"
    return block


def _check_sizes(kernel: ir.Kernel) -> None:
    for stmt in ir.walk_stmts(kernel.body.body):
        roots: list[ir.Expr] = []
        if isinstance(stmt, (ir.Assign, ir.Store)):
            roots.append(stmt.value)
        for root in roots:
            for e in ir.walk_exprs(root):
                sizes = [block_of(kernel, a) for a in e.type.axes]
                numel = 1
                for s in sizes:
                    numel *= s
                if numel > MAX_TILE_ELEMENTS:
                    raise ScheduleError(f"a tile of {numel} elements exceeds Triton's limit of {MAX_TILE_ELEMENTS}",
                                        e.span, hint="use smaller blocks")
                if isinstance(e, ir.Dot):
                    _check_dot(kernel, e)


def _check_dot(kernel: ir.Kernel, dot: ir.Dot) -> None:
    m, k = (block_of(kernel, a) for a in dot.a.type.axes)
    n = block_of(kernel, dot.b.type.axes[1])
    min_k = {8: 32, 16: 16, 32: 8}.get(dot.a.type.dtype.bits, 16)
    if m < 16 or n < 16 or k < min_k:
        raise ScheduleError(
            f"'@' on {dot.a.type.dtype.name} tiles needs M, N >= 16 and K >= {min_k}; this schedule gives "
            f"{m} x {k} @ {k} x {n}", dot.span, hint="raise the block sizes of the tiles in this product")
