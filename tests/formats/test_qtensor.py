"""tilec.quantize / QTensor: packing round trips, dequantisation, SQNR, GPTQ and AWQ import."""

from __future__ import annotations

import math

import pytest
import torch

import tilec
from tilec.formats.qtensor import AWQ_ORDER, QTensor, from_awq, from_gptq, quantize


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    return 10 * math.log10((ref.double() ** 2).sum().item() / ((ref.double() - approx.double()) ** 2).sum().item())


FORMATS = [("int4", 128), ("uint4", 128), ("uint3", 64), ("int8", None), ("uint2", 32), ("uint5", 48),
           ("fp4_e2m1", 32), ("fp8_e4m3", 128), ("nf4", 64), ("mxfp4", None), ("mxfp8_e4m3", None),
           ("nvfp4", None)]


@pytest.mark.parametrize("fmt,group", FORMATS, ids=[f[0] for f in FORMATS])
def test_quantize_packs_and_dequantizes(fmt: str, group: int | None) -> None:
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(24, 200, generator=gen)  # 200: a multiple of no word or group size used here
    qt = quantize(w, fmt, group_size=group)
    assert isinstance(qt, QTensor) and qt.shape == (24, 200)
    bits = qt.bits
    assert all(p.dtype == torch.int32 and p.shape[0] == 24 for p in qt.packed)
    assert sum(p.shape[1] for p in qt.packed) * 32 >= 200 * bits
    deq = qt.dequantize()
    assert deq.shape == (24, 200) and torch.isfinite(deq).all()
    # the codes survive packing exactly: dequantising them directly gives the same weight
    assert torch.equal(qt.codes(), quantize(w, fmt, group_size=group).codes())
    assert sqnr_db(w, deq) > {2: 7, 3: 12, 4: 14, 5: 20, 8: 25}.get(bits, 10)


def test_int4_group128_gemm_sqnr_meets_target() -> None:
    gen = torch.Generator().manual_seed(5)
    w, x = torch.randn(256, 1024, generator=gen), torch.randn(16, 1024, generator=gen)
    qt = quantize(w, "uint4", group_size=128)
    exact = x.double() @ w.double().T
    assert sqnr_db(exact, x.double() @ qt.dequantize().double().T) >= 18.0


def test_public_names_and_errors() -> None:
    assert tilec.quantize is quantize and tilec.QTensor is QTensor
    with pytest.raises(ValueError, match="2-D"):
        quantize(torch.randn(4), "int4")
    with pytest.raises(ValueError, match="blocks of 32"):
        quantize(torch.randn(4, 64), "mxfp4", group_size=64)
    with pytest.raises(ValueError, match="scale format"):
        quantize(torch.randn(4, 64), "e8m0")


def _gptq_tensors(codes: torch.Tensor, zeros: torch.Tensor, scales: torch.Tensor, bits: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ's layout, written directly from its description (not with tilec's packer)."""
    out, inp = codes.shape
    per = 32 // bits
    qweight = torch.zeros(inp // per, out, dtype=torch.int64)
    for j in range(per):
        qweight |= codes.t()[j::per].to(torch.int64) << (bits * j)
    stored = (zeros.to(torch.int64) - 1) & (2**bits - 1)  # GPTQ v1 stores zero - 1
    qzeros = torch.zeros(zeros.shape[1], out // per, dtype=torch.int64)
    for j in range(per):
        qzeros |= stored.t()[:, j::per] << (bits * j)
    to32 = lambda t: ((t + 2**31) % 2**32 - 2**31).to(torch.int32)
    return to32(qweight), to32(qzeros), scales.t().contiguous()


@pytest.mark.parametrize("bits", [4, 8, 2])
def test_gptq_import_keeps_codes_exactly(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    out, inp, group = 32, 256, 64
    codes = torch.randint(0, 2**bits, (out, inp), generator=gen, dtype=torch.uint8)
    zeros = torch.randint(1, 2**bits, (out, inp // group), generator=gen, dtype=torch.uint8)
    scales = torch.rand(out, inp // group, generator=gen).half() + 0.01
    qt = from_gptq(*_gptq_tensors(codes, zeros, scales, bits), bits=bits,
                   g_idx=torch.arange(inp) // group)
    assert torch.equal(qt.codes(), codes) and torch.equal(qt.zeros, zeros)  # type: ignore[arg-type]
    expected = (codes.float() - zeros.float().repeat_interleave(group, 1)) * scales.float().repeat_interleave(group, 1)
    assert torch.equal(qt.dequantize(), expected)
    with pytest.raises(ValueError, match="act-order"):
        from_gptq(*_gptq_tensors(codes, zeros, scales, bits), bits=bits, g_idx=torch.randperm(inp) // group)


def test_awq_import_keeps_codes_exactly() -> None:
    gen = torch.Generator().manual_seed(11)
    out, inp, group = 64, 128, 32
    codes = torch.randint(0, 16, (out, inp), generator=gen, dtype=torch.uint8)
    zeros = torch.randint(0, 16, (out, inp // group), generator=gen, dtype=torch.uint8)
    scales = torch.rand(out, inp // group, generator=gen).half()

    def awq_pack(t: torch.Tensor) -> torch.Tensor:  # t: [rows, out] -> int32 [rows, out / 8]
        packed = torch.zeros(t.shape[0], t.shape[1] // 8, dtype=torch.int64)
        for k, element in enumerate(AWQ_ORDER):
            packed |= t[:, element::8].to(torch.int64) << (4 * k)
        return ((packed + 2**31) % 2**32 - 2**31).to(torch.int32)

    qt = from_awq(awq_pack(codes.t()), awq_pack(zeros.t()), scales.t().contiguous(), group)
    assert torch.equal(qt.codes(), codes) and torch.equal(qt.zeros, zeros)  # type: ignore[arg-type]
    expected = (codes.float() - zeros.float().repeat_interleave(group, 1)) * scales.float().repeat_interleave(group, 1)
    assert torch.equal(qt.dequantize(), expected)
