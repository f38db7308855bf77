"""Two-level (QServe progressive) quantisation: an independent reference, the int8 guarantee, SQNR, errors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import tilec
from tilec.formats.two_level import dequantize_two_level, protective_range, quantize_two_level, second_level


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    return 10 * math.log10((ref.double() ** 2).sum().item() / ((ref.double() - approx.double()) ** 2).sum().item())


def _round_half_even(x: Fraction) -> int:
    floor = math.floor(x)
    rest = x - floor
    if rest != Fraction(1, 2):
        return floor + (1 if rest > Fraction(1, 2) else 0)
    return floor if floor % 2 == 0 else floor + 1


def _reference(w: np.ndarray, bits: int, g: int) -> tuple[list[list[int]], list[list[int]], list[list[int]], list]:
    """The module docstring's convention, element by element, in numpy float32 (level 1) and exact fractions."""
    p, qmax = protective_range(bits), 2**bits - 1
    codes, s2s, zs, s1s = [], [], [], []
    for row in w.astype(np.float32):
        s1 = np.float16(np.abs(row).max() / np.float32(p))  # amax / P in float32, stored as float16
        s1 = np.float16(1.0) if s1 == 0 else s1
        q8 = [int(min(max(np.rint(v / np.float32(s1)), -p), p)) for v in row]
        crow, srow, zrow = [], [], []
        for start in range(0, len(q8), g):
            grp = q8[start:start + g]
            lo, hi = min(min(grp), 0), max(max(grp), 0)
            s2 = max(1, _round_half_even(Fraction(hi - lo, qmax)))
            z = min(max(_round_half_even(Fraction(-lo, s2)), 0), qmax)
            crow += [min(max(_round_half_even(Fraction(v, s2)) + z, 0), qmax) for v in grp]
            srow.append(s2)
            zrow.append(z)
        codes.append(crow)
        s2s.append(srow)
        zs.append(zrow)
        s1s.append(s1)
    return codes, s2s, zs, s1s


@pytest.mark.parametrize("bits,g", [(4, 32), (4, 128), (2, 16), (7, 48)])
def test_matches_an_independent_reference_bit_exactly(bits: int, g: int) -> None:
    gen = torch.Generator().manual_seed(bits * 100 + g)
    w = torch.randn(6, 150, generator=gen) * torch.rand(6, 1, generator=gen) * 3  # 150: a partial last group
    w[2, :] = 0.0  # an all-zero channel: s1 = 1, codes = zero points
    w[3, 40:100] = 0.0
    codes, s2, z, s1 = quantize_two_level(w, f"uint{bits}", g)
    ref_codes, ref_s2, ref_z, ref_s1 = _reference(w.numpy(), bits, g)
    assert codes.tolist() == ref_codes and s2.tolist() == ref_s2 and z.tolist() == ref_z
    assert s1.dtype == torch.float16 and s1.tolist() == [float(v) for v in ref_s1]


@pytest.mark.parametrize("bits", range(1, 9))
def test_second_level_is_always_int8_exhaustively(bits: int) -> None:
    """Every group range [lo, hi] in the protective range and every value in it: (q - z) * s2 in [-127, 127]."""
    p, qmax = protective_range(bits), 2**bits - 1
    lo = torch.arange(-p, 1).view(-1, 1, 1).double()
    hi = torch.arange(0, p + 1).view(1, -1, 1).double()
    q8 = torch.arange(-p, p + 1).view(1, 1, -1).double()
    s2 = torch.round((hi - lo) / qmax).clamp(min=1)
    z = torch.round(-lo / s2).clamp(0, qmax)
    q = (torch.round(q8 / s2) + z).clamp(0, qmax)
    inside = (q8 >= lo) & (q8 <= hi)
    r = ((q - z) * s2)[inside.expand_as(q)]
    assert r.abs().max().item() <= 127
    if bits < 8:  # P is the largest such range: P + 1 breaks the bound
        p1 = p + 1
        assert p1 + max(1, round(2 * p1 / qmax)) // 2 > 127
    assert protective_range(4) == 119  # QServe's protective range for 4-bit codes


