"""interior_tiles: before/after on the attention specs, then the masks pass on each part."""

from __future__ import annotations

import math
import types
from pathlib import Path

import tilec
import tilec.ops_attention
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.interior_tiles import interior_tiles
from tilec.passes.key_range import key_range
from tilec.passes.masks import Facts, elide_masks
from tilec.passes.online_softmax import online_softmax
from tilec.passes.split_k import split_k
from tilec.passes.tiling import tile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TL = types.SimpleNamespace(minimum=min, maximum=max, cdiv=lambda a, b: -(-a // b))  # what the bounds call
RAGGED = Facts(divisible=frozenset({"m"}))  # N is not a multiple of the key block
EVEN = Facts(divisible=frozenset({"m", "n"}))


def prepared(text: str | Path, splits: int = 1) -> ir.Kernel:
    kernel = tilec.compile(text).attention.ir()
    return key_range(split_k(online_softmax(tile(kernel, Schedule(blocks={"m": 16, "n": 16}), {"D": 64})), splits))


def prefill_source(variant: tilec.ops_attention.Variant, M: int, N: int, bm: int, bn: int) -> str:
    """The generated Triton of a prefill variant (CPU target, positive scale) at these sizes and blocks."""
    return tilec.ops_attention.kernel_for(variant).specialize(
        {"B": 1, "H": 2, "HK": 1, "M": M, "N": N, "D": 64}, {"T": dt.f16}, target="cpu",
        schedule={"m": bm, "n": bn}, scalars={"scale": 0.1}).source


def key_loops(k: ir.Kernel) -> list[ir.SeqLoop]:
    return [s for s in k.body.body if isinstance(s, ir.SeqLoop)]


def masked_scores(loop: ir.SeqLoop) -> list[ir.Where]:
    """The where(..., -inf) selects of the loop body."""
    return [e for s in loop.body if isinstance(s, ir.Assign) for e in ir.walk_exprs(s.value)
            if isinstance(e, ir.Where) and isinstance(e.otherwise, ir.Const) and e.otherwise.value == -math.inf]


def test_causal_loop_becomes_interior_and_tail() -> None:
    before = prepared(EXAMPLES / "attention.tile")
    (loop,) = key_loops(before)
    assert loop.part == "all" and len(masked_scores(loop)) == 1
    after = interior_tiles(before, EVEN)
    interior, tail = key_loops(after)
    assert (interior.part, tail.part) == ("interior", "tail")
    assert masked_scores(interior) == []  # every key of an interior tile is visible: no select
    assert tail.body == loop.body  # the masked tiles run the original body
    assert interior.key_range == tail.key_range == loop.key_range  # the bounds come from the same band
    assert interior.softmax_state == loop.softmax_state  # one online state across both loops
    at = after.body.body.index(interior)
    assert after.body.body[at + 1] is tail  # consecutive, nothing in between


def test_window_gets_a_masked_head_too() -> None:
    window = tilec.ops_attention.Variant(causal=True, window=True).spec()
    after = interior_tiles(prepared(window), EVEN)
    assert [loop.part for loop in key_loops(after)] == ["head", "interior", "tail"]
    head, interior, tail = key_loops(after)
    assert masked_scores(interior) == [] and len(masked_scores(head)) == len(masked_scores(tail)) == 1


def test_other_conditions_stay_in_the_interior() -> None:
    spec = (EXAMPLES / "attention.tile").read_text().replace(
        "s = where(index(n)[None, :] <= index(m)[:, None] + (N - M), s, -inf)",
        "s = where((index(n)[None, :] <= index(m)[:, None] + (N - M)) & (index(n)[None, :] != 5), s, -inf)")
    assert "!= 5" in spec
    interior, _ = key_loops(interior_tiles(prepared(spec), EVEN))
    (where,) = masked_scores(interior)
    assert isinstance(where.cond, ir.Compare) and where.cond.op == "!="  # only the band's conjunct is gone


def test_unbanded_loops_split_only_when_the_key_axis_is_padded() -> None:
    plain = prepared(tilec.ops_attention.Variant().spec())
    assert interior_tiles(plain, EVEN) == plain
    interior, tail = key_loops(interior_tiles(plain, RAGGED))
    assert (interior.part, tail.part) == ("interior", "tail") and interior.body == tail.body


def test_split_loops_are_left_alone() -> None:
    split = prepared(EXAMPLES / "attention.tile", splits=2)
    assert interior_tiles(split, RAGGED) == split


def test_masks_drop_the_key_axis_bounds_only_in_the_interior() -> None:
    after = elide_masks(interior_tiles(prepared(tilec.ops_attention.Variant(causal=True).spec()), RAGGED), RAGGED)
    interior, tail = key_loops(after)

    def key_masks(loop: ir.SeqLoop) -> list[bool]:
        return [ix.needs_mask for s in loop.body if isinstance(s, ir.Assign) for e in ir.walk_exprs(s.value)
                if isinstance(e, ir.Load) for ix in e.index if isinstance(ix, ir.TileIndex) and ix.tile == "n"]

    def guards(loop: ir.SeqLoop) -> list[bool]:
        return [bool(getattr(e, "guard", False)) for s in loop.body if isinstance(s, ir.Assign)
                for e in ir.walk_exprs(s.value) if isinstance(e, (ir.Reduce, ir.Dot))]

    assert key_masks(tail) and all(key_masks(tail)) and not any(key_masks(interior))
    assert any(guards(tail)) and not any(guards(interior))


def test_emitted_part_bounds_classify_every_key_tile() -> None:
    """The bounds Emitter.part_bounds writes, evaluated for every query tile of shapes whose offsets N - M and
    windows take every residue modulo the blocks: the interior holds only tiles whose every key is inside N and
    visible to every row of the query tile (padding rows included: their scores are computed too), the parts
    are ordered, and no tile with a key visible to a real row is left out of [start, stop)."""
    import numpy as np

    window_variant = tilec.ops_attention.Variant(causal=True, window=True)
    checked_interior = 0
    for bm, bn in [(16, 16), (32, 16), (16, 32)]:
        # N - M: 8, 14, -2, 15, -17, 86, 30: every boundary residue the blocks can meet, and both signs
        for M, N in [(37, 45), (37, 51), (64, 62), (33, 48), (50, 33), (5, 91), (40, 70)]:
            code = prefill_source(window_variant, M, N, bm, bn)
            lines = code.split("# only key tiles")[1].split("# head:")[0].strip().splitlines()[1:]
            bounds = compile("\n".join(line.strip() for line in lines), "<bounds>", "exec")
            trips = -(-N // bn)
            keys = np.arange(trips * bn).reshape(trips, 1, bn)
            for window in [*range(1, 2 * bn + 3), 50, 75, 1000]:
                for tile_m in range(-(-M // bm)):
                    names = {"tl": TL, "tile_m": tile_m, "BLOCK_M": bm, "BLOCK_N": bn, "M": M, "N": N,
                             "window": window, "num_tiles_n": trips}
                    exec(bounds, names)
                    start, head_end = names["first_tile_n"], names["interior_start_n"]
                    inner_end, stop = names["interior_end_n"], names["end_tile_n"]
                    assert start <= head_end <= inner_end <= stop or stop <= start
                    rows = np.arange(tile_m * bm, tile_m * bm + bm).reshape(1, bm, 1)  # padding rows included
                    sees = (keys > rows + N - M - window) & (keys <= rows + N - M) & (keys < N)  # [tile, row, key]
                    whole = sees.all(axis=(1, 2))
                    real = (rows < M)
                    some = (sees & real).any(axis=(1, 2))
                    tiles = np.arange(trips)
                    interior = (tiles >= head_end) & (tiles < inner_end)
                    assert whole[interior].all(), (bm, bn, M, N, window, tile_m)
                    assert not (some & ~((tiles >= start) & (tiles < stop))).any(), (bm, bn, M, N, window, tile_m)
                    checked_interior += int(interior.sum())
    assert checked_interior > 200, checked_interior  # the interior is not trivially empty


def test_emitted_bounds_without_a_band_keep_the_partial_tile_out() -> None:
    """Non-causal, N not a multiple of the key block: the interior is exactly the tiles wholly inside N."""
    for N, bn in [(45, 16), (33, 32), (100, 64), (17, 16)]:
        code = prefill_source(tilec.ops_attention.Variant(), 20, N, 16, bn)
        assert "# interior:" in code and "# tail:" in code and "# head:" not in code
        line = next(x.strip() for x in code.splitlines() if x.strip().startswith("interior_end_n ="))
        names = {"tl": TL, "N": N, "BLOCK_N": bn, "num_tiles_n": -(-N // bn)}
        exec(line, names)
        assert names["interior_end_n"] == N // bn
