"""Affine group quantisation (GPTQ/AWQ style): one scale, and optionally one zero point, per group of ``g``
consecutive elements along the last (reduction) axis.

Convention, for a group ``w`` of ``g`` elements (the last group of a row is partial, ``in % g`` elements,
when ``g`` does not divide ``in``; scales then have ``ceil(in / g)`` columns). All arithmetic is float32
and rounding is to nearest, ties to even (``torch.round``):

- **symmetric** (signed ``intB``, B >= 2): ``qmax = 2**(B-1) - 1``; ``scale = max|w| / qmax``;
  ``q = clamp(round(w / s), -2**(B-1), qmax)``; no zero point; dequantised ``q * s``.
- **asymmetric** (unsigned ``uintB``): ``qmax = 2**B - 1``; the range is widened to include 0 (GPTQ's
  rule, so 0 is exact): ``lo = min(min(w), 0)``, ``hi = max(max(w), 0)``; ``scale = (hi - lo) / qmax``;
  ``zero = clamp(round(-lo / s), 0, qmax)``; ``q = clamp(round(w / s) + zero, 0, qmax)`` (round first, then
  add the integer zero, as AWQ does); dequantised ``(q - zero) * s``.
- ``s`` is the scale **as stored** (rounded to ``scale_dtype``), so quantise and dequantise agree. A group
  whose stored scale is 0 (an all-zero group, or a scale below the dtype's range) stores scale 1.0 instead:
  its elements are then (nearly) 0 and dequantise to 0. A scale that overflows ``scale_dtype`` raises.
- codes are ``uint8``: the element format's codes (two's complement in the low B bits for ``intB``);
  zero points are ``uint8`` integers in ``[0, qmax]``. Non-finite weights raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilec.formats.integer import IntFormat

if TYPE_CHECKING:
    import torch

_SCALE_DTYPES = ("float16", "bfloat16", "float32")


@dataclass(frozen=True)
class AffineFormat:
    """Describes an affine group format: element format, group size (None = per channel), symmetry, scale dtype."""

    element: IntFormat
    group_size: int | None
    symmetric: bool
    scale_dtype: str = "float16"

    def __post_init__(self) -> None:
        _check_element(self.element, self.symmetric)
        if self.scale_dtype not in _SCALE_DTYPES:
            raise ValueError(f"scale_dtype must be one of {_SCALE_DTYPES}, got {self.scale_dtype!r}")

    @property
    def name(self) -> str:
        g = "c" if self.group_size is None else str(self.group_size)
        return f"{self.element.name}_g{g}_{'sym' if self.symmetric else 'asym'}_{self.scale_dtype}"

    def quantize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        g = w.shape[-1] if self.group_size is None else self.group_size
        return quantize_affine(w, self.element, g, self.symmetric, self.scale_dtype)

    def dequantize(self, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None) -> torch.Tensor:
        g = codes.shape[-1] if self.group_size is None else self.group_size
        return dequantize_affine(codes, scales, zeros, self.element, g)


def _check_element(fmt: object, symmetric: bool) -> IntFormat:
    if isinstance(fmt, str):
        from tilec.formats.registry import get

        fmt = get(fmt)
    if not isinstance(fmt, IntFormat):
        raise TypeError(f"affine groups take an int/uint element format, got {fmt!r}")
    if symmetric and not (fmt.signed and fmt.bits >= 2):
        raise ValueError(f"symmetric affine groups need a signed format int2..int8, got {fmt.name}")
    if not symmetric and fmt.signed:
        raise ValueError(f"asymmetric affine groups need an unsigned format uint1..uint8, got {fmt.name}")
    return fmt


def _scale_dtype(scale_dtype: object) -> torch.dtype:
    import torch

    name = str(scale_dtype).removeprefix("torch.")
    if name not in _SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be torch.float16, torch.bfloat16 or torch.float32, got {scale_dtype!r}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def _check_group(n: int, group_size: int) -> None:
    if not isinstance(group_size, int) or not (group_size == n or 16 <= group_size <= n):
        raise ValueError(f"group_size must be in 16..{n} or equal {n} (per channel), got {group_size!r}")


def _groups(x: torch.Tensor, group_size: int, fill: float) -> torch.Tensor:
    """[..., n] -> [..., n_groups, group_size], padding the partial last group with ``fill``."""
    import torch

    n = x.shape[-1]
    pad = -n % group_size
    if pad:
        x = torch.cat([x, x.new_full((*x.shape[:-1], pad), fill)], dim=-1)
    return x.reshape(*x.shape[:-1], -1, group_size)


def quantize_affine(
    w: torch.Tensor, fmt: IntFormat | str, group_size: int, symmetric: bool, scale_dtype: object = "float16"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantise ``w`` ([..., in], e.g. [out, in]) by groups along the last axis (see the module docstring).

    Returns ``(codes [..., in] uint8, scales [..., ceil(in/g)] scale_dtype, zeros [..., ceil(in/g)] uint8 | None)``.
    """
    import torch

    fmt = _check_element(fmt, symmetric)
    sdt = _scale_dtype(scale_dtype)
    if w.dim() < 1 or w.shape[-1] == 0:
        raise ValueError(f"quantize_affine needs a tensor [..., in] with in >= 1, got shape {tuple(w.shape)}")
    n = w.shape[-1]
    _check_group(n, group_size)
    x = w.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("quantize_affine: the weights contain NaN or infinity")
    grouped = _groups(x, group_size, 0.0)
    if symmetric:
        qmax = 2 ** (fmt.bits - 1) - 1
        scale = grouped.abs().amax(dim=-1) / qmax
    else:
        qmax = 2**fmt.bits - 1
        lo = grouped.amin(dim=-1).clamp(max=0.0)
        hi = grouped.amax(dim=-1).clamp(min=0.0)
        scale = (hi - lo) / qmax
    stored = scale.to(sdt)
    if not torch.isfinite(stored).all():
        raise ValueError(f"quantize_affine: a group scale overflows {sdt}; use a wider scale_dtype")
    stored = torch.where(stored == 0, torch.ones_like(stored), stored)
    s = stored.to(torch.float32).unsqueeze(-1)
    if symmetric:
        q = torch.round(grouped / s).clamp(-(2 ** (fmt.bits - 1)), qmax)
        codes = (q.to(torch.int64) & (2**fmt.bits - 1)).to(torch.uint8)
        zeros = None
    else:
        z = torch.round(-lo.unsqueeze(-1) / s).clamp(0, qmax)
        codes = (torch.round(grouped / s) + z).clamp(0, qmax).to(torch.uint8)
        zeros = z.squeeze(-1).to(torch.uint8)
    codes = codes.reshape(*x.shape[:-1], -1)[..., :n].contiguous()
    return codes, stored, zeros


def dequantize_affine(
    codes: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    fmt: IntFormat | str,
    group_size: int,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Inverse of `quantize_affine`: ``q * s`` (symmetric, ``zeros is None``) or ``(q - zero) * s``.

    Computed in float32, returned as ``out_dtype`` (default float32).
    """
    import torch

    fmt = _check_element(fmt, zeros is None)
    n = codes.shape[-1]
    _check_group(n, group_size)
    q = _groups(fmt.decode(codes), group_size, 0.0)
    if zeros is not None:
        q = q - zeros.to(torch.float32).unsqueeze(-1)
    out = (q * scales.to(torch.float32).unsqueeze(-1)).reshape(*codes.shape[:-1], -1)[..., :n]
    return out.to(out_dtype or torch.float32).contiguous()
