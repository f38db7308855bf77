"""OCP Microscaling (MX) v1.0 block formats: blocks of 32 consecutive elements along the last axis share one
``e8m0`` scale X = 2**shared_exp; an element decodes to ``X * element_value``.

Conversion (OCP MX v1.0 section 6.3, "Algorithm 1"; elements per section 5.3, E8M0 per section 5.4.1):

- ``shared_exp = floor(log2(max_i |V_i|)) - emax_elem`` where ``emax_elem`` is the exponent of the element
  format's largest normal (fp4_e2m1: 2, fp6_e2m3: 2, fp6_e3m2: 4, fp8_e4m3: 8, fp8_e5m2: 15, mxint8: 0).
- elements ``P_i = quantize(V_i / X)``: round to nearest, ties to even, **saturating** to the element's
  +-max ("clamping normal numbers"; for fp8_e5m2 overflow clamps to +-57344 instead of going to inf).
- shared_exp below -127 (the smallest e8m0) is clamped to -127. The spec leaves the **all-zero block**
  (log2(0)) undefined; like the reference implementations (microsoft/microxcaling, torchao) it gets
  shared_exp = -127, **scale code 0** (2**-127), and all elements +0 (a -0.0 element keeps its sign).
- a block holding **NaN or +-inf** gets the **NaN scale (code 255)**: e8m0 has no infinity, and the
  reference implementations do the same; its element codes are the element format's encoding of NaN
  (its NaN code, or 0 where the format has none). The whole block decodes to NaN.
- mxint8 (section 5.3, the INT8 element type): elements are 8-bit two's complement integers with an
  implicit scale of 2**-6 (fixed point 1.6), i.e. values k / 64 for k in -128..127, max 1.984375, and
  emax_elem = 0. We allow k = -128 (-2.0), the full two's complement range; microxcaling's reference
  clamps symmetrically to +-127/64 instead, which differs only for values that round to -2.0.

Inputs are rounded to float32 first (the spec converts from FP32); a last axis that is not a multiple of 32
ends with a partial block, whose missing elements count as zeros. Codes are one ``uint8`` per element (the
low ``bits`` bits), unpacked; scales are ``uint8`` e8m0 codes of shape ``[..., ceil(n / 32)]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilec.formats.base import TableFormat, to_f64
from tilec.formats.integer import IntFormat
from tilec.formats.minifloat import MinifloatFormat, fp4_e2m1, fp6_e2m3, fp6_e3m2, fp8_e4m3, fp8_e5m2

if TYPE_CHECKING:
    import torch

    from tilec.formats.base import F64Array


@dataclass(frozen=True)
class MXFormat:
    """An MX block format: element format, implicit element scale 2**element_exp, block size, e8m0 scales."""

    name: str
    element: MinifloatFormat | IntFormat
    element_exp: int = 0  # mxint8: -6 (int8 codes are k * 2**-6)
    block_size: int = 32

    @property
    def bits(self) -> int:
        """Bits per element (the scale adds 8 bits per block)."""
        return self.element.bits

    @property
    def emax_elem(self) -> int:
        """Exponent of the largest normal element value."""
        return math.frexp(self.element.max)[1] - 1 + self.element_exp

    @property
    def max(self) -> float:
        """Largest element value (before the block scale)."""
        return math.ldexp(self.element.max, self.element_exp)

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes uint8 [..., n], scales uint8 e8m0 codes [..., ceil(n / block_size)])``."""
        import numpy as np
        import torch

        if x.dim() < 1 or x.shape[-1] == 0:
            raise ValueError(f"quantize_mx needs a tensor [..., n] with n >= 1, got shape {tuple(x.shape)}")
        a = to_f64(x)
        n = a.shape[-1]
        blocks = _blocks(a, self.block_size)
        amax = np.max(np.abs(blocks), axis=-1)
        finite = np.isfinite(amax)
        exp = np.frexp(np.where(finite, amax, 1.0))[1] - 1 - self.emax_elem
        exp = np.clip(np.where(amax == 0, -127, exp), -127, 127)
        scales = np.where(finite, exp + 127, 255).astype(np.uint8)
        scaled = np.ldexp(blocks, (-exp - self.element_exp)[..., None])
        elem: TableFormat = self.element
        codes = elem._encode_f64(scaled, saturate=True)
        nan_code = elem._encode_f64(np.array([math.nan]))[0]
        codes = np.where(finite[..., None], codes, nan_code)
        codes = codes.reshape(*a.shape[:-1], blocks.shape[-2] * blocks.shape[-1])
        codes = codes[..., :n]
        return torch.from_numpy(np.ascontiguousarray(codes)), torch.from_numpy(scales)

    def dequantize(self, codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Element value times 2**(scale - 127); NaN for scale code 255. Returned as ``dtype`` (default float32)."""
        import numpy as np
        import torch

        n = codes.shape[-1]
        nb = -(-n // self.block_size)
        if tuple(scales.shape) != (*codes.shape[:-1], nb):
            raise ValueError(f"scales shape {tuple(scales.shape)} does not match codes {tuple(codes.shape)}")
        vals = self.element.decode(codes).numpy().astype(np.float64)
        blocks = _blocks(vals, self.block_size)
        s = scales.detach().to("cpu", torch.int64).numpy()
        out = np.ldexp(blocks, (s - 127 + self.element_exp)[..., None])
        out = np.where((s == 255)[..., None], np.nan, out)
        out = out.reshape(*vals.shape[:-1], blocks.shape[-2] * blocks.shape[-1])
        out = out[..., :n]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(dtype or torch.float32)


def _blocks(a: F64Array, block_size: int) -> F64Array:
    import numpy as np

    pad = -a.shape[-1] % block_size
    if pad:
        a = np.concatenate([a, np.zeros((*a.shape[:-1], pad))], axis=-1)
    return a.reshape(*a.shape[:-1], a.shape[-1] // block_size, block_size)  # no -1: rows may number 0


mxfp4 = MXFormat("mxfp4", fp4_e2m1)
mxfp6_e2m3 = MXFormat("mxfp6_e2m3", fp6_e2m3)
mxfp6_e3m2 = MXFormat("mxfp6_e3m2", fp6_e3m2)
mxfp8_e4m3 = MXFormat("mxfp8_e4m3", fp8_e4m3)
mxfp8_e5m2 = MXFormat("mxfp8_e5m2", fp8_e5m2)
mxint8 = MXFormat("mxint8", IntFormat(8, True), element_exp=-6)
MX_FORMATS: tuple[MXFormat, ...] = (mxfp4, mxfp6_e2m3, mxfp6_e3m2, mxfp8_e4m3, mxfp8_e5m2, mxint8)


def _mx(fmt: MXFormat | str) -> MXFormat:
    if isinstance(fmt, MXFormat):
        return fmt
    for f in MX_FORMATS:
        if f.name == fmt:
            return f
    raise ValueError(f"unknown MX format {fmt!r}; known: {', '.join(f.name for f in MX_FORMATS)}")


def quantize_mx(x: torch.Tensor, fmt: MXFormat | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise ``x`` to an MX format (by name, e.g. ``"mxfp4"``): ``(codes, scales_e8m0)``."""
    return _mx(fmt).quantize(x)


def dequantize_mx(
    codes: torch.Tensor, scales: torch.Tensor, fmt: MXFormat | str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Inverse of `quantize_mx`."""
    return _mx(fmt).dequantize(codes, scales, dtype)
