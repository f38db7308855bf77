"""The pass pipeline: checked IR + schedule + specialisation facts -> IR ready for code generation.

Order matters and is fixed here, in one place:

1. tiling           blocks for every tile variable and whole-axis dimension (validated)
2. defer_group_scale   integer group scales applied to each K tile's product (when the tile lies
                       within one group)
3. online_softmax  ``acc += softmax(s) @ v`` over a key loop -> running max/sum, rescaled accumulators
3b. fuse_dot_acc    ``acc += a @ b`` -> one product with accumulator
4. block_scaled_dot (arch >= 100 only) products of two MX tiles -> ``tl.dot_scaled``
5. split_k          (schedule.split_k > 1) the reduction loop shared by that many programs per tile
5b. key_range       an online-softmax loop walks only the key tiles its query tile can see (causal, window)
6. interpreter_workarounds   (target "cpu" only) exactness fixes for Triton's interpreter
6b. interior_tiles  (with the launch's facts) that loop split: masked head, mask-free interior, masked tail
7. masks            bounds masks and padding guards that the facts cannot prove away
8. verify           structural invariants, so code generation may assume them
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.ir.verify import verify
from tilec.passes.block_scaled_dot import NATIVE_SCALED_DOT_ARCH, block_scaled_dot
from tilec.passes.defer_group_scale import defer_group_scale
from tilec.passes.fuse_dot_acc import fuse_dot_acc
from tilec.passes.interior_tiles import interior_tiles
from tilec.passes.interpreter_workarounds import interpreter_workarounds
from tilec.passes.key_range import key_range
from tilec.passes.masks import Facts, elide_masks, facts_for
from tilec.passes.online_softmax import online_softmax
from tilec.passes.split_k import split_k
from tilec.passes.tiling import tile


@dataclass(frozen=True)
class Lowered:
    kernel: ir.Kernel
    facts: Facts


def full_dims(kernel: ir.Kernel) -> dict[str, bool]:
    """Dimensions used as whole axes (':'), each with whether it feeds a matrix product."""
    found: dict[str, bool] = {}
    for stmt in ir.walk_stmts(kernel.body.body):
        if not isinstance(stmt, (ir.Assign, ir.Store)):
            continue
        roots = [stmt.value]
        if isinstance(stmt, ir.Store):
            roots += [ix for ix in stmt.index if isinstance(ix, ir.FullIndex)]  # type: ignore[misc]
        for root in roots:
            if isinstance(root, ir.FullIndex):
                found.setdefault(root.dim, False)
                continue
            for e in ir.walk_exprs(root):
                in_dot = isinstance(e, ir.Dot)
                for operand in ((e.a, e.b) if isinstance(e, ir.Dot) else (e,)):
                    for axis in operand.type.axes:
                        if axis.kind == "full":
                            found[axis.name] = found.get(axis.name, False) or in_dot
    return found


def full_blocks_for(kernel: ir.Kernel, dim_values: Mapping[str, int]) -> dict[str, int]:
    blocks = {}
    for dim, in_dot in full_dims(kernel).items():
        size = int(dim) if dim.isdigit() else dim_values.get(dim)
        if size is None:
            continue  # tile() reports the missing size where the axis is used
        block = 1 << max(size - 1, 0).bit_length()
        blocks[dim] = max(block, 16) if in_dot else block
    return blocks


def lower(kernel: ir.Kernel, schedule: Schedule, dim_values: Mapping[str, int] | None, target: str,
          arch: int | None = None, scalar_pow2: Mapping[str, int] | None = None,
          positive: frozenset[str] = frozenset()) -> Lowered:
    """Run the passes; ``dim_values`` None compiles a generic kernel (every mask kept).  ``arch`` (the GPU's
    compute capability, 100 = sm_100) selects arch-specific lowerings; None: what every GPU can run.
    ``scalar_pow2``: powers of two that integer scalars (group sizes) are known to be multiples of
    (passes/defer_group_scale); ``positive``: float scalars known to be > 0 (passes/online_softmax)."""
    k = tile(kernel, schedule, full_blocks_for(kernel, dim_values or {}))
    k = defer_group_scale(k, scalar_pow2 or {}, schedule.num_warps)
    k = online_softmax(k, positive)
    k = fuse_dot_acc(k)
    if arch is not None and arch >= NATIVE_SCALED_DOT_ARCH:
        k = block_scaled_dot(k)
    k = split_k(k, schedule.split_k)
    k = key_range(k)
    if target == "cpu":
        k = interpreter_workarounds(k)
    facts = facts_for(k, dim_values) if dim_values is not None else Facts()
    k = interior_tiles(k, facts)
    k = elide_masks(k, facts)
    verify(k)
    return Lowered(k, facts)
