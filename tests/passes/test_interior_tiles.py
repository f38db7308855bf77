"""interior_tiles: before/after on the attention specs, then the masks pass on each part."""

from __future__ import annotations

import math
from pathlib import Path

import tilec
import tilec.ops_attention
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.interior_tiles import interior_tiles
from tilec.passes.key_range import key_range
from tilec.passes.masks import Facts, elide_masks
from tilec.passes.online_softmax import online_softmax
from tilec.passes.split_k import split_k
from tilec.passes.tiling import tile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RAGGED = Facts(divisible=frozenset({"m"}))  # N is not a multiple of the key block
EVEN = Facts(divisible=frozenset({"m", "n"}))


def prepared(text: str | Path, splits: int = 1) -> ir.Kernel:
    kernel = tilec.compile(text).attention.ir()
    return key_range(split_k(online_softmax(tile(kernel, Schedule(blocks={"m": 16, "n": 16}), {"D": 64})), splits))


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
