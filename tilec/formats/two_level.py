"""Two-level (progressive) group quantisation, as QServe's W4A8 uses it: the weight's second level
dequantises to *exact int8*, so a W4A8 GEMM's main loop stays on the integer tensor cores.

Convention, for a row ``w`` (``[in]``, float32) of an ``[out, in]`` weight and an unsigned element format
``uintB`` (``qmax = 2**B - 1``), groups of ``g`` consecutive elements along ``in`` (the last group is
partial when ``g`` does not divide ``in``). Rounding is to nearest, ties to even (``torch.round``):

- **level 1, per output channel, to int8 in a protective range** ``[-P, P]``:
  ``s1 = max|w| / P`` stored in ``scale_dtype`` (a stored 0 becomes 1.0; an overflow raises);
  ``q8 = clamp(round(w / s1), -P, P)``.
- **level 2, per group, to uintB with integer scale and zero** (both uint8):
  ``lo = min(min(q8), 0)``, ``hi = max(max(q8), 0)`` (integers); ``s2 = max(1, round((hi - lo) / qmax))``;
  ``z = clamp(round(-lo / s2), 0, qmax)``; ``q = clamp(round(q8 / s2) + z, 0, qmax)``.
- dequantised: ``s1[n] * ((q - z) * s2)``; the integer ``(q - z) * s2`` is what the kernel multiplies.

Why ``(q - z) * s2`` is always an int8 in ``[-127, 127]``: with ``t = round(q8 / s2)``, the stored value is
``clamp(t, -z, qmax - z) * s2``, and the clamp only moves ``t`` towards 0 (the interval contains 0), so its
magnitude is at most ``|t * s2| <= |q8| + floor(s2 / 2) <= P + floor(round(2P / qmax) / 2)``.  ``P`` is the
largest value keeping that at most 127: ``P = 119`` for uint4 (QServe's protective range), 95 for uint2.
Rounding ``s2`` (rather than ceiling it) may clip the top of a group by at most ``(s2 + qmax) / 2`` but
measures better: 19.85 dB against 19.53 dB on Gaussian weights, uint4 g128 (affine uint4 g128: 19.95 dB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilec.formats.affine import _check_group, _groups, _scale_dtype
from tilec.formats.integer import IntFormat

if TYPE_CHECKING:
    import torch


def protective_range(bits: int) -> int:
    """The largest ``P`` such that level-2 values stay in int8: ``P + floor(round(2P / qmax) / 2) <= 127``."""
    qmax = 2**bits - 1
    return max(p for p in range(1, 128) if p + max(1, round(2 * p / qmax)) // 2 <= 127)


def _check_format(fmt: object) -> IntFormat:
    if isinstance(fmt, str):
        from tilec.formats.registry import get

        fmt = get(fmt)
    if not isinstance(fmt, IntFormat) or fmt.signed:
        name = getattr(fmt, "name", fmt)
        raise ValueError(f"two-level quantisation takes an unsigned integer format uint1..uint8, got {name}")
    return fmt


def quantize_two_level(w: torch.Tensor, fmt: IntFormat | str, group_size: int, scale_dtype: object = "float16"
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantise ``w`` ``[out, in]`` (see the module docstring).

    Returns ``(codes [out, in] uint8, s2 [out, G] uint8, zeros [out, G] uint8, s1 [out] scale_dtype)``.
    """
    import torch

    fmt = _check_format(fmt)
    sdt = _scale_dtype(scale_dtype)
    if w.dim() != 2 or w.shape[-1] == 0:
        raise ValueError(f"two-level quantisation needs an [out, in] weight with in >= 1, got shape {tuple(w.shape)}")
    n = w.shape[-1]
    _check_group(n, group_size)
    x = w.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("quantize (two-level): the weights contain NaN or infinity")
    p, qmax = protective_range(fmt.bits), 2**fmt.bits - 1
    s1 = (x.abs().amax(dim=-1) / p).to(sdt)
    if not torch.isfinite(s1).all():
        raise ValueError(f"quantize (two-level): a channel scale overflows {sdt}; use a wider scale_dtype")
    s1 = torch.where(s1 == 0, torch.ones_like(s1), s1)
    q8 = torch.round(x / s1.to(torch.float32)[:, None]).clamp(-p, p).to(torch.int64)
    grouped = _groups(q8, group_size, 0)
    lo = grouped.amin(dim=-1).clamp(max=0)
    hi = grouped.amax(dim=-1).clamp(min=0)
    s2 = torch.round((hi - lo).double() / qmax).to(torch.int64).clamp(min=1)  # at most round(2P / qmax)
    z = torch.round(-lo.double() / s2.double()).clamp(0, qmax).to(torch.int64)
    t = torch.round(grouped.double() / s2.double().unsqueeze(-1)).to(torch.int64)
    codes = (t + z.unsqueeze(-1)).clamp(0, qmax).reshape(x.shape[0], -1)[:, :n]
    return codes.to(torch.uint8).contiguous(), s2.to(torch.uint8), z.to(torch.uint8), s1


def second_level(codes: torch.Tensor, s2: torch.Tensor, zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """The exact int8 weight ``(q - z) * s2``, ``[out, in]`` (what the W4A8 kernel's main loop multiplies)."""
    import torch

    n = codes.shape[-1]
    _check_group(n, group_size)
    q = _groups(codes.to(torch.int32), group_size, 0)
    value = (q - zeros.to(torch.int32).unsqueeze(-1)) * s2.to(torch.int32).unsqueeze(-1)
    value = value.reshape(codes.shape[0], -1)[:, :n]
    if value.numel() and value.abs().max() > 127:
        raise ValueError("two-level codes do not dequantise to int8: (q - z) * s2 exceeds 127")
    return value.to(torch.int8).contiguous()


def dequantize_two_level(codes: torch.Tensor, s2: torch.Tensor, zeros: torch.Tensor, s1: torch.Tensor,
                         group_size: int, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``s1[n] * ((q - z) * s2)``, computed in float32 (one rounding), returned as ``out_dtype`` (default f32)."""
    import torch

    levels = second_level(codes, s2, zeros, group_size).to(torch.float32)
    return (levels * s1.to(torch.float32)[:, None]).to(out_dtype or torch.float32)
