"""NVFP4: NVIDIA's two-level recipe against an independent torch + ml_dtypes transcription."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from tilec.formats import dequantize_nvfp4, nvfp4, quantize_nvfp4


def reference(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    """tensor_scale = amax / (448 * 6); block_scale = e4m3(amax_block / (6 * tensor_scale));
    elements = e2m1(x / (block_scale * tensor_scale)), saturating. float32 throughout. Last dim % 16 == 0."""
    x = x.float()
    ts = x.abs().max() / 2688.0
    blocks = x.reshape(-1, 16)
    bs = (blocks.abs().amax(dim=-1) / (6.0 * ts)).to(torch.float8_e4m3fn)
    denom = bs.float() * ts
    scaled = (blocks / denom[:, None]).clamp(-6.0, 6.0)
    scaled = torch.where(denom[:, None] == 0, blocks * 0.0, scaled)  # tilec: a zero block scale zeroes its elements
    elems = scaled.numpy().astype(ml_dtypes.float4_e2m1fn)
    return elems.view(np.uint8).reshape(x.shape), bs.view(torch.uint8).numpy().reshape(*x.shape[:-1], -1), ts.item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 256, generator=g) * torch.exp(torch.randn(64, 1, generator=g) * 3)
    codes, scales, ts = quantize_nvfp4(x)
    ref_codes, ref_scales, ref_ts = reference(x)
    assert codes.dtype == scales.dtype == torch.uint8 and ts.dtype == torch.float32 and ts.dim() == 0
    assert ts.item() == ref_ts and ts.item() == np.float32(x.abs().max().item()) / np.float32(2688.0)
    assert np.array_equal(scales.numpy(), ref_scales)
    assert np.array_equal(codes.numpy(), ref_codes)
    y = dequantize_nvfp4(codes, scales, ts)
    expected = nvfp4.element.decode(codes).reshape(64, -1, 16) * (nvfp4.block_scale.decode(scales) * ts)[..., None]
    assert torch.equal(y, expected.reshape(64, 256))


def test_scales_and_error_bound() -> None:
    x = torch.randn(32, 128) * 5
    codes, scales, ts = quantize_nvfp4(x)
    bs = nvfp4.block_scale.decode(scales)
    assert bs.max().item() == 448.0 and (bs <= 448).all()  # the block holding the tensor amax uses e4m3 max
    y = dequantize_nvfp4(codes, scales, ts)
    step = (bs * ts).repeat_interleave(16, dim=-1)  # element spacing is at most 2 (between 4 and 6)
    assert ((x - y).abs() <= step * 1.0 + 1e-30).all()
    assert y.abs().max() <= x.abs().max() * (1 + 2**-4)


def test_edge_cases() -> None:
    codes, scales, ts = quantize_nvfp4(torch.zeros(2, 32))
    assert ts.item() == 1.0 and codes.eq(0).all() and scales.eq(0).all()
    x = torch.randn(2, 40, generator=torch.Generator().manual_seed(0))  # partial last block of 8
    x[1, 36] = 8.0  # the tensor's amax sits away from the NaN/inf planted below, so its scale is unchanged
    codes, scales, ts = quantize_nvfp4(x)
    assert codes.shape == (2, 40) and scales.shape == (2, 3)
    padded = torch.cat([x, torch.zeros(2, 8)], dim=1)
    assert torch.equal(quantize_nvfp4(padded)[0][:, :40], codes)
    x[0, 3], x[1, 20] = math.nan, -math.inf
    codes, scales, ts2 = quantize_nvfp4(x)
    assert scales[0, 0].item() == 0x7F and scales[1, 1].item() == 0x7F and ts2.item() == ts.item()
    y = dequantize_nvfp4(codes, scales, ts2)
    assert torch.isnan(y[0, :16]).all() and torch.isnan(y[1, 16:32]).all() and not torch.isnan(y[0, 16:]).any()
    # a calibrated tensor scale; blocks beyond it saturate
    codes, scales, ts3 = quantize_nvfp4(torch.full((1, 16), 100.0), tensor_scale=0.01)
    assert ts3.item() == np.float32(0.01) and scales.item() == 0x7E and codes.eq(0x7).all()
    with pytest.raises(ValueError):
        quantize_nvfp4(x, tensor_scale=0.0)
    with pytest.raises(ValueError, match="does not match"):
        dequantize_nvfp4(codes, scales[:, :0], ts3)
    # a block far below the tensor's amax: its e4m3 scale underflows to 0 and its elements to 0
    tiny = torch.tensor([[1e4] * 16 + [1e-6] * 16])
    codes, scales, ts = quantize_nvfp4(tiny)
    assert scales[0, 1].item() == 0 and codes[0, 16:].eq(0).all()
    assert dequantize_nvfp4(codes, scales, ts, torch.float16).dtype == torch.float16
