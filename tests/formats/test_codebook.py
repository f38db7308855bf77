"""Codebooks: the NF4 table, nearest-entry encoding, ties to the lower code, user tables."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from fmt_refs import around, f32, random_inputs

from tilec.formats import Codebook, get, nf4

# The published NF4 table (QLoRA / bitsandbytes), written out independently of tilec's own copy.
NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def brute_force(table: list[float], x: np.ndarray) -> np.ndarray:
    """Nearest entry by distance to every entry, ties to the lower code; float64 distances, and exact
    rational ones wherever float64 sees a tie (float64 rounding can merge distances that differ)."""
    t = np.array(table, dtype=np.float32).astype(np.float64)
    lo, hi = 2 * t.min() - t.max() - 1, 2 * t.max() - t.min() + 1  # clamping here changes no answer
    with np.errstate(invalid="ignore"):
        a = np.clip(np.where(np.isnan(x), 0.0, x.astype(np.float64)), lo, hi)
    d = np.abs(t[None, :] - a[:, None])
    codes = np.argmin(d, axis=1)  # argmin returns the first (lowest) index among equal distances
    tied = (d == d.min(axis=1, keepdims=True)).sum(axis=1) > 1
    exact = [Fraction(float(v)) for v in t]
    for i in np.nonzero(tied)[0]:
        fa = Fraction(float(a[i]))
        codes[i] = min(range(len(t)), key=lambda c: (abs(exact[c] - fa), c))
    return np.where(np.isnan(x), int(np.argmin(np.abs(t))), codes).astype(np.uint8)


def test_nf4_table() -> None:
    assert get("nf4") is nf4 and nf4.bits == 4 and len(nf4.table) == 16
    assert nf4.values().tolist() == [float(np.float32(v)) for v in NF4]
    assert nf4.values()[7].item() == 0.0 and (nf4.min, nf4.max) == (-1.0, 1.0)
    codes = torch.arange(16, dtype=torch.uint8)
    assert torch.equal(nf4.encode(nf4.decode(codes)), codes)


@pytest.mark.parametrize(
    "table",
    [NF4, [3.0, -1.0, 0.5, 3.0, -0.0, 0.0, 2.0], [1.0], [0.0, 1e-30, 1.0, 1e30], list(np.linspace(-2, 2, 256))],
    ids=["nf4", "unsorted_duplicates", "single", "wide", "256"],
)
def test_nearest_with_ties_to_lower_code(table: list[float]) -> None:
    cb = Codebook("t", tuple(table))
    v = np.unique(np.array(table, dtype=np.float32).astype(np.float64))
    mids = (v[:-1] + v[1:]) / 2
    x = np.concatenate([around(f32(v)), around(f32(mids)), f32([np.inf, -np.inf, np.nan, -0.0]),
                        random_inputs(20_000, 2.0, seed=len(table))])
    x = x[~np.isnan(x) | (np.arange(len(x)) % 7 == 0)]
    got = cb.encode(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, brute_force(table, x))


def test_codebook_conventions() -> None:
    cb = Codebook("u", (2.0, 0.0, -2.0, 2.0, 1.0))
    assert cb.bits == 3
    x = torch.tensor([1.5, 0.5, -1.0, 2.0, 100.0, -math.inf, math.nan])
    # 1.5: tie of 2.0 (code 0) and 1.0 (code 4) -> 0; 0.5: tie 0.0 (1) / 1.0 (4) -> 1; -1: tie 0 (1) / -2 (2) -> 1
    assert cb.encode(x).tolist() == [0, 1, 1, 0, 0, 2, 1]
    assert torch.isnan(cb.decode(torch.tensor([5, 6, 7]))).all()  # codes past the table
    assert cb.values().tolist() == [2.0, 0.0, -2.0, 2.0, 1.0]
    assert Codebook("r", (0.1,)).table == (float(np.float32(0.1)),)  # values rounded to float32
    for bad in [(), (math.nan,), (math.inf, 1.0), tuple(range(257)), (1e39,)]:
        with pytest.raises(ValueError):
            Codebook("bad", bad)
