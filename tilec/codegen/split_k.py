"""Emission of split-K (passes/split_k.py): partial sums in a workspace, joined by the last split to arrive.

The grid is ``(output tiles, SPLIT_K)``.  Split ``s`` of tile ``t`` walks its own run of K tiles, then::

    partials[t, s] = acc                              # this split's share (workspace, f32 or i32)
    barrier; arrived = atomic_add(arrivals[t], 1)     # acq_rel at GPU scope, after every thread's store
    if arrived == SPLIT_K - 1:                        # the last split to finish this tile
        acc = partials[t, 0] + ... + partials[t, SPLIT_K - 1]   # fixed order: independent of arrival
        arrivals[t] = 0                               # so a reused counter buffer starts at zero again
        <the statements after the loop: epilogue, store>

One launch, no second kernel, and the epilogue (bias, activation, scales) still runs once per tile on the
complete sum.  Workspace loads bypass L1 (``.cg``): another SM wrote them.

Why every thread of the last CTA sees every split's partials (PTX memory model; the PTX is locked by
tests/codegen/test_split_k.py): Triton performs a scalar atomic in one thread and broadcasts its result
through shared memory behind a ``bar.sync``.  Release side: each thread's ``st.global`` precedes the
``bar.sync`` of ``tl.debug_barrier()``, which synchronises it with the counting thread, whose
``atom.acq_rel.gpu`` is a release; release is cumulative, so the whole CTA's stores are ordered before it.
Acquire side: the last arrival's atomic reads the previous arrivals' releases (the counter's read-modify-write
chain), and the broadcast ``bar.sync`` orders every thread's later loads after that acquire; causality order
is transitive, so those loads cannot miss a partial.  ``.cg`` also keeps a stale L1 line of a reused
workspace address out of the picture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.types import Axis, TileType

if TYPE_CHECKING:
    from tilec.codegen.triton_emit import Arg, Emitter


def workspace_args(em: Emitter, kernel: ir.Kernel) -> list[Arg]:
    """One workspace per accumulator, the arrival counters and the SPLIT_K constant (claims their names)."""
    from tilec.codegen.triton_emit import Arg

    loop = next(s for s in kernel.body.body if isinstance(s, ir.SeqLoop) and s.split > 1)
    types = _partial_types(kernel, loop)
    args: list[Arg] = []
    em.partial_ptrs = {}
    for name in loop.partials:
        ptr = em.namer.fresh(f"{name}_partials_ptr")
        em.partial_ptrs[name] = ptr
        numel = 1
        for axis in types[name].axes:
            numel *= _block_value(kernel, axis)
        dtype = "int32" if types[name].dtype == dt.i32 else "float32"
        args.append(Arg(ptr, "workspace", name, value=numel, dtype=dtype))
    em.arrivals_ptr = em.namer.fresh("tile_arrivals_ptr")
    args.append(Arg(em.arrivals_ptr, "arrivals"))
    em.split_const = em.namer.fresh("SPLIT_K")
    args.append(Arg(em.split_const, "constexpr", value=loop.split))
    return args


def join_partials(em: Emitter, loop: ir.SeqLoop) -> None:
    """After the split loop: publish this split's partials, count arrivals, and open the last split's block."""
    types = _partial_types(em.kernel, loop)
    split, count = em.split_index, em.split_const
    how = "merges them by log-sum-exp" if loop.softmax_state is not None else "adds them up"
    em.line(f"# split: publish this split's partials; the last of the {count} splits to arrive {how}")
    tile_id = em.bind(f"{em.flat_tile}.to(tl.int64) * {count}", "first_partial")
    offsets: dict[str, str] = {}
    for name in loop.partials:
        offsets[name] = em.bind(_tile_offsets(em, types[name]), f"{name}_partial_offs")
        numel = " * ".join(em.block(a) for a in types[name].axes) or "1"
        em.line(f"tl.store({em.partial_ptrs[name]} + ({tile_id} + {split}) * ({numel}) + {offsets[name]}, "
                f"{em.names[name]})")
    em.line("tl.debug_barrier()  # every thread's partials are written before the arrival is counted")
    arrived = em.namer.fresh("arrived")
    em.line(f'{arrived} = tl.atomic_add({em.arrivals_ptr} + {em.flat_tile}, 1, sem="acq_rel")')
    em.line(f"if {arrived} == {count} - 1:")
    em.depth += 1
    if loop.softmax_state is not None:
        _merge_softmax(em, loop, types, tile_id, offsets)
        em.line(f"tl.store({em.arrivals_ptr} + {em.flat_tile}, 0)")
        em.depth -= 1
        return
    em.line("# the last split: sum every split's partials in split order (deterministic), reset the counter")
    for name in loop.partials:
        numel = " * ".join(em.block(a) for a in types[name].axes) or "1"
        ptr = f"{em.partial_ptrs[name]} + {tile_id} * ({numel}) + {offsets[name]}"
        em.line(f'{em.names[name]} = tl.load({ptr}, cache_modifier=".cg")')
        step = em.namer.fresh("other_split")
        em.line(f"for {step} in tl.static_range(1, {count}):")
        em.line(f'    {em.names[name]} += tl.load({ptr} + {step} * ({numel}), cache_modifier=".cg")')
    em.line(f"tl.store({em.arrivals_ptr} + {em.flat_tile}, 0)")
    em.depth -= 1


def _merge_softmax(em: Emitter, loop: ir.SeqLoop, types: dict[str, TileType], tile_id: str,
                   offsets: dict[str, str]) -> None:
    """The last split of an online-softmax loop merges by log-sum-exp, in one pass over the splits in split
    order, as the key loop itself does: a running max M, and the merged accumulators and sum rescaled by
    exp2(M_old - M_new) as each split's are added with weight exp2(m_s - M_new) (the state is in base 2, see
    passes/online_softmax.py; 0 for a split that saw no visible key).  A first pass for the max unrolled
    into SPLIT_K loads held at once: under Triton 3.6 it took the 16-split int8 decode kernel from 193 to
    255 registers and 48 spilled bytes on sm_90."""
    assert loop.softmax_state is not None
    max_name, sum_name = loop.softmax_state
    count = em.split_const

    def ptr(name: str, split: str) -> str:
        numel = " * ".join(em.block(a) for a in types[name].axes) or "1"
        return f"{em.partial_ptrs[name]} + ({tile_id} + {split}) * ({numel}) + {offsets[name]}"

    em.line("# the last split: merge every split's partials by log-sum-exp, in split order (deterministic),")
    em.line("# in one pass: a running max, the merged partials rescaled whenever it grows (as the key loop does)")
    peak = em.names[max_name]
    em.line(f'{peak} = tl.full({em.shape(types[max_name])}, float("-inf"), tl.float32)')
    for name in loop.partials:
        if name != max_name:
            em.line(f"{em.names[name]} = tl.zeros({em.shape(types[name])}, tl.float32)")
    step = em.namer.fresh("each_split")
    em.line(f"for {step} in range(0, {count}):")
    em.depth += 1
    split_max = em.namer.fresh("split_max")
    em.line(f'{split_max} = tl.load({ptr(max_name, step)}, cache_modifier=".cg")')
    grown = em.namer.fresh("grown_max")
    em.line(f"{grown} = tl.maximum({peak}, {split_max})")
    used = em.namer.fresh("grown_max_used")
    em.line(f'{used} = tl.where({grown} == float("-inf"), 0.0, {grown})  # no visible key yet: weights 0')
    old_weight = em.namer.fresh("merged_weight")
    em.line(f"{old_weight} = tl.exp2({peak} - {used})  # base 2")
    weight = em.namer.fresh("split_weight")
    em.line(f"{weight} = tl.exp2({split_max} - {used})")
    for name in loop.partials:
        if name == max_name:
            continue
        old_w = old_weight if types[name].rank == 1 else f"{old_weight}[:, None]"
        w = weight if types[name].rank == 1 else f"{weight}[:, None]"
        em.line(f'{em.names[name]} = {em.names[name]} * {old_w} + '
                f'tl.load({ptr(name, step)}, cache_modifier=".cg") * {w}')
    em.line(f"{peak} = {grown}")
    em.depth -= 1
    assert sum_name in loop.partials


def _partial_types(kernel: ir.Kernel, loop: ir.SeqLoop) -> dict[str, TileType]:
    types: dict[str, TileType] = {}
    for stmt in kernel.body.body:
        if isinstance(stmt, ir.Assign) and stmt.name in loop.partials and stmt.name not in types:
            types[stmt.name] = stmt.value.type
    return types


def _tile_offsets(em: Emitter, ttype: TileType) -> str:
    """Row-major element offsets of a whole (padded) tile of ``ttype``: its position in a partial."""
    rank = len(ttype.axes)
    if rank == 0:
        return "0"
    terms = []
    for pos, axis in enumerate(ttype.axes):
        later = [em.block(a) for a in ttype.axes[pos + 1:]]
        expand = "" if rank == 1 else "[" + ", ".join(":" if i == pos else "None" for i in range(rank)) + "]"
        term = f"tl.arange(0, {em.block(axis)}){expand}"
        terms.append(f"{term} * ({' * '.join(later)})" if later else term)
    return " + ".join(terms)


def _block_value(kernel: ir.Kernel, axis: Axis) -> int:
    from tilec.passes.tiling import block_of

    return block_of(kernel, axis)