def test_quantize_api_round_trip_and_identities() -> None:
    gen = torch.Generator().manual_seed(11)
    w = torch.randn(33, 300, generator=gen)
    qt = tilec.quantize(w, "uint4", group_size=128, two_level=True)
    assert qt.scheme == "two_level" and qt.format == "uint4" and qt.shape == (33, 300) and qt.group_size == 128
    assert qt.scales.dtype == torch.uint8 and qt.scales.shape == (33, 3)
    assert qt.zeros is not None and qt.zeros.dtype == torch.uint8 and qt.zeros.shape == (33, 3)
    assert qt.channel_scales is not None and qt.channel_scales.dtype == torch.float16
    codes, s2, z, s1 = quantize_two_level(w, "uint4", 128)
    assert torch.equal(qt.codes(), codes)  # packing round trip
    assert torch.equal(qt.scales, s2) and torch.equal(qt.zeros, z) and torch.equal(qt.channel_scales, s1)
    levels = second_level(codes, s2, z, 128)
    assert levels.dtype == torch.int8 and levels.abs().max() <= 127
    exact = (codes.long() - z.long().repeat_interleave(128, 1)[:, :300]) * s2.long().repeat_interleave(128, 1)[:, :300]
    assert torch.equal(levels.long(), exact)  # (q - z) * s2, computed in int64 here
    deq = qt.dequantize()
    assert torch.equal(deq, (levels.double() * s1.double()[:, None]).float())  # one f32 rounding of s1 * int8
    assert torch.equal(qt.dequantize(torch.float16), deq.half())
    assert torch.equal(dequantize_two_level(codes, s2, z, s1, 128), deq)
    # element error: level 1 rounds by s1 / 2 (plus the float16 rounding of s1), level 2 by at most (s2 + 15) / 2
    s2_full = s2.double().repeat_interleave(128, 1)[:, :300]
    bound = s1.double()[:, None] * (0.5 + (s2_full + 15) / 2 + 119 * 2**-10)
    assert ((w.double() - deq.double()).abs() <= bound).all()
    moved = qt.to("cpu")
    assert moved.channel_scales is not None and torch.equal(moved.channel_scales, s1)
    assert qt.nbytes == sum(t.numel() * t.element_size() for t in (*qt.packed, s2, z, s1))
    assert "two_level" in repr(qt)


def test_scale_dtype_and_sqnr_near_int4_group128() -> None:
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(512, 2048, generator=gen)
    qt = tilec.quantize(w, "uint4", group_size=128, two_level=True, scale_dtype=torch.float32)
    assert qt.channel_scales is not None and qt.channel_scales.dtype == torch.float32
    two_level = sqnr_db(w, qt.dequantize())
    affine = sqnr_db(w, tilec.quantize(w, "uint4", group_size=128).dequantize())
    assert 19.5 <= two_level <= affine  # measured 19.85 dB; affine uint4 g128 19.95 dB
    assert affine - two_level < 0.3


def test_bad_arguments_are_rejected() -> None:
    w = torch.randn(4, 64)
    with pytest.raises(ValueError, match="unsigned integer format"):
        tilec.quantize(w, "int4", group_size=32, two_level=True)
    with pytest.raises(ValueError, match="unsigned integer format"):
        tilec.quantize(w, "fp4_e2m1", group_size=32, two_level=True)
    with pytest.raises(ValueError, match="asymmetric"):
        tilec.quantize(w, "uint4", group_size=32, two_level=True, symmetric=True)
    with pytest.raises(ValueError, match="group_size"):
        tilec.quantize(w, "uint4", group_size=8, two_level=True)
    with pytest.raises(ValueError, match="NaN or infinity"):
        tilec.quantize(torch.full((4, 64), float("nan")), "uint4", group_size=32, two_level=True)
    with pytest.raises(ValueError, match="2-D"):
        tilec.quantize(torch.randn(64), "uint4", two_level=True)
    with pytest.raises(ValueError, match="overflows"):
        tilec.quantize(torch.full((2, 32), 1e9), "uint4", group_size=32, two_level=True)
    with pytest.raises(ValueError, match="scale_dtype"):
        tilec.quantize(w, "uint4", group_size=32, two_level=True, scale_dtype=torch.int8)
    codes, s2, z, _ = quantize_two_level(w, "uint4", 32)
    with pytest.raises(ValueError, match="exceeds 127"):
        second_level(codes, torch.full_like(s2, 200), z, 32)
