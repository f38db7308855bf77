"""e8m0 (OCP MX scale): every code against ml_dtypes and torch; encode follows ml_dtypes bit for bit."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch
from fmt_refs import F32_TINY, around, assert_same_codes, f32, random_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

from tilec.formats import e8m0


def ml_codes(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)


def mine(x: np.ndarray) -> np.ndarray:
    return e8m0.encode(torch.from_numpy(x)).numpy()


def test_decode_every_code() -> None:
    codes = np.arange(256, dtype=np.uint8)
    got = e8m0.decode(torch.from_numpy(codes)).numpy()
    for ref in (codes.view(ml_dtypes.float8_e8m0fnu).astype(np.float32),
                torch.from_numpy(codes).view(torch.float8_e8m0fnu).float().numpy()):
        assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.isnan(got).sum() == 1
        assert np.array_equal(got[:255].view(np.uint32), ref[:255].view(np.uint32))
    assert got[0] == 2.0**-127 and got[127] == 1.0 and got[254] == 2.0**127
    assert (e8m0.name, e8m0.bits, e8m0.max, e8m0.min) == ("e8m0", 8, 2.0**127, 2.0**-127)


def test_encode_edges_match_ml_dtypes() -> None:
    k = np.arange(-149, 128, dtype=np.float64)
    p = 2.0**k
    x = np.concatenate([around(f32(p)), around(f32(1.5 * p)), around(f32(1.25 * p)), around(f32(1.75 * p))])
    x = np.concatenate([x, -x, f32([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 3.4e38, F32_TINY])])
    assert_same_codes(e8m0.values().numpy(), mine(x), ml_codes(x), x)


def test_encode_random_and_subnormals_match_ml_dtypes() -> None:
    sub = np.arange(0, 1 << 23, 97, dtype=np.uint32).view(np.float32)  # float32 subnormals
    x = np.concatenate([random_inputs(1_000_000, 1e3, seed=3), sub, np.abs(random_inputs(200_000, 1e-30, seed=4))])
    assert_same_codes(e8m0.values().numpy(), mine(x), ml_codes(x), x)


def test_encode_rounding_rules() -> None:
    x = torch.tensor([1.0, 1.4999999, 1.5, 3.0, 6.0, 0.75, 2.0**-127, 2.0**-128, 2.0**127 * 1.4999, 2.0**127 * 1.5])
    assert e8m0.encode(x).tolist() == [127, 127, 128, 129, 130, 127, 0, 0, 254, 255]
    nan_inputs = torch.tensor([0.0, -0.0, -1.0, math.inf, -math.inf, math.nan])
    assert e8m0.encode(nan_inputs).tolist() == [255] * 6


def test_encode_positive_values_match_torch() -> None:
    """torch agrees on positive normal values; on float32 subnormals it sends everything above 2**-127 to
    code 1 (the bit-level artefact ml_dtypes < 0.7 had), where tilec rounds as on normals (below)."""
    x = np.abs(random_inputs(500_000, 1e3, seed=5))
    x = x[np.isfinite(x) & (x >= 2.0**-126)]
    ref = torch.from_numpy(x).to(torch.float8_e8m0fnu).view(torch.uint8).numpy()
    assert np.array_equal(mine(x), ref)


def test_subnormals_round_like_normals() -> None:
    """1.5 * 2**-127 is the midpoint of codes 0 and 1 (2**-127, 2**-126): ties go up, as for normals."""
    x = torch.tensor([2.0**-127 * 1.0000001, 2.0**-127 * 1.25, 2.0**-127 * 1.4999, 2.0**-127 * 1.5, 2.0**-127 * 1.75])
    assert e8m0.encode(x).tolist() == [0, 0, 0, 1, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32), min_size=1, max_size=64))
def test_hypothesis(xs: list[float]) -> None:
    x = f32(xs)
    assert_same_codes(e8m0.values().numpy(), mine(x), ml_codes(x), x)


@pytest.mark.parametrize("code", [0, 1, 126, 127, 128, 253, 254])
def test_round_trip(code: int) -> None:
    c = torch.tensor([code], dtype=torch.uint8)
    assert torch.equal(e8m0.encode(e8m0.decode(c)), c)
