"""NVFP4: fp4_e2m1 elements in blocks of 16 along the last axis, one fp8_e4m3 scale per block and one float32
scale per tensor (NVIDIA's two-level recipe, as in Transformer Engine and TensorRT Model Optimizer).

Recipe, all arithmetic in float32 (inputs rounded to float32 first), rounding to nearest even:

- ``tensor_scale = amax(|x|) / (448 * 6)`` (448 = fp8_e4m3 max, 6 = fp4_e2m1 max), over the finite values;
  a caller may pass a calibrated ``tensor_scale`` instead. If amax is 0 (or the division underflows),
  ``tensor_scale = 1.0``, as Transformer Engine does.
- per block: ``block_scale = e4m3(amax_block / (6 * tensor_scale))`` (saturating e4m3 encode, so at most 448;
  ``6 * tensor_scale`` is rounded to float32 before the division).
- elements: ``e2m1(x / (decode(block_scale) * tensor_scale))``, saturating to +-6 (the product is rounded to
  float32 first). A block whose scale rounds to 0 (its amax is below ~2**-10 of the tensor's / 448) has
  all-zero elements (signs kept).
- dequantised value: ``e2m1 * (decode(block_scale) * tensor_scale)``, float32.
- a block holding NaN or +-inf gets the NaN block scale (e4m3 code 0x7F) and +0 elements: it decodes to NaN;
  the tensor scale is computed from the finite values only.
- a last axis that is not a multiple of 16 ends with a partial block (missing elements count as zeros).

Codes are one ``uint8`` per element (low 4 bits, unpacked); block scales are ``uint8`` e4m3 codes
(``.view(torch.float8_e4m3fn)`` gives torch's dtype); the tensor scale is a 0-dim float32 tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilec.formats.base import to_f64
from tilec.formats.minifloat import MinifloatFormat, fp4_e2m1, fp8_e4m3

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class NVFP4Format:
    """NVFP4: e2m1 elements, blocks of 16, e4m3 block scales, one float32 tensor scale."""

    name: str = "nvfp4"
    element: MinifloatFormat = fp4_e2m1
    block_scale: MinifloatFormat = fp8_e4m3
    block_size: int = 16

    @property
    def bits(self) -> int:
        return self.element.bits

    def quantize(
        self, x: torch.Tensor, tensor_scale: float | torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(codes uint8 [..., n], block_scales uint8 e4m3 codes [..., ceil(n/16)], tensor_scale float32 [])``."""
        import numpy as np
        import torch

        if x.dim() < 1 or x.shape[-1] == 0:
            raise ValueError(f"quantize_nvfp4 needs a tensor [..., n] with n >= 1, got shape {tuple(x.shape)}")
        a = to_f64(x).astype(np.float32)
        n, bs = a.shape[-1], self.block_size
        pad = -n % bs
        if pad:
            a = np.concatenate([a, np.zeros((*a.shape[:-1], pad), np.float32)], axis=-1)
        blocks = a.reshape(*a.shape[:-1], a.shape[-1] // bs, bs)  # no -1: rows may number 0
        finite = np.asarray(np.isfinite(blocks).all(axis=-1))
        amax_block = np.max(np.where(np.isfinite(blocks), np.abs(blocks), np.float32(0)), axis=-1)
        if tensor_scale is None:
            amax = np.float32(amax_block.max(initial=np.float32(0)))
            ts = np.float32(amax / np.float32(448.0 * 6.0))
            if not ts > 0:
                ts = np.float32(1.0)
        else:
            ts = np.float32(float(tensor_scale))
            if not (np.isfinite(ts) and ts > 0):
                raise ValueError(f"tensor_scale must be positive and finite, got {tensor_scale!r}")
        t6 = np.float32(np.float32(6.0) * ts)
        scale_codes = self.block_scale._encode_f64((amax_block / t6).astype(np.float64), saturate=True)
        scale_codes = np.where(finite, scale_codes, self.block_scale._encode_f64(np.array([np.nan]))[0])
        denom = (self.block_scale._decode_table()[scale_codes] * ts).astype(np.float32)[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = np.where(denom == 0, blocks * np.float32(0), blocks / denom)
        codes = self.element._encode_f64(scaled.astype(np.float64), saturate=True)
        codes = np.where(finite[..., None], codes, 0).astype(np.uint8).reshape(*a.shape)[..., :n]
        return (
            torch.from_numpy(np.ascontiguousarray(codes)),
            torch.from_numpy(scale_codes.astype(np.uint8)),
            torch.tensor(float(ts), dtype=torch.float32),
        )

    def dequantize(
        self,
        codes: torch.Tensor,
        block_scales: torch.Tensor,
        tensor_scale: float | torch.Tensor,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """``e2m1 * (e4m3 * tensor_scale)`` in float32, returned as ``dtype`` (default float32)."""
        import numpy as np
        import torch

        n, bs = codes.shape[-1], self.block_size
        if tuple(block_scales.shape) != (*codes.shape[:-1], -(-n // bs)):
            shapes = f"{tuple(block_scales.shape)} vs codes {tuple(codes.shape)}"
            raise ValueError(f"block_scales shape does not match the codes: {shapes}")
        vals = self.element.decode(codes).numpy()
        pad = -n % bs
        if pad:
            vals = np.concatenate([vals, np.zeros((*vals.shape[:-1], pad), np.float32)], axis=-1)
        blocks = vals.reshape(*vals.shape[:-1], vals.shape[-1] // bs, bs)
        ts = np.float32(float(tensor_scale))
        denom = (self.block_scale.decode(block_scales).numpy() * ts).astype(np.float32)[..., None]
        out = (blocks * denom).reshape(*vals.shape)[..., :n]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(dtype or torch.float32)


nvfp4 = NVFP4Format()


def quantize_nvfp4(
    x: torch.Tensor, tensor_scale: float | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantise ``x`` to NVFP4: ``(codes, block_scales_e4m3, tensor_scale)`` (see the module docstring)."""
    return nvfp4.quantize(x, tensor_scale)


def dequantize_nvfp4(
    codes: torch.Tensor,
    block_scales: torch.Tensor,
    tensor_scale: float | torch.Tensor,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Inverse of `quantize_nvfp4`."""
    return nvfp4.dequantize(codes, block_scales, tensor_scale, dtype)
