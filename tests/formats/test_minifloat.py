"""Minifloats: decode and encode bit for bit against ml_dtypes and torch, conventions, generic float(e, m)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from fmt_refs import (
    EXTRA_MINIFLOATS,
    ML_DTYPES,
    TORCH_DTYPES,
    assert_same_codes,
    edge_inputs,
    f32,
    random_inputs,
    torch_e4m3_saturates,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import tilec.formats as F
from tilec.formats import FloatConvention, MinifloatFormat, minifloat

NAMED = [F.get(n) for n in ML_DTYPES]
ALL_REF = [(f, ML_DTYPES[f.name]) for f in NAMED] + EXTRA_MINIFLOATS
IDS = [f.name for f, _ in ALL_REF]


def ml_reference(fmt: MinifloatFormat, mldt: object, x: np.ndarray) -> np.ndarray:
    """ml_dtypes' codes, with our two documented choices applied: formats without infinity saturate
    (ml_dtypes turns overflow into NaN for e4m3fn/fnuz), and formats without NaN encode NaN as +0."""
    y = x if fmt.has_inf else np.clip(x, -fmt.max, fmt.max)
    with np.errstate(invalid="ignore", over="ignore"):
        codes = y.astype(mldt).view(np.uint8).copy()
    if not fmt.has_nan:
        codes[np.isnan(x)] = 0
    return codes


def mine(fmt: MinifloatFormat, x: np.ndarray) -> np.ndarray:
    return fmt.encode(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(("fmt", "mldt"), ALL_REF, ids=IDS)
def test_decode_every_code_matches_ml_dtypes(fmt: MinifloatFormat, mldt: object) -> None:
    codes = np.arange(2**fmt.bits, dtype=np.uint8)
    ref = codes.view(mldt).astype(np.float32)
    got = fmt.decode(torch.from_numpy(codes)).numpy()
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    assert np.array_equal(got[ok].view(np.uint32), ref[ok].view(np.uint32))  # bit for bit: -0.0 too
    assert np.array_equal(fmt.values().numpy().view(np.uint32), got.view(np.uint32))
    finite = ref[np.isfinite(ref)]
    assert fmt.max == finite.max() and fmt.min == finite.min()


@pytest.mark.parametrize("name", list(TORCH_DTYPES))
def test_decode_every_code_matches_torch(name: str) -> None:
    fmt = F.get(name)
    codes = torch.arange(256, dtype=torch.int64).to(torch.uint8)
    ref = codes.view(TORCH_DTYPES[name]).float()
    got = fmt.decode(codes)
    assert torch.equal(got.isnan(), ref.isnan())
    ok = ~ref.isnan()
    assert torch.equal(got[ok].view(torch.int32), ref[ok].view(torch.int32))


@pytest.mark.parametrize(("fmt", "mldt"), ALL_REF, ids=IDS)
def test_encode_edges_match_ml_dtypes(fmt: MinifloatFormat, mldt: object) -> None:
    mags = fmt.values().numpy()[: 2 ** (fmt.bits - 1)]
    x = edge_inputs([float(v) for v in mags if np.isfinite(v)])
    assert_same_codes(fmt.values().numpy(), mine(fmt, x), ml_reference(fmt, mldt, x), x)


@pytest.mark.parametrize(("fmt", "mldt"), ALL_REF, ids=IDS)
def test_encode_random_matches_ml_dtypes(fmt: MinifloatFormat, mldt: object) -> None:
    x = random_inputs(400_000, fmt.max / 4, seed=fmt.bits + fmt.e)
    assert_same_codes(fmt.values().numpy(), mine(fmt, x), ml_reference(fmt, mldt, x), x)


@pytest.mark.parametrize("name", list(TORCH_DTYPES))
def test_encode_matches_torch(name: str) -> None:
    fmt, dt = F.get(name), TORCH_DTYPES[name]
    mags = [float(v) for v in fmt.values().numpy()[:128] if np.isfinite(v)]
    x = np.concatenate([edge_inputs(mags), random_inputs(400_000, fmt.max / 4, seed=7)])
    if name == "fp8_e4m3" and not torch_e4m3_saturates():
        x = np.clip(x, -fmt.max, fmt.max)  # older torch: overflow -> NaN, compare in range only
    ref = torch.from_numpy(x).to(dt).view(torch.uint8).numpy()
    assert_same_codes(fmt.values().numpy(), mine(fmt, x), ref, x)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32), min_size=1, max_size=64), st.sampled_from(range(len(ALL_REF))))
def test_encode_hypothesis(xs: list[float], which: int) -> None:
    fmt, mldt = ALL_REF[which]
    x = f32(xs)
    assert_same_codes(fmt.values().numpy(), mine(fmt, x), ml_reference(fmt, mldt, x), x)


def test_special_values() -> None:
    e4, e5, e2 = F.fp8_e4m3, F.fp8_e5m2, F.fp4_e2m1
    x = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 1e9, -1e9, 464.0, 463.99])
    assert e4.encode(x).tolist() == [0x00, 0x80, 0x7E, 0xFE, 0x7F, 0xFF, 0x7E, 0xFE, 0x7E, 0x7E]
    assert e5.encode(x[:8]).tolist() == [0x00, 0x80, 0x7C, 0xFC, 0x7F, 0xFF, 0x7C, 0xFC]
    assert e2.encode(x).tolist() == [0x0, 0x8, 0x7, 0xF, 0x0, 0x0, 0x7, 0xF, 0x7, 0x7]
    assert e5.encode(torch.tensor([61439.996, 61440.0])).tolist() == [0x7B, 0x7C]  # midpoint of max and 2**16
    assert e5.encode_saturating(torch.tensor([61440.0, math.inf, -1e9])).tolist() == [0x7B, 0x7B, 0xFB]
    assert (e4.max, e4.min, e5.max, e2.max, F.fp6_e2m3.max, F.fp6_e3m2.max) == (448, -448, 57344, 6, 7.5, 28)
    assert e4.has_nan and not e4.has_inf and e5.has_inf and not e2.has_nan
    assert [f.emax for f in (e2, F.fp6_e2m3, F.fp6_e3m2, e4, e5)] == [2, 2, 4, 8, 15]
    fnuz = EXTRA_MINIFLOATS[0][0]
    assert fnuz.encode(torch.tensor([-0.0, -1e-9, math.nan, -math.nan])).tolist() == [0, 0, 0x80, 0x80]


def test_ties_to_even() -> None:
    e2 = F.fp4_e2m1  # 0, 0.5, 1, 1.5, 2, 3, 4, 6
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -5.0])
    assert e2.decode(e2.encode(x)).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -0.0, -4.0]


def test_float64_and_half_inputs_round_through_float32() -> None:
    # 1.0625 is the midpoint of e4m3's 1.0 and 1.125; in float64 the input is just above it, but torch and
    # ml_dtypes (and tilec) round to float32 first, which lands on the midpoint, which ties to even (1.0).
    x = torch.tensor([1.0625 + 2.0**-40], dtype=torch.float64)
    assert F.fp8_e4m3.encode(x).item() == x.to(torch.float8_e4m3fn).view(torch.uint8).item() == 0x38
    h = torch.randn(1000).to(torch.bfloat16)
    assert torch.equal(F.fp8_e5m2.encode(h), F.fp8_e5m2.encode(h.float()))
    assert F.fp8_e5m2.encode(torch.randn(3, 4, 5)).shape == (3, 4, 5)


def test_decode_ignores_high_bits_and_checks_dtype() -> None:
    c = torch.arange(16, dtype=torch.uint8)
    assert torch.equal(F.fp4_e2m1.decode(c | 0xF0), F.fp4_e2m1.decode(c))
    with pytest.raises(TypeError):
        F.fp4_e2m1.decode(torch.zeros(3))


def _brute_force(fmt: MinifloatFormat, x: np.ndarray, saturate: bool) -> np.ndarray:
    """Nearest code by comparing the distance to every value (ties: the even code), independent of the
    implementation's thresholds. Exact for float32 inputs: distances are computed in float64 and inputs are
    first clamped to a point beyond which the answer cannot change."""
    n = fmt.e + fmt.m
    table = fmt.values().numpy().astype(np.float64)[: 2**n]
    codes = np.nonzero(np.isfinite(table))[0]
    cand = table[codes]
    top = 2.0 ** (math.frexp(fmt.max)[1])  # next power of two above max
    if fmt.has_inf and not saturate:
        codes = np.append(codes, (2**fmt.e - 1) << fmt.m)  # the infinity code, "at" 2**(emax + 1)
        cand = np.append(cand, top)
    a = np.minimum(np.abs(x.astype(np.float64)), 2 * top)
    d = np.abs(cand[None, :] - a[:, None])
    score = np.where(d == d.min(axis=1, keepdims=True), codes[None, :] % 2, 2)
    mag = codes[np.argmin(score, axis=1)]
    sign = np.signbit(x)
    out = np.where(sign, mag | 2**n, mag)
    if fmt.convention.nan == "neg_zero":
        out = np.where(mag == 0, 0, out)
    nan_code = {"ieee": 2**n - 1, "all_ones": 2**n - 1, "neg_zero": 0, "none": 0}[fmt.convention.nan]
    nan_out = np.where(sign & fmt.has_nan, nan_code | 2**n, nan_code)
    if fmt.convention.nan == "neg_zero":
        nan_out = np.full_like(nan_out, 2**n)
    return np.where(np.isnan(x), nan_out, out).astype(np.uint8)


CONVENTIONS = [("ieee", True), ("all_ones", False), ("neg_zero", False), ("none", False)]
GENERIC = [
    (e, m, nan, inf)
    for e, m in itertools.product(range(1, 8), range(0, 7))
    if e + m + 1 <= 8
    for nan, inf in CONVENTIONS
    if not (nan == "ieee" and m == 0) and not (e == 1 and m == 0 and nan in ("ieee", "all_ones"))
]


@pytest.mark.parametrize(("e", "m", "nan", "inf"), GENERIC)
def test_generic_minifloats_against_brute_force(e: int, m: int, nan: str, inf: bool) -> None:
    try:
        fmt = minifloat(e, m, nan=nan, inf=inf)  # type: ignore[arg-type]
    except ValueError:
        assert e == 1  # e = 1 with a reserved top exponent can leave no positive finite value
        return
    assert fmt.bits == 1 + e + m and fmt.bias == 2 ** (e - 1) - 1
    table = fmt.values().numpy()
    finite = [float(v) for v in table[: 2 ** (e + m)] if np.isfinite(v)]
    # every finite code round-trips
    codes = np.arange(2**fmt.bits, dtype=np.uint8)
    ok = np.isfinite(table) & ~((table == 0) & np.signbit(table) & (nan == "neg_zero"))
    assert np.array_equal(fmt.encode(torch.from_numpy(table[ok])).numpy(), codes[ok])
    # rounding of edge inputs and random values against the brute-force reference
    rng = np.random.default_rng(e * 8 + m)
    x = np.concatenate([edge_inputs(finite), (rng.standard_normal(2000) * fmt.max / 3).astype(np.float32)])
    assert np.array_equal(fmt.encode(torch.from_numpy(x)).numpy(), _brute_force(fmt, x, saturate=False))
    assert np.array_equal(fmt.encode_saturating(torch.from_numpy(x)).numpy(), _brute_force(fmt, x, saturate=True))


def test_minifloat_constructor() -> None:
    assert minifloat(4, 3, nan="all_ones", inf=False) is F.fp8_e4m3
    assert minifloat(5, 2) is F.fp8_e5m2
    assert minifloat(2, 1, nan="none") is F.fp4_e2m1
    custom = minifloat(4, 3, nan="all_ones", inf=False, name="my_e4m3")
    assert custom == F.fp8_e4m3 and custom.name == "my_e4m3"  # equality ignores the name
    assert minifloat(3, 4).name == "float8_e3m4_ieee_b3"
    assert minifloat(4, 3, bias=8, nan="neg_zero").max == 240.0
    assert FloatConvention(7, "all_ones", False).style == "fn"
    for bad in [dict(e=0, m=3), dict(e=4, m=4), dict(e=4, m=-1)]:
        with pytest.raises(ValueError, match="minifloats need"):
            minifloat(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported minifloat convention"):
        minifloat(4, 3, nan="all_ones", inf=True)
    with pytest.raises(ValueError, match="m >= 1"):
        minifloat(4, 0, nan="ieee")
    with pytest.raises(ValueError, match="above float32"):
        minifloat(7, 0, bias=-100, nan="none")
    with pytest.raises(ValueError, match="below float32"):
        minifloat(4, 3, bias=200, nan="none")
    e7 = minifloat(7, 0, nan="none")  # 2**-62 .. 2**64, all codes finite
    assert e7.max == 2.0**64 and e7.smallest_subnormal == 2.0**-62
