"""The default schedule: a simple rule from the kernel's structure and the problem size.

Autotuning is its own issue; until then this rule picks blocks that are valid
(matrix products get at least 16 in every dimension) and reasonable: 64-wide
output tiles for products, and for elementwise/row kernels enough rows to give
each program a few thousand elements.  Small-M products (the decode path) split
their reduction loop when their output tiles alone cannot occupy the GPU.
"""

from __future__ import annotations

from collections.abc import Mapping

from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.block_scaled_dot import NATIVE_SCALED_DOT_ARCH, scaled_operands
from tilec.passes.pipeline import full_blocks_for
from tilec.passes.split_k import split_blocker


def _pow2_at_most(n: int, cap: int) -> int:
    block = 1
    while block * 2 <= min(max(n, 1), cap):
        block *= 2
    return block


def _pow2_at_least(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def dot_tiles(kernel: ir.Kernel) -> dict[str, int]:
    """Tile variables that index an operand of a matrix product, each with the smallest block the
    matrix instructions accept (16; 32 along K for 8-bit operands; see passes/tiling.py)."""
    names: dict[str, int] = {}
    for stmt in ir.walk_stmts(kernel.body.body):
        if isinstance(stmt, (ir.Assign, ir.Store)):
            for e in ir.walk_exprs(stmt.value):
                if isinstance(e, ir.Dot):
                    for a in e.a.type.axes + e.b.type.axes:
                        if a.kind == "tile":
                            names[a.name] = max(names.get(a.name, 16), 16)
                    k = e.a.type.axes[1]
                    if k.kind == "tile" and e.a.type.dtype.bits == 8:
                        names[k.name] = 32
    return names


def scaled_rows(kernel: ir.Kernel) -> set[str]:
    """Tile variables walking the M rows of products that become ``tl.dot_scaled`` on sm_100."""
    names: set[str] = set()
    for stmt in ir.walk_stmts(kernel.body.body):
        if isinstance(stmt, (ir.Assign, ir.Store)):
            for e in ir.walk_exprs(stmt.value):
                found = scaled_operands(kernel, e) if isinstance(e, ir.Dot) else None
                if found is not None and found.a.type.axes[0].kind == "tile":
                    names.add(found.a.type.axes[0].name)
    return names


def default_schedule(kernel: ir.Kernel, dim_values: Mapping[str, int], target: str,
                     arch: int | None = None, group_pow2: Mapping[str, int] | None = None) -> Schedule:
    """``arch`` >= 100: block-scaled products get 128 rows along M where M allows, the only row count for
    which Triton emits the native block-scaled MMA (probed, Triton 3.9: 64 rows fall back to an upcast
    f16-kind MMA, 16 rows to mma.sync bf16).  ``group_pow2``: the power of two each group-size scalar is
    known to be a multiple of (the specialisation's facts), for the decode tile of quantised products."""
    in_dot = dot_tiles(kernel)
    if arch is not None and arch >= NATIVE_SCALED_DOT_ARCH:
        for name in scaled_rows(kernel):
            tv = kernel.tile_vars()[name]
            if int(tv.extent.subs({s: dim_values.get(s.name, 1) for s in tv.extent.free_symbols})) >= 128:
                in_dot[name] = 128
    tiles = kernel.tile_vars()
    full = full_blocks_for(kernel, dim_values)
    row_elems = 1
    for block in full.values():
        row_elems = max(row_elems, block)
    blocks: dict[str, int] = {}
    for name, tv in tiles.items():
        size = int(tv.extent.subs({s: dim_values.get(s.name, 1) for s in tv.extent.free_symbols}))
        if name in in_dot:
            blocks[name] = max(in_dot[name], min(64, _pow2_at_least(size)))
        else:
            budget = max(1, 4096 // row_elems)
            blocks[name] = _pow2_at_most(size, budget if row_elems > 1 else 1024)
    elements = 1
    for tv in kernel.body.tiles:
        elements *= blocks[tv.name]
    warps = 8 if elements * row_elems >= 128 * 128 else 4
    decode_warps = _quantised_decode(kernel, blocks, dim_values, group_pow2 or {})
    warps = decode_warps or warps
    split = _split_k(kernel, blocks, dim_values) if target != "cpu" else 1
    return Schedule(blocks=blocks, num_warps=warps, num_stages=3 if in_dot else 2, group_m=8, split_k=split)


def _quantised_decode(kernel: ir.Kernel, blocks: dict[str, int], dim_values: Mapping[str, int],
                      group_pow2: Mapping[str, int]) -> int | None:
    """The decode tile (M <= 16) of a product with a dequantised weight operand; sets its blocks and returns
    the warps (None: no such product).  Measured from sm_90/sm_80 cubins (tilec/codegen/sass.py, W4A16 g128,
    N = K = 8192): when the group scale can follow each K tile's product (the K block divides the group:
    passes/defer_group_scale.py), 16 x 128 x 128 with 4 warps is the leanest spill-free tile (about 36
    instructions per packed word; 16 x 64 x 64 takes 55), with the K block at most the group's power-of-two
    factor; otherwise (the scale per weight) 16 x 64 x 64 with 8 warps is the one that does not spill on
    sm_80."""
    for m, n, k, group, min_k in _packed_products(kernel):
        size_m = int(kernel.tile_vars()[m].extent.subs({s: dim_values.get(s.name, 1)
                                                        for s in kernel.tile_vars()[m].extent.free_symbols}))
        if size_m > 16:
            continue
        g2 = group_pow2.get(group.name, 0) if isinstance(group, ir.ScalarArg) else (
            int(group.value) & -int(group.value) if isinstance(group, ir.Const) and int(group.value) > 0 else 0)
        blocks[m] = 16
        if g2 >= max(min_k, 32):  # group 32 too: 16 x 128 x 32 takes 59 (the per-weight path 160-200)
            blocks[n], blocks[k] = 128, min(128, g2)
            return 4
        blocks[n], blocks[k] = 64, max(min_k, 64)
        return 8
    return None


def _packed_products(kernel: ir.Kernel) -> list[tuple[str, str, str, ir.Expr | None, int]]:
    """(m, n, k tile variables, group, smallest K block) of every ``x[m, k] @ dequantize(w[n, k], ...).T``."""
    found = []
    for stmt in ir.walk_stmts(kernel.body.body):
        if not isinstance(stmt, (ir.Assign, ir.Store)):
            continue
        for e in ir.walk_exprs(stmt.value):
            if not isinstance(e, ir.Dot):
                continue
            load = e.b
            while isinstance(load, (ir.Trans, ir.Cast)):
                load = load.operand
            if not isinstance(load, ir.QuantLoad) or not isinstance(load.index[0], ir.TileIndex):
                continue
            m, k = e.a.type.axes
            if m.kind == "tile" and k.kind == "tile":
                min_k = 32 if e.a.type.dtype.bits == 8 else 16
                found.append((m.name, load.index[0].tile, k.name, load.group, min_k))
    return found


GPU_SMS = 132  # an H100 / H200; the autotuner (its own issue) will measure instead of assuming
MIN_TILES_PER_SPLIT = 4
MAX_DEFAULT_SPLIT = 16


def _split_k(kernel: ir.Kernel, blocks: Mapping[str, int], dim_values: Mapping[str, int]) -> int:
    """The decode path: when the output tiles are too few to occupy the GPU (M = 1..16 gives one row of
    tiles; decode attention has one tile per sequence and KV head), split the reduction loop until they do,
    keeping at least 4 K tiles per split.  The interpreter (target cpu) runs programs one after another, so
    it never splits by default."""
    if split_blocker(kernel) is not None:
        return 1

    def tiles(tv: ir.TileVar) -> int:
        size = int(tv.extent.subs({s: dim_values.get(s.name, 1) for s in tv.extent.free_symbols}))
        return -(-size // blocks[tv.name])

    out_tiles = 1
    for tv in kernel.body.tiles:
        out_tiles *= tiles(tv)
    for point in kernel.body.points:  # range() axes: one program per position (batch x heads in decode)
        size = point.extent.subs({s: dim_values.get(s.name, 1) for s in point.extent.free_symbols})
        out_tiles *= int(size)
    loop = next(s for s in kernel.body.body if isinstance(s, ir.SeqLoop))
    k_tiles = tiles(loop.tile)
    split = 1
    while (out_tiles * split < GPU_SMS and split < MAX_DEFAULT_SPLIT
           and k_tiles >= 2 * split * MIN_TILES_PER_SPLIT):
        split *= 2
    return split


Overrides = dict[str, object]
_LAUNCH_OPTIONS = ("num_warps", "num_stages", "group_m", "split_k")


def overrides(pinned: Schedule | Mapping[str, object] | None) -> Overrides:
    """What a user pinned: a full Schedule, or a mapping such as {"m": 64, "n": 64, "num_warps": 8}."""
    if pinned is None:
        return {}
    if isinstance(pinned, Schedule):
        return {"blocks": dict(pinned.blocks), "num_warps": pinned.num_warps,
                "num_stages": pinned.num_stages, "group_m": pinned.group_m, "split_k": pinned.split_k}
    out: Overrides = {}
    blocks: dict[str, int] = {}
    for key, value in pinned.items():
        if key in _LAUNCH_OPTIONS:
            out[key] = int(value)  # type: ignore[call-overload]
        elif key == "blocks":
            blocks.update({str(k): int(v) for k, v in dict(value).items()})  # type: ignore[call-overload]
        else:
            blocks[str(key)] = int(value)  # type: ignore[call-overload]
    if blocks:
        out["blocks"] = blocks
    return out


def merge(default: Schedule, pinned: Overrides) -> Schedule:
    """Pinned values override the default; tiles not pinned keep the default's blocks."""
    blocks = dict(default.blocks)
    blocks.update(pinned.get("blocks", {}))  # type: ignore[call-overload]
    options = {k: pinned[k] for k in _LAUNCH_OPTIONS if k in pinned}
    return default.replace(blocks=blocks, **options)
