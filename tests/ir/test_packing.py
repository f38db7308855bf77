"""Packing layouts: exact bit positions against a naive big-integer reference, and exact round trips.

The reference packer below is written independently of tilec: it walks the elements one by one and
ORs each code's bits into one Python integer per plane (the little-endian bit stream), then cuts that
integer into 32-bit words.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tilec.ir import packing
from tilec.ir.layout import Layout, LayoutError
from tilec.ir.packing import PackedLayout, Piece, pack, pack_planes, unpack, unpack_plan

INTERLEAVE8 = (0, 2, 4, 6, 1, 3, 5, 7)


def reference_pack(codes: list[int], bits: int, order=(0,), planes=None) -> list[list[int]]:
    """Per plane, the uint32 words of the stream: group g's slot k holds element g*G + order[k]."""
    planes = planes or (bits,)
    g = len(order)
    n = len(codes)
    padded = -(-n // g) * g
    out, low = [], 0
    for b in planes:
        stream = 0
        for i, code in enumerate(codes):
            slot = (i // g) * g + order.index(i % g)
            stream |= ((code >> low) & ((1 << b) - 1)) << (slot * b)
        out.append([(stream >> (32 * w)) & 0xFFFFFFFF for w in range(-(-padded * b // 32))])
        low += b
    return out


def as_uint32(t: torch.Tensor) -> list[int]:
    return [int(x) & 0xFFFFFFFF for x in t.reshape(-1).tolist()]


def planes_of(words) -> tuple[torch.Tensor, ...]:
    return words if isinstance(words, tuple) else (words,)


def check_layout(layout: PackedLayout, codes: torch.Tensor) -> None:
    """pack matches the reference on every row, and unpack restores the codes exactly."""
    n = codes.shape[-1]
    words = pack(codes, layout)
    planes = planes_of(words)
    assert len(planes) == len(layout.planes)
    for p, w in enumerate(planes):
        assert w.dtype == torch.int32 and w.shape == (*codes.shape[:-1], layout.words(n)[p])
    nrows = math.prod(codes.shape[:-1])
    for r, row in enumerate(codes.reshape(nrows, n).tolist()):
        expect = reference_pack(row, layout.bits, layout.order, layout.planes)
        for p, w in enumerate(planes):
            assert as_uint32(w.reshape(nrows, w.shape[-1])[r]) == expect[p]
    assert torch.equal(unpack(words, layout, n), codes.to(torch.uint8))


# ----------------------------------------------------------------------------
# literals


def test_little_endian_word():
    w = pack(torch.arange(1, 9, dtype=torch.uint8), PackedLayout(4))
    assert as_uint32(w) == [0x87654321]
    assert w.tolist() == [0x87654321 - (1 << 32)]
    w = pack(torch.tensor([1, 0, 3, 2] * 4, dtype=torch.uint8), PackedLayout(2))
    assert as_uint32(w) == [0b10110001 * 0x01010101]


def test_interleaved_word():
    codes = torch.arange(8, dtype=torch.uint8)
    assert as_uint32(pack(codes, PackedLayout(4, INTERLEAVE8))) == [0x75316420]
    # the same order as a layout: slot k -> element 2*(k%4) + k//4
    as_layout = PackedLayout(4, Layout((4, 2), (2, 1)))
    assert as_layout == PackedLayout(4, INTERLEAVE8)
    assert as_uint32(pack(codes, as_layout)) == [0x75316420]
    assert str(as_layout) == "packed(4b order=0,2,4,6,1,3,5,7)"


def test_three_bit_crosses_words():
    layout = PackedLayout(3)
    assert layout.words(32) == (3,) and layout.words(33) == (4,) and layout.words(1) == (1,)
    assert layout.block == 32 and layout.block_words == (3,)
    w = pack(torch.full((32,), 7, dtype=torch.uint8), layout)
    assert as_uint32(w) == [0xFFFFFFFF] * 3
    assert layout.locate(9) == [Piece(0, 0, 27, 3)]
    assert layout.locate(10) == [Piece(0, 0, 30, 2), Piece(0, 1, 0, 1)]
    assert layout.locate(21) == [Piece(0, 1, 31, 1), Piece(0, 2, 0, 2)]
    assert layout.locate(32 + 10) == [Piece(0, 3, 30, 2), Piece(0, 4, 0, 1)]
    codes = torch.zeros(32, dtype=torch.uint8)
    codes[10] = 0b101
    assert as_uint32(pack(codes, layout)) == [1 << 30, 1, 0]


def test_six_bit_as_four_plus_two_planes():
    layout = PackedLayout(6, planes=(4, 2))
    codes = torch.tensor([0b10_0001, 0b01_0010, 0b11_0011, 0b00_0100, 0b10_0101, 0b01_0110, 0b11_0111, 0b00_1000])
    lo, hi = pack(codes, layout)
    assert as_uint32(lo) == [0x87654321]
    assert as_uint32(hi) == [0b00_11_01_10_00_11_01_10]
    assert layout.locate(5) == [Piece(0, 0, 20, 4), Piece(1, 0, 10, 2)]
    assert layout.words(100) == (13, 7) and layout.block == 16 and layout.block_words == (2, 1)
    assert torch.equal(unpack((lo, hi), layout, 8), codes.to(torch.uint8))


# ----------------------------------------------------------------------------
# round trips and exact bits


LAYOUTS = [
    lambda b: PackedLayout(b),
    lambda b: PackedLayout(b, INTERLEAVE8),
    lambda b: PackedLayout(b, Layout((2, 3), (3, 1))),
    lambda b: PackedLayout(b, (1, 0), planes=(1, b - 1) if b > 1 else None),
]


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [1, 31, 33, 100, 1000])
@pytest.mark.parametrize("make", LAYOUTS, ids=["dense", "interleave8", "layout-order", "planes"])
def test_round_trip_exact(bits, n, make):
    gen = torch.Generator().manual_seed(bits * 7919 + n)
    codes = torch.randint(0, 1 << bits, (2, 3, n), generator=gen, dtype=torch.uint8)
    codes[0, 0] = (1 << bits) - 1  # all ones: every bit position in use
    check_layout(make(bits), codes)


def test_six_bit_planes_round_trip():
    gen = torch.Generator().manual_seed(6)
    for planes in [(4, 2), (2, 4), (2, 2, 2), (1, 5)]:
        for order in [(0,), INTERLEAVE8]:
            codes = torch.randint(0, 64, (3, 1, 2, 257), generator=gen, dtype=torch.uint8)
            check_layout(PackedLayout(6, order, planes), codes)


@st.composite
def packed_layouts(draw):
    bits = draw(st.integers(1, 8))
    cuts = sorted(draw(st.sets(st.integers(1, bits - 1), max_size=2))) if bits > 1 else []
    planes = tuple(b - a for a, b in zip([0, *cuts], [*cuts, bits]))
    order = tuple(draw(st.permutations(range(draw(st.sampled_from((1, 2, 3, 4, 8, 16)))))))
    return PackedLayout(bits, order, planes)


@settings(max_examples=60, deadline=None)
@given(packed_layouts(), st.integers(0, 300), st.lists(st.integers(1, 3), max_size=2), st.integers(0, 2**32 - 1))
def test_round_trip_random(layout, n, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << layout.bits, (*batch, n), generator=gen, dtype=torch.uint8)
    check_layout(layout, codes)


@pytest.mark.parametrize("layout", [PackedLayout(3), PackedLayout(5, INTERLEAVE8), PackedLayout(7, (2, 0, 1), (3, 4))])
def test_locate_against_reference(layout):
    """Each element alone, all ones: the words have exactly the bits locate names."""
    n = 2 * layout.block + 5
    for i in range(n):
        codes = [0] * n
        codes[i] = (1 << layout.bits) - 1
        expect = reference_pack(codes, layout.bits, layout.order, layout.planes)
        got = [[0] * len(w) for w in expect]
        for piece in layout.locate(i):
            got[piece.plane][piece.word] |= ((1 << piece.nbits) - 1) << piece.bit
        assert got == expect, i
        assert sum(p.nbits for p in layout.locate(i)) == layout.bits


# ----------------------------------------------------------------------------
# the unpack plan


def run_plan_naively(plan, words: list[list[int]], n: int) -> list[int]:
    """Per element, per step: code |= ((word >> shift) & mask) << dest (words as uint32 ints)."""
    codes = []
    for i in range(n):
        block, j = divmod(i, plan.block)
        code = 0
        for step in plan.element_steps(j):
            w = words[step.plane][block * plan.block_words[step.plane] + step.word]
            code |= ((w >> step.shift) & step.mask) << step.dest
        codes.append(code)
    return codes


@pytest.mark.parametrize("layout", [PackedLayout(3), PackedLayout(4, INTERLEAVE8), PackedLayout(6, planes=(4, 2)),
                                    PackedLayout(5, (1, 2, 0))])
def test_plan_is_locate_as_data(layout):
    plan = unpack_plan(layout)
    assert plan.block == layout.block and plan.block_words == layout.block_words
    assert len(plan) == len(list(plan)) == sum(len(layout.locate(j)) for j in range(plan.block))
    for j in range(plan.block):
        steps = plan.element_steps(j)
        pieces = layout.locate(j)
        assert [(s.plane, s.word, s.shift, s.mask) for s in steps] == [
            (p.plane, p.word, p.bit, (1 << p.nbits) - 1) for p in pieces
        ]
        assert [s.dest for s in steps] == [sum(p.nbits for p in pieces[:k]) for k in range(len(pieces))]
        assert all(s.word < plan.block_words[s.plane] and s.mask < 1 << (32 - s.shift) for s in steps)
        again = layout.locate(j + 3 * plan.block)  # every block has the same pieces, words shifted
        assert [(p.plane, p.word - 3 * plan.block_words[p.plane], p.bit) for p in again] == [
            (p.plane, p.word, p.bit) for p in pieces
        ]
    n = 3 * plan.block + 7
    codes = torch.randint(0, 1 << layout.bits, (n,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    words = [as_uint32(w) for w in planes_of(pack(codes, layout))]
    assert run_plan_naively(plan, words, n) == codes.tolist()


def test_three_bit_plan_crossing_steps():
    plan = unpack_plan(PackedLayout(3))
    steps = plan.element_steps(10)
    assert [(s.word, s.shift, s.mask, s.dest) for s in steps] == [(0, 30, 0b11, 0), (1, 0, 0b1, 2)]
    assert len(plan) == 32 + 2 and plan.combine == "or"
    arrays = plan.arrays(0)
    assert set(arrays) == {"element", "word", "shift", "mask", "dest"} and arrays["element"].shape == (34,)


def test_unpack_executes_the_plan(monkeypatch):
    layout = PackedLayout(4, INTERLEAVE8)
    codes = torch.arange(16, dtype=torch.uint8) % 16
    words = pack(codes, layout)
    plan = unpack_plan(layout)
    swap = {0: 1, 1: 0}
    tampered = dataclasses.replace(
        plan, steps=tuple(dataclasses.replace(s, element=swap.get(s.element, s.element)) for s in plan.steps)
    )
    monkeypatch.setattr(packing, "unpack_plan", lambda _layout: tampered)
    got = unpack(words, layout, 16).tolist()
    expect = codes.tolist()
    for b in (0, 8):
        expect[b], expect[b + 1] = expect[b + 1], expect[b]
    assert got == expect


def test_row_chunks(monkeypatch):
    """Large inputs are processed a few rows at a time; the chunking must not change the result."""
    layout = PackedLayout(3, INTERLEAVE8)
    codes = torch.randint(0, 8, (5, 3, 70), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    whole = pack(codes, layout)
    monkeypatch.setattr(packing, "_CHUNK", 50)
    assert torch.equal(pack(codes, layout), whole)
    assert torch.equal(unpack(whole, layout, 70), codes)


# ----------------------------------------------------------------------------
# inputs and errors


def test_inputs():
    codes = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    words = pack(codes, PackedLayout(3))
    assert words.shape == (2, 1)
    assert torch.equal(unpack(words.numpy(), PackedLayout(3), 3), torch.from_numpy(codes))
    longer = torch.cat([words, torch.full((2, 4), -1, dtype=torch.int32)], dim=-1)
    assert torch.equal(unpack(longer, PackedLayout(3), 3), torch.from_numpy(codes))  # extra words are ignored
    assert pack_planes(codes, PackedLayout(3))[0].shape == (2, 1)
    assert pack(torch.zeros(4, 0, dtype=torch.uint8), PackedLayout(5)).shape == (4, 0)
    assert unpack(torch.zeros(4, 0, dtype=torch.int32), PackedLayout(5), 0).shape == (4, 0)


def test_errors():
    for bits in (0, 9, 2.0, True):
        with pytest.raises(LayoutError):
            PackedLayout(bits)
    with pytest.raises(LayoutError):
        PackedLayout(6, planes=(4, 3))
    with pytest.raises(LayoutError):
        PackedLayout(4, (0, 2))
    with pytest.raises(LayoutError):
        PackedLayout(4, Layout((2, 2), (1, 1)))
    with pytest.raises(LayoutError):
        pack(torch.tensor([16], dtype=torch.uint8), PackedLayout(4))
    with pytest.raises(LayoutError):
        pack(torch.tensor([1.0]), PackedLayout(4))
    with pytest.raises(LayoutError):
        unpack(torch.zeros(2, dtype=torch.int32), PackedLayout(4), 17)
    with pytest.raises(LayoutError):
        unpack(torch.zeros(2, dtype=torch.int32), PackedLayout(6, planes=(4, 2)), 8)
    with pytest.raises(LayoutError):
        PackedLayout(3).locate(-1)
