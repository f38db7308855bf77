"""Interior tiles: an online-softmax key loop is split where its masks stop mattering.

IR in, IR out.  After passes/key_range.py a causal loop walks the key tiles its query tile can see, but
every one of them still computes the visibility mask (``where(index(n) <= index(m) + e, s, -inf)``: an
integer compare and a select per score) and, when N is not a multiple of the key block, the bounds masks
of the key axis.  Only the tiles on the band's edges need them: for a 128-row query tile and 64-key tiles,
two or three tiles of a causal row, against up to N / 64 in all.  As FlashAttention's kernels do, the loop
becomes three consecutive loops over the same state:

    head      tiles [start, interior_start)     the original body (only with a lower bound: a window)
    interior  tiles [interior_start, interior_end)
              every key visible to every row of the tile and inside N: the band's conjuncts are dropped
              from the where (the where itself when nothing else remains) and the masks pass treats the
              key axis as unpadded there (no bounds masks, no guards)
    tail      tiles [interior_end, stop)        the original body

The bounds are computed by the code generator (``Emitter.part_bounds``) from the query tile's first row:
``interior_start = cdiv(first + BLOCK_M + lower, BLOCK_N)`` (keys above every row's lower bound, padding
rows included), ``interior_end = min((first + upper + 1) // BLOCK_N, N // BLOCK_N)``.  A loop with no band
is split only when N is padded (interior + the last, partial tile).  The tiles, their order and the online
state are the same as before, so the result is the same up to the skipped selects, which selected ``s``.
"""

from __future__ import annotations

from dataclasses import replace

from tilec.ir import nodes as ir
from tilec.passes.key_range import Band, loop_band
from tilec.passes.masks import Facts
from tilec.passes.rewrite import rewrite


def interior_tiles(kernel: ir.Kernel, facts: Facts) -> ir.Kernel:
    body: list[ir.Stmt] = []
    for stmt in kernel.body.body:
        body.extend(_split(stmt, facts) if isinstance(stmt, ir.SeqLoop) else [stmt])
    return replace(kernel, body=replace(kernel.body, body=tuple(body)))


def _split(loop: ir.SeqLoop, facts: Facts) -> list[ir.Stmt]:
    if loop.softmax_state is None or loop.split > 1 or loop.part != "all":
        return [loop]
    band = loop_band(loop) if loop.key_range is not None else None
    if band is None and loop.tile.name in facts.divisible:
        return [loop]  # no band, no padding: every tile is interior already
    interior = replace(loop, body=_without_band(loop.body, band), part="interior")
    head = [replace(loop, part="head")] if band is not None and band.lower is not None else []
    return [*head, interior, replace(loop, part="tail")]


def _without_band(body: tuple[ir.Stmt, ...], band: Band | None) -> tuple[ir.Stmt, ...]:
    """The loop body with the band's conjuncts known true (every key of an interior tile is visible)."""
    if band is None:
        return body
    where = band.where
    rest = [c for i, c in enumerate(band.conjuncts) if i not in band.used]
    if rest and isinstance(where.cond, ir.Var):
        return body  # `visible = ...; where(visible, ...)`: the other conjuncts stay behind the name
    if rest:
        cond = rest[0]
        for c in rest[1:]:
            cond = ir.Binary("&", cond, c, where.cond.type, where.cond.span)
        new: ir.Expr = replace(where, cond=cond)
    elif where.then.type == where.type:
        new = where.then
    else:
        return body

    def drop(e: ir.Expr) -> ir.Expr:
        return new if e == where else e

    return tuple(replace(s, value=rewrite(s.value, drop)) if isinstance(s, ir.Assign) else s for s in body)
