"""Per-token and per-channel KV quantisation against an independent numpy transcription, error bounds,
bit-exact fp8 codes, constant / zero / non-finite input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tilec.errors import ArgumentError
from tilec.kv import bits, dequantize, quantize_channels, quantize_tokens, unpack_planes
from tilec.kv.quant import Mode

INT = ["int8", "int4", "int2"]
FP8 = {"fp8_e4m3": (torch.float8_e4m3fn, 448.0), "fp8_e5m2": (torch.float8_e5m2, 57344.0)}


def f16_up(s: np.float32) -> np.float16:
    h = np.float16(s)
    return h if np.float32(h) >= s else np.nextafter(h, np.float16(np.inf))


def reference_int(vec: np.ndarray, b: int) -> tuple[np.ndarray, np.float16, np.float16]:
    """One reduction set (float32), the convention of tilec/kv/quant.py's docstring, scalar by scalar."""
    qmax = np.float32(2**b - 1)
    lo, hi = np.float32(vec.min()), np.float32(vec.max())
    if lo == hi:
        return np.zeros(vec.shape, np.uint8), np.float16(1), np.float16(-lo + np.float32(0))
    amax = max(abs(lo), abs(hi))
    s = f16_up(max(np.float32((hi - lo) / qmax), np.float32(amax / np.float32(1024))))
    z = np.float16(-lo / np.float32(s))
    codes = np.clip(np.rint(vec / np.float32(s) + np.float32(z)), 0, qmax).astype(np.uint8)
    return codes, s, z


