"""Quantise and dequantise KV-cache vectors: per token (one scale per token and head, over the D channels)
or per channel (KIVI keys: one scale per channel, over a group of G consecutive tokens).

Integer formats (``int8``, ``int4``, ``int2``; ``qmax = 2**b - 1``), over each reduction set ``x``
(computed in float32; ``s``, ``z`` below are the float16 values **as stored**)::

    lo, hi = min(x), max(x);  amax = max(|lo|, |hi|)
    s = f16_round_up(max((hi - lo) / qmax, amax / 1024))
    z = f16(-lo / s)
    code = clamp(round(x / s + z), 0, qmax)          # round half to even (torch.round)
    x ~= (code - z) * s                               # float32, exactly what a kernel computes

- The scale is rounded **up** to float16, so ``(hi - lo) / s <= qmax``: the codes span the data and the stored
  scale is never the reason a code clamps.
- The floor ``amax / 1024`` bounds ``|z| <= 1024``. float16 represents such a zero within 0.25 (its spacing
  below 1024 is at most 0.5), so ``lo / s + z`` lies in ``[-0.25, 0.25]`` and ``hi / s + z`` at most
  ``qmax + 0.25``: no element is clamped and every element is within ``s / 2`` of its dequantised value.
  Without the floor, data far from 0 relative to its spread (``hi - lo`` below ``amax * qmax / 1024``) would
  need a zero beyond float16's range or precision; with it, such data costs resolution instead (error
  at most ``amax / 2048``, about the float16 spacing of the data itself).
- Constant sets (``hi == lo == c``, all-zero included) store ``s = 1, z = f16(-c)``: every code is 0 and
  dequantises to ``f16(c)``, exactly ``c`` for float16-representable data (and 0 for zeros).

fp8 formats (``fp8_e4m3`` = torch.float8_e4m3fn, ``fmax = 448``; ``fp8_e5m2``, ``fmax = 57344``)::

    s = f16_round_up(amax / fmax)  (amax == 0: s = 1);   code = fp8(clamp(x / s, -fmax, fmax));   x ~= code * s

No zero point. Non-finite input, or a scale or zero beyond float16's range, raises ArgumentError.

Codes are returned in the storage layout (`tilec.kv.layout`): split-plane uint8 bytes [..., D // P] for
the integer formats, the float8 dtype [..., D] for fp8.
"""

from __future__ import annotations

from typing import Literal

import torch

from tilec.errors import ArgumentError
from tilec.kv.layout import FP8_DTYPES, FP8_MAX, bits, check_format, pack_planes, packed_dim, unpack_planes

Mode = Literal["token", "channel"]
#: amax / ZERO_BOUND floors the integer scale, so that |zero| <= ZERO_BOUND (see the module docstring).
ZERO_BOUND = 1024.0


def _f16_round_up(s: torch.Tensor) -> torch.Tensor:
    """float32 s >= 0 -> the smallest float16 >= s (positive float16 bit patterns increase with value)."""
    h = s.to(torch.float16)
    below = (h.to(torch.float32) < s).to(torch.int16)
    return (h.view(torch.int16) + below).view(torch.float16)


