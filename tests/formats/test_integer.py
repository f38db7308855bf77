"""Integer formats int1..int8, uint1..uint8: every code, rounding and saturation against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fmt_refs import around, f32, random_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

import tilec.formats as F
from tilec.formats import IntFormat

ALL = [F.get(f"{p}{b}") for p in ("int", "uint") for b in range(1, 9)]


def reference(fmt: IntFormat, x: np.ndarray) -> np.ndarray:
    """numpy: round half to even, saturate, NaN -> 0, two's complement in the low bits."""
    with np.errstate(invalid="ignore"):
        r = np.clip(np.rint(x.astype(np.float64)), fmt.min, fmt.max)
    r = np.where(np.isnan(r), 0, r).astype(np.int64)
    return (r & (2**fmt.bits - 1)).astype(np.uint8)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_every_code_round_trips(fmt: IntFormat) -> None:
    codes = torch.arange(2**fmt.bits, dtype=torch.int64).to(torch.uint8)
    vals = fmt.decode(codes)
    expected = [c - 2**fmt.bits if fmt.signed and c >= 2 ** (fmt.bits - 1) else c for c in range(2**fmt.bits)]
    assert vals.dtype == torch.float32 and vals.tolist() == expected
    assert torch.equal(fmt.values(), vals)
    assert torch.equal(fmt.encode(vals), codes)
    assert (fmt.min, fmt.max) == (min(expected), max(expected))
    assert fmt.name == ("int" if fmt.signed else "uint") + str(fmt.bits)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_rounding_and_saturation_match_numpy(fmt: IntFormat) -> None:
    k = np.arange(-300, 300, dtype=np.float64)
    special = f32([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf, np.nan])
    edges = np.concatenate([around(f32(k)), around(f32(k + 0.5)), special])
    x = np.concatenate([edges, random_inputs(100_000, 2 ** (fmt.bits - 1), seed=fmt.bits)])
    assert np.array_equal(fmt.encode(torch.from_numpy(x)).numpy(), reference(fmt, x))


def test_conventions() -> None:
    i4, u4, i1 = F.get("int4"), F.get("uint4"), F.get("int1")
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 7.4, 7.5, 100.0, -8.6, math.nan, math.inf, -math.inf])
    assert i4.decode(i4.encode(x)).tolist() == [0, 2, 2, 0, -2, -2, 7, 7, 7, -8, 0, 7, -8]
    assert i4.encode(torch.tensor([-1.0])).item() == 0x0F  # two's complement in the low bits
    assert u4.decode(u4.encode(x)).tolist() == [0, 2, 2, 0, 0, 0, 7, 8, 15, 0, 0, 15, 0]
    assert i1.values().tolist() == [0.0, -1.0] and (i1.min, i1.max) == (-1.0, 0.0)
    # decode ignores the high bits: a sign-extended int8 view of int4 codes decodes the same
    c = torch.arange(16, dtype=torch.uint8)
    signed_bytes = torch.where(c >= 8, c.to(torch.int16) - 16, c.to(torch.int16)).to(torch.int8)
    assert torch.equal(i4.decode(signed_bytes), i4.decode(c))
    assert i4.encode(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)).shape == (2, 2)
    with pytest.raises(ValueError):
        IntFormat(9, True)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(width=32), min_size=1, max_size=32), st.sampled_from(ALL))
def test_hypothesis(xs: list[float], fmt: IntFormat) -> None:
    x = f32(xs)
    assert np.array_equal(fmt.encode(torch.from_numpy(x)).numpy(), reference(fmt, x))
