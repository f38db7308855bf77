"""OCP MX v1.0 block formats: crafted blocks, the scale rule, error bounds, and an independent reference."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

import tilec.formats as F
from tilec.formats import dequantize_mx, quantize_mx

# From the OCP MX v1.0 spec (section 5.3 tables), written out here rather than taken from tilec:
# element type, largest normal, emax_elem (exponent of the largest normal), element mantissa bits.
SPEC = {
    "mxfp4": (ml_dtypes.float4_e2m1fn, 6.0, 2, 1),
    "mxfp6_e2m3": (ml_dtypes.float6_e2m3fn, 7.5, 2, 3),
    "mxfp6_e3m2": (ml_dtypes.float6_e3m2fn, 28.0, 4, 2),
    "mxfp8_e4m3": (ml_dtypes.float8_e4m3fn, 448.0, 8, 3),
    "mxfp8_e5m2": (ml_dtypes.float8_e5m2, 57344.0, 15, 2),
    "mxint8": (None, 127 / 64, 0, 6),
}
NAMES = list(SPEC)


def reference(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A straightforward per-block transcription of the spec's conversion (section 6.3): codes, scales."""
    dtype, max_normal, emax_elem, _ = SPEC[name]
    rows, n = x.shape
    codes = np.zeros((rows, n), np.uint8)
    scales = np.zeros((rows, -(-n // 32)), np.uint8)
    for r in range(rows):
        for b in range(0, n, 32):
            v = x[r, b : b + 32].astype(np.float64)
            if not np.isfinite(v).all():
                scales[r, b // 32] = 255
                # the spec fixes only the scale; tilec's elements are the element format's NaN (all ones) or 0
                codes[r, b : b + 32] = 0x7F if name in ("mxfp8_e4m3", "mxfp8_e5m2") else 0
                continue
            amax = float(np.abs(v).max())
            shared_exp = -127 if amax == 0 else max(math.floor(math.log2(amax)) - emax_elem, -127)
            scales[r, b // 32] = shared_exp + 127
            p = np.clip(v / 2.0**shared_exp, -max_normal, max_normal)  # quantize with saturation
            if dtype is None:  # INT8 with an implicit 2**-6
                codes[r, b : b + 32] = np.clip(np.rint(p * 64), -128, 127).astype(np.int64) & 0xFF
            else:
                codes[r, b : b + 32] = p.astype(np.float32).astype(dtype).view(np.uint8)
    return codes, scales


def crafted() -> np.ndarray:
    """Rows of 64: two blocks each."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((12, 64)).astype(np.float32)
    g[0] = 0.0  # all-zero blocks
    g[1, :32] = -0.0
    g[2] = np.float32(1e-40) * rng.integers(-100, 100, 64)  # float32 subnormals only
    g[3, :32] = rng.uniform(-1, 1, 32) * 2.0**-130
    g[4, 5] = 448.0 * 2.0**-3  # the e4m3 maximum exactly, at scale 2**-3
    g[5, 7] = 511.9  # just below a power of two: saturates in e4m3
    g[6, 3] = 1e4  # one large outlier
    g[7, 1] = np.nan  # a NaN in the first block only
    g[8, 40] = -np.inf
    g[9, :32] = 3.4e38  # largest float32 exponent
    g[10, 0] = 2.0**127
    g[11] = np.float32(2.0**-126) * rng.uniform(0.5, 2, 64)
    return g


@pytest.mark.parametrize("name", NAMES)
def test_crafted_blocks_match_reference(name: str) -> None:
    x = crafted()
    codes, scales = quantize_mx(torch.from_numpy(x), name)
    ref_codes, ref_scales = reference(x, name)
    assert codes.dtype == scales.dtype == torch.uint8 and codes.shape == (12, 64) and scales.shape == (12, 2)
    assert np.array_equal(scales.numpy(), ref_scales)
    assert np.array_equal(codes.numpy(), ref_codes)
    assert scales[0].tolist() == [0, 0] and codes[0].eq(0).all()  # all-zero block: scale code 0 (2**-127)
    assert scales[7].tolist() == [255, ref_scales[7, 1]] and scales[8, 1] == 255  # NaN / inf -> NaN scale
    y = dequantize_mx(codes, scales, name)
    assert torch.isnan(y[7, :32]).all() and not torch.isnan(y[7, 32:]).any()
    assert torch.isnan(y[8, 32:]).all()


@pytest.mark.parametrize("name", NAMES)
def test_random_match_reference(name: str) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((16, 200)) * np.exp(rng.uniform(-20, 20, (16, 1)))).astype(np.float32)
    codes, scales = quantize_mx(torch.from_numpy(x), name)  # 200 = 6 blocks + a partial block of 8
    ref_codes, ref_scales = reference(x, name)
    assert scales.shape == (16, 7)
    assert np.array_equal(scales.numpy(), ref_scales) and np.array_equal(codes.numpy(), ref_codes)


def test_scale_rule_examples() -> None:
    x = torch.zeros(1, 32)
    x[0, 0] = 448.0 * 2.0**-3
    c, s = quantize_mx(x, "mxfp8_e4m3")
    assert s.item() == 127 - 3 and c[0, 0].item() == 0x7E  # the maximum maps to the element max
    x[0, 0] = 511.9  # floor(log2) = 8 -> scale 2**0, and 511.9 saturates to 448
    c, s = quantize_mx(x, "mxfp8_e4m3")
    assert s.item() == 127 and c[0, 0].item() == 0x7E
    c, s = quantize_mx(x, "mxfp8_e5m2")  # e5m2 saturates too, instead of rounding to inf
    x[0, 0] = 65535.0
    c, s = quantize_mx(x * 2.0**-15, "mxfp8_e5m2")
    assert s.item() == 127 - 15 and c[0, 0].item() == 0x7B
    c, s = quantize_mx(torch.full((1, 32), -1.999), "mxint8")  # two's complement -128 (-2.0) is used
    assert s.item() == 127 and c[0, 0].item() == 0x80
    c, s = quantize_mx(torch.full((1, 32), 1.999), "mxint8")
    assert c[0, 0].item() == 0x7F  # saturates at 127/64


EMIN = {"mxfp4": 0, "mxfp6_e2m3": 0, "mxfp6_e3m2": -2, "mxfp8_e4m3": -6, "mxfp8_e5m2": -14}  # 1 - bias


@pytest.mark.parametrize("name", NAMES)
def test_dequantize_error_bounds(name: str) -> None:
    _, max_normal, emax_elem, m = SPEC[name]
    rng = np.random.default_rng(2)
    x = torch.from_numpy((rng.standard_normal((64, 256)) * np.exp(rng.uniform(-8, 8, (64, 1)))).astype(np.float32))
    codes, scales = quantize_mx(x, name)
    y = dequantize_mx(codes, scales, name)
    assert y.dtype == torch.float32 and y.shape == x.shape
    X = torch.exp2(scales.double() - 127).float().repeat_interleave(32, dim=-1)
    err, a = (x - y).abs(), (x / X).abs()
    if name == "mxint8":
        assert (err[a <= max_normal] <= X[a <= max_normal] * 2.0**-7).all()  # half a step of 2**-6
        assert (err <= X * 2.0**-6).all()  # |x / X| < 2: saturation costs less than a step
        return
    assert (err <= X * max(2.0 ** (emax_elem - m - 1), 2.0 ** (emax_elem + 1) - max_normal)).all()
    normal = (a >= 2.0 ** EMIN[name]) & (a <= max_normal)
    assert (err[normal] <= x.abs()[normal] * 2.0 ** -(m + 1)).all()  # relative: half an ulp
    assert (err[~normal & (a < 1)] <= X[~normal & (a < 1)] * 2.0 ** (EMIN[name] - m - 1)).all()  # subnormal step
    assert dequantize_mx(codes, scales, name, torch.bfloat16).dtype == torch.bfloat16


def test_shapes_and_errors() -> None:
    x = torch.randn(2, 3, 40)
    codes, scales = F.mxfp4.quantize(x)
    assert codes.shape == (2, 3, 40) and scales.shape == (2, 3, 2)
    assert torch.equal(dequantize_mx(codes, scales, F.mxfp4), F.mxfp4.dequantize(codes, scales))
    assert [F.get(n).emax_elem for n in NAMES] == [SPEC[n][2] for n in NAMES]  # type: ignore[union-attr]
    assert F.mxint8.max == 127 / 64 and F.mxfp6_e2m3.bits == 6
    with pytest.raises(ValueError, match="unknown MX format"):
        quantize_mx(x, "mxfp3")
    with pytest.raises(ValueError, match="does not match"):
        dequantize_mx(codes, scales[..., :1], "mxfp4")
    with pytest.raises(ValueError):
        quantize_mx(torch.zeros(2, 0), "mxfp4")
    # bf16 / fp16 / float64 inputs go through float32
    h = torch.randn(4, 64, dtype=torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(quantize_mx(h, "mxfp8_e4m3"), quantize_mx(h.float(), "mxfp8_e4m3")))