def _as_f32(x: torch.Tensor, what: str, min_dim: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < min_dim:
        raise ArgumentError(f"{what} takes a floating tensor with at least {min_dim} dims, got {x!r:.80}")
    x32 = x.detach().to(torch.float32)
    if not bool(torch.isfinite(x32).all()):
        raise ArgumentError(f"{what}: the input contains NaN or infinity")
    return x32


def _check_stored(t: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ArgumentError(f"KV quantisation: a {what} overflows float16 (|x| too large for this format)")


def _quantize(x: torch.Tensor, fmt: str, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantise float32 ``x`` [..., D] over axis ``dim``; scale/zero keep ``dim`` (size 1)."""
    one = torch.ones((), dtype=torch.float16, device=x.device)
    if fmt in FP8_DTYPES:
        fmax = FP8_MAX[fmt]
        amax = x.abs().amax(dim=dim, keepdim=True)
        scale = torch.where(amax == 0, one, _f16_round_up(amax / fmax))
        _check_stored(scale, "scale")
        q = (x / scale.to(torch.float32)).clamp(-fmax, fmax).to(FP8_DTYPES[fmt])
        return q, scale, None
    qmax = float(2 ** bits(fmt) - 1)
    packed_dim(x.shape[-1], bits(fmt))
    lo = x.amin(dim=dim, keepdim=True)
    hi = x.amax(dim=dim, keepdim=True)
    amax = torch.maximum(lo.abs(), hi.abs())
    const = hi == lo
    scale = torch.where(const, one, _f16_round_up(torch.maximum((hi - lo) / qmax, amax / ZERO_BOUND)))
    _check_stored(scale, "scale")
    s = scale.to(torch.float32)
    # + 0.0 turns the zero of an all-zero set from -0.0 into +0.0.
    zero = torch.where(const, -lo, -lo / s).add(0.0).to(torch.float16)
    _check_stored(zero, "zero point")
    q = torch.round(x / s + zero.to(torch.float32)).clamp_(0.0, qmax).to(torch.uint8)
    return pack_planes(q, bits(fmt)), scale, zero


def quantize_tokens(x: torch.Tensor, fmt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per token: ``x`` [..., HK, D] float -> ``(codes [..., HK, D // P], scale [..., HK], zero [..., HK] | None)``.

    scale and zero are float16; zero is None for fp8. One scale per head vector (reduction over D).
    """
    fmt = check_format(fmt)
    x32 = _as_f32(x, "quantize_tokens", 2)
    codes, scale, zero = _quantize(x32, fmt, -1)
    return codes, scale.squeeze(-1), None if zero is None else zero.squeeze(-1)


def quantize_channels(x: torch.Tensor, fmt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per channel over a group of tokens: ``x`` [..., G, HK, D] float ->
    ``(codes [..., G, HK, D // P], scale [..., HK, D], zero [..., HK, D] | None)``.

    One scale (and zero) per channel and head, over the G tokens; channels in natural order 0..D-1.
    """
    fmt = check_format(fmt)
    x32 = _as_f32(x, "quantize_channels", 3)
    codes, scale, zero = _quantize(x32, fmt, -3)
    return codes, scale.squeeze(-3), None if zero is None else zero.squeeze(-3)


def dequantize(
    codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, fmt: str, mode: Mode = "token"
) -> torch.Tensor:
    """The reference dequantisation, float32: ``(code - zero) * scale`` (fp8: ``code * scale``).

    Shapes as `quantize_tokens` returns them (``mode="token"``: codes [..., HK, D // P], scale [..., HK]) or
    as `quantize_channels` does (``mode="channel"``: codes [..., G, HK, D // P], scale [..., HK, D]).
    Returns [..., HK, D] / [..., G, HK, D] float32. Arithmetic is float32 from the stored float16 scale and
    zero, the same operations in the same order as the kernel's, so the result is bit-exact.  (Decode
    attention does not dequantise like this: per-token keys and values are folded out of its tiles, and
    per-channel keys take ``code - zero`` in float16, one rounding of at most 2**-11 relative;
    tilec/ops_decode_spec.py.  Its tests bound its error against this reference.)
    """
    fmt = check_format(fmt)
    if mode not in ("token", "channel"):
        raise ArgumentError(f"dequantize: mode must be 'token' or 'channel', got {mode!r}")
    fp8 = fmt in FP8_DTYPES
    if fp8:
        if codes.dtype != FP8_DTYPES[fmt]:
            raise ArgumentError(f"dequantize: {fmt} codes must be {FP8_DTYPES[fmt]}, got {codes.dtype}")
        if zero is not None:
            raise ArgumentError(f"dequantize: {fmt} has no zero point, got one")
        q = codes.to(torch.float32)
    else:
        if zero is None:
            raise ArgumentError(f"dequantize: {fmt} needs a zero point")
        q = unpack_planes(codes, bits(fmt), codes.shape[-1] * (8 // bits(fmt))).to(torch.float32)
    want = q.shape[:-1] if mode == "token" else (*q.shape[:-3], *q.shape[-2:])
    if codes.dim() < (2 if mode == "token" else 3) or tuple(scale.shape) != tuple(want):
        raise ArgumentError(f"dequantize ({mode}): scale {tuple(scale.shape)} does not fit codes {tuple(q.shape)}")
    if zero is not None and zero.shape != scale.shape:
        raise ArgumentError(f"dequantize: zero shape {tuple(zero.shape)} differs from scale {tuple(scale.shape)}")
    axis = -1 if mode == "token" else -3
    s = scale.to(torch.float32).unsqueeze(axis)
    if zero is not None:
        q = q - zero.to(torch.float32).unsqueeze(axis)
    return q * s
