"""Shared helpers of the format tests: independent references (ml_dtypes, torch) and edge-case inputs."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import torch

from tilec.formats import minifloat

F32_TINY = np.float32(2.0**-149)

# Our named minifloats and ml_dtypes' types (independent reference implementations), plus conventions we
# only reach through minifloat() that ml_dtypes also implements.
ML_DTYPES = {
    "fp4_e2m1": ml_dtypes.float4_e2m1fn,
    "fp6_e2m3": ml_dtypes.float6_e2m3fn,
    "fp6_e3m2": ml_dtypes.float6_e3m2fn,
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
}
EXTRA_MINIFLOATS = [
    (minifloat(4, 3, bias=8, nan="neg_zero", inf=False), ml_dtypes.float8_e4m3fnuz),
    (minifloat(5, 2, bias=16, nan="neg_zero", inf=False), ml_dtypes.float8_e5m2fnuz),
    (minifloat(4, 3, bias=11, nan="neg_zero", inf=False), ml_dtypes.float8_e4m3b11fnuz),
    (minifloat(4, 3), ml_dtypes.float8_e4m3),  # IEEE-like e4m3 (max 240, with inf)
    (minifloat(3, 4), ml_dtypes.float8_e3m4),
]
TORCH_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def torch_e4m3_saturates() -> bool:
    """torch >= 2.13 saturates finite overflow (and inf) when casting to float8_e4m3fn; older versions give NaN."""
    return bool(torch.tensor([1e9]).to(torch.float8_e4m3fn).float().item() == 448.0)


def f32(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def around(points: np.ndarray) -> np.ndarray:
    """``points`` and their float32 neighbours on both sides."""
    p = points.astype(np.float32)
    return np.concatenate([p, np.nextafter(p, np.float32(np.inf)), np.nextafter(p, np.float32(-np.inf))])


def edge_inputs(mags: list[float], overflow_at: float | None = None) -> np.ndarray:
    """Every value (both signs), every midpoint between consecutive magnitudes, their float32 neighbours,
    overflow and underflow points, +-0, +-inf and NaN: the inputs where a rounding rule shows."""
    m = np.array(mags, dtype=np.float64)
    mids = (m[:-1] + m[1:]) / 2
    top = m[-1]
    nxt = math.ldexp(1.0, math.frexp(top)[1])  # next power of two above max
    over = [top * 1.01, (top + nxt) / 2, nxt, 2 * nxt, 1e30, 3.4e38]
    if overflow_at is not None:
        over.append(overflow_at)
    under = [m[1] / 2, m[1] / 4, m[1] * 0.75, 1e-30, 1e-40, float(F32_TINY)]
    pos = np.concatenate([around(f32(m)), around(f32(mids)), around(f32(over)), around(f32(under))])
    special = f32([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan])
    return np.concatenate([pos, -pos, special])


def random_inputs(n: int, scale: float, seed: int) -> np.ndarray:
    """Half random float32 bit patterns (every class: NaN, inf, subnormal ...), half scaled normals."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, n // 2, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = (rng.standard_normal(n - n // 2) * scale).astype(np.float32)
    return np.concatenate([bits, normal])


def assert_same_codes(table: np.ndarray, mine: np.ndarray, ref: np.ndarray, x: np.ndarray) -> None:
    """Codes equal bit for bit, except that two NaN codes count as equal."""
    both_nan = np.isnan(table[mine.astype(np.int64)]) & np.isnan(table[ref.astype(np.int64)])
    bad = (mine != ref) & ~both_nan
    if bad.any():
        i = np.nonzero(bad)[0][:8]
        raise AssertionError(f"{bad.sum()} mismatches, e.g. x={x[i]!r} mine={mine[i]!r} ref={ref[i]!r}")


def sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return float(10 * torch.log10((x * x).sum() / ((x - y) ** 2).sum()))
