"""Affine group quantisation against a per-group numpy transcription of the convention."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

import tilec.formats as F
from tilec.formats import AffineFormat, dequantize_affine, quantize_affine

NP_SCALE = {torch.float16: np.float16, torch.bfloat16: ml_dtypes.bfloat16, torch.float32: np.float32}


def reference(w: np.ndarray, bits: int, g: int, symmetric: bool, sdt: torch.dtype) -> tuple:
    """Group by group, float32: symmetric scale = amax / qmax; asymmetric over [min(w, 0), max(w, 0)]."""
    rows, n = w.shape
    ng = -(-n // g)
    codes = np.zeros((rows, n), np.uint8)
    scales = np.zeros((rows, ng), np.float32)
    zeros = np.zeros((rows, ng), np.uint8)
    for r in range(rows):
        for j in range(ng):
            v = w[r, j * g : (j + 1) * g].astype(np.float32)
            if symmetric:
                qmax = 2 ** (bits - 1) - 1
                scale = np.float32(np.abs(v).max() / np.float32(qmax))
            else:
                qmax = 2**bits - 1
                lo, hi = min(v.min(), np.float32(0)), max(v.max(), np.float32(0))
                scale = np.float32((hi - lo) / np.float32(qmax))
            s = np.float32(np.array(scale).astype(NP_SCALE[sdt]).astype(np.float32))
            s = np.float32(1.0) if s == 0 else s
            scales[r, j] = s
            if symmetric:
                q = np.clip(np.rint(v / s), -(2 ** (bits - 1)), qmax).astype(np.int64) & (2**bits - 1)
            else:
                z = np.clip(np.rint(-lo / s), 0, qmax)
                zeros[r, j] = z
                q = np.clip(np.rint(v / s) + z, 0, qmax)
            codes[r, j * g : (j + 1) * g] = q
    return codes, scales, (None if symmetric else zeros)


CASES = [
    ("int4", 32, True, torch.float16), ("uint4", 32, False, torch.float16), ("uint4", 128, False, torch.bfloat16),
    ("int8", 16, True, torch.float32), ("uint8", 300, False, torch.float16), ("uint2", 48, False, torch.float32),
    ("int2", 100, True, torch.bfloat16), ("uint1", 16, False, torch.float16), ("int3", 64, True, torch.float16),
]


@pytest.mark.parametrize(("fmt", "g", "sym", "sdt"), CASES)
def test_matches_reference(fmt: str, g: int, sym: bool, sdt: torch.dtype) -> None:
    rng = np.random.default_rng(g)
    w = (rng.standard_normal((8, 300)) * np.exp(rng.uniform(-3, 3, (8, 1)))).astype(np.float32)
    w[0, :40] = np.abs(w[0, :40])  # all-positive groups: the range still includes 0
    w[1, :] = 0.0  # all-zero groups: scale 1
    codes, scales, zeros = quantize_affine(torch.from_numpy(w), fmt, g, sym, sdt)
    ref_codes, ref_scales, ref_zeros = reference(w, F.get(fmt).bits, g, sym, sdt)  # type: ignore[union-attr]
    assert codes.dtype == torch.uint8 and scales.dtype == sdt and codes.shape == (8, 300)
    assert scales.shape == (8, -(-300 // g))
    assert np.array_equal(codes.numpy(), ref_codes)
    assert np.array_equal(scales.float().numpy(), ref_scales)
    assert scales[1].eq(1).all()
    if sym:
        assert zeros is None
    else:
        assert zeros is not None and zeros.dtype == torch.uint8 and np.array_equal(zeros.numpy(), ref_zeros)
    y = dequantize_affine(codes, scales, zeros, fmt, g)
    q = F.get(fmt).decode(codes).reshape(8, 300)  # type: ignore[union-attr]
    s = scales.float().repeat_interleave(g, dim=-1)[:, :300]
    z = 0 if zeros is None else zeros.float().repeat_interleave(g, dim=-1)[:, :300]
    assert torch.equal(y, (q - z) * s)
    # error: half a step inside the range (the stored scale may be rounded, allow its relative error)
    eps = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23}[sdt]
    qmax = 2 ** (F.get(fmt).bits - (1 if sym else 0)) - 1  # type: ignore[union-attr]
    assert ((torch.from_numpy(w) - y).abs() <= s * (0.5 + eps * (qmax + 1)) + 1e-30).all()


def test_per_channel_and_dataclass() -> None:
    w = torch.randn(4, 40)
    codes, scales, zeros = quantize_affine(w, F.get("uint4"), 40, False, "float16")  # type: ignore[arg-type]
    assert scales.shape == (4, 1) and zeros is not None
    af = AffineFormat(F.get("uint4"), None, False)  # type: ignore[arg-type]
    assert af.name == "uint4_gc_asym_float16"
    c2, s2, z2 = af.quantize(w)
    assert torch.equal(c2, codes) and torch.equal(s2, scales) and z2 is not None and torch.equal(z2, zeros)
    assert torch.equal(af.dequantize(c2, s2, z2), dequantize_affine(codes, scales, zeros, "uint4", 40))
    small = torch.randn(2, 8)  # in < 16: only per channel
    assert quantize_affine(small, "int4", 8, True)[1].shape == (2, 1)


def test_validation() -> None:
    w = torch.randn(4, 64)
    for args in [("int4", 8, True), ("int4", 65, True), ("uint4", 32, True), ("int4", 32, False), ("int1", 32, True)]:
        with pytest.raises(ValueError):
            quantize_affine(w, *args)
    with pytest.raises(TypeError):
        quantize_affine(w, "fp8_e4m3", 32, True)
    with pytest.raises(ValueError, match="scale_dtype"):
        quantize_affine(w, "int4", 32, True, torch.int8)
    w[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        quantize_affine(w, "int4", 32, True)
    with pytest.raises(ValueError, match="overflows"):
        quantize_affine(torch.full((1, 16), 1e6), "int4", 16, True, torch.float16)


def test_round_then_add_zero() -> None:
    # lo = -1, hi = 14: scale 1, zero 1. AWQ's round(w / s) + z differs from round(w / s + z) at ties.
    w = torch.tensor([[-1.0, 14.0, 0.5, 1.5, 2.5, -0.5] + [0.0] * 10])
    codes, scales, zeros = quantize_affine(w, "uint4", 16, False, torch.float32)
    assert scales.item() == 1.0 and zeros is not None and zeros.item() == 1
    assert codes[0, :6].tolist() == [0, 15, 1, 3, 3, 1]
    codes, scales, _ = quantize_affine(torch.tensor([[7.0, 0.5, 1.5, -2.5, -7.0] + [0.0] * 11]), "int4", 16, True)
    assert scales.item() == 1.0 and F.get("int4").decode(codes)[0, :5].tolist() == [7, 0, 2, -2, -7]