def sample(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    x[0] = 100.0 + 0.01 * x[0]  # far from 0 relative to its spread: the scale floor and large zeros
    x[1] = x[1] * 1e-3
    return x.to(dtype)


def unpacked(codes: torch.Tensor, fmt: str, d: int) -> torch.Tensor:
    return unpack_planes(codes, bits(fmt), d)


@pytest.mark.parametrize("fmt", INT)
def test_tokens_match_reference(fmt: str) -> None:
    x = sample((4, 3, 32), 1)
    codes, scale, zero = quantize_tokens(x, fmt)
    assert codes.shape == (4, 3, 32 // (8 // bits(fmt))) and scale.shape == (4, 3) and zero is not None
    assert scale.dtype == zero.dtype == torch.float16
    q = unpacked(codes, fmt, 32)
    xn = x.float().numpy()
    for t in range(4):
        for h in range(3):
            rc, rs, rz = reference_int(xn[t, h], bits(fmt))
            assert q[t, h].numpy().tolist() == rc.tolist()
            assert scale[t, h].numpy().tobytes() == rs.tobytes() and zero[t, h].numpy().tobytes() == rz.tobytes()


@pytest.mark.parametrize("fmt", INT)
def test_channels_match_reference(fmt: str) -> None:
    x = sample((2, 16, 3, 8), 2)  # [groups, G, HK, D]
    codes, scale, zero = quantize_channels(x, fmt)
    assert scale.shape == (2, 3, 8) and zero is not None and zero.shape == (2, 3, 8)
    q = unpacked(codes, fmt, 8)
    xn = x.float().numpy()
    for gi in range(2):
        for h in range(3):
            for c in range(8):  # scale tensors in natural channel order
                rc, rs, rz = reference_int(xn[gi, :, h, c], bits(fmt))
                assert q[gi, :, h, c].numpy().tolist() == rc.tolist()
                assert scale[gi, h, c].item() == float(rs) and zero[gi, h, c].item() == float(rz)


@pytest.mark.parametrize("fmt", INT)
@pytest.mark.parametrize("mode", ["token", "channel"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_int_error_within_half_a_step(fmt: str, mode: Mode, dtype: torch.dtype) -> None:
    x = sample((8, 32, 4, 64), 3, dtype)
    quant = quantize_tokens if mode == "token" else quantize_channels
    codes, scale, zero = quant(x, fmt)
    assert zero is not None
    q = unpacked(codes, fmt, 64)
    assert int(q.max()) <= 2 ** bits(fmt) - 1
    err = (dequantize(codes, scale, zero, fmt, mode) - x.float()).abs()
    axis = -1 if mode == "token" else -3
    s, z = scale.float().unsqueeze(axis), zero.float().unsqueeze(axis)
    # The scale floor keeps |zero| <= 1024, so no code clamps and rounding x / s + z is off by at most 1/2
    # (tilec/kv/quant.py). float32 adds: x / s and + z each round (relative 2**-24 of |x / s| + |z| + qmax,
    # which can move a value just across a .5 boundary), and (code - z) * s rounds once more.
    assert float(z.abs().max()) <= 1024
    slack = (x.float().abs() / s + z.abs() + 2 ** bits(fmt)) * 2.0**-22
    assert bool((err <= s * (0.5 + slack)).all())


@pytest.mark.parametrize("fmt", list(FP8))
@pytest.mark.parametrize("mode", ["token", "channel"])
def test_fp8_bit_exact(fmt: str, mode: Mode) -> None:
    dtype, fmax = FP8[fmt]
    x = sample((8, 32, 4, 64), 4) * 7
    quant = quantize_tokens if mode == "token" else quantize_channels
    codes, scale, zero = quant(x, fmt)
    assert zero is None and codes.dtype == dtype and codes.shape == x.shape
    axis = -1 if mode == "token" else -3
    s = scale.float().unsqueeze(axis)
    want = (x.float() / s).clamp(-fmax, fmax).to(dtype)
    assert torch.equal(codes.view(torch.uint8), want.view(torch.uint8))
    assert torch.equal(dequantize(codes, scale, None, fmt, mode), codes.float() * s)
    # The scale is amax / fmax rounded up to float16: never saturating, and the next float16 down would.
    amax = x.float().abs().amax(dim=axis)
    assert bool((scale.float() >= amax / fmax).all())
    below = (scale.view(torch.int16) - 1).view(torch.float16).float()
    assert bool((below < amax / fmax).all())


@pytest.mark.parametrize("fmt", [*INT, *FP8])
@pytest.mark.parametrize("mode", ["token", "channel"])
def test_constant_and_zero_sets(fmt: str, mode: Mode) -> None:
    values = torch.tensor([0.0, 1.0, -3.5, 1e-5, -6e4, 0.1], dtype=torch.float16)
    x = values.view(-1, 1, 1).expand(6, 16, 8).contiguous()  # [T=6, HK=16, D=8]: constant over D
    if mode == "channel":
        x = values.view(1, -1, 1).expand(16, 6, 8).contiguous()  # [G=16, HK=6, D=8]: constant over G
    quant = quantize_tokens if mode == "token" else quantize_channels
    codes, scale, zero = quant(x, fmt)
    out = dequantize(codes, scale, zero, fmt, mode)
    assert not bool(out.isnan().any())
    zeros = x == 0
    assert bool((out[zeros] == 0).all())
    if fmt in INT:  # scale 1, zero -c, code 0: exact for float16 data
        assert torch.equal(out, x.float())
    else:  # an fp8 code has 4 (e4m3) / 3 (e5m2) significant bits
        rel = 2.0**-4 if fmt == "fp8_e4m3" else 2.0**-3
        assert bool(((out - x.float()).abs() <= rel * x.float().abs()).all())


def test_all_zero_set_stores_unit_scale() -> None:
    codes, scale, zero = quantize_tokens(torch.zeros(2, 3, 16), "int4")
    assert bool((scale == 1).all()) and zero is not None and bool((zero == 0).all()) and not bool(zero.signbit().any())
    assert bool((codes == 0).all())
    _, scale8, _ = quantize_tokens(torch.zeros(2, 3, 16), "fp8_e4m3")
    assert bool((scale8 == 1).all())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("fmt", ["int4", "fp8_e4m3"])
def test_non_finite_raises(bad: float, fmt: str) -> None:
    x = torch.randn(4, 2, 16)
    x[1, 1, 3] = bad
    with pytest.raises(ArgumentError, match="NaN or infinity"):
        quantize_tokens(x, fmt)
    with pytest.raises(ArgumentError, match="NaN or infinity"):
        quantize_channels(x, fmt)


def test_overflowing_scale_and_bad_shapes_raise() -> None:
    with pytest.raises(ArgumentError, match="overflows float16"):
        quantize_tokens(torch.tensor([[-1e30, 1e30]]), "int8")
    with pytest.raises(ArgumentError, match="multiple of 4"):
        quantize_tokens(torch.randn(2, 3, 10), "int2")
    with pytest.raises(ArgumentError, match="floating"):
        quantize_tokens(torch.zeros(2, 8, dtype=torch.int32), "int8")
    codes, scale, zero = quantize_tokens(torch.randn(2, 3, 16), "int4")
    with pytest.raises(ArgumentError, match="does not fit"):
        dequantize(codes, scale[:1], zero, "int4", "token")
    with pytest.raises(ArgumentError, match="zero point"):
        dequantize(codes, scale, None, "int4", "token")
    with pytest.raises(ArgumentError, match="mode"):
        dequantize(codes, scale, zero, "int4", "tokens")  # type: ignore[arg-type]
