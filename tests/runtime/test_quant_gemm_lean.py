"""The lean W4A16 loop in the interpreter: group scale after each K tile's product, and for whole-word
widths at f16 the magic-number unpack (1024 + code in each 16-bit lane, no int-to-float conversion).

Same checks as test_quant_gemm.py (float64 reference with the dequantised weight, outputs poisoned with
NaN, N and K multiples of no tile size, the same tolerances), at groups that are multiples of the K block,
so the deferred path is the one that runs (asserted on the generated source).
"""

from __future__ import annotations

import pytest
import torch

import tilec
from tests.runtime.test_quant_gemm import WIDTHS, kernel
from tilec.ir import dtypes as dt

DEFERRED = {"m": 16, "n": 32, "k": 64}  # 4 products per thread: the scale follows the product
PER_WEIGHT = {"m": 64, "n": 64, "k": 64, "num_warps": 1}  # 128 per thread: one scale per row, per weight


def run(k: tilec.Kernel, qt: tilec.QTensor, x: torch.Tensor, group: int,
        schedule: dict[str, int] = DEFERRED) -> tuple[torch.Tensor, str]:
    n = qt.shape[0]
    out = torch.full((x.shape[0], n), float("nan"), dtype=x.dtype, device=x.device)
    args = [x, qt, qt.scales] + ([] if qt.zeros is None else [qt.zeros]) + [out, group]
    k(*args, schedule=schedule)
    return out, k.triton_code(*args, schedule=schedule)


@pytest.mark.parametrize("fmt", WIDTHS)
@pytest.mark.parametrize("group", [64, 128])
@pytest.mark.parametrize("schedule", [DEFERRED, PER_WEIGHT], ids=["deferred", "per_weight"])
def test_tile_group_paths_match_the_dequantised_product(fmt: str, group: int, schedule: dict[str, int]) -> None:
    k = kernel(fmt)
    bits = int(fmt[-1])
    gen = torch.Generator().manual_seed(100 * bits + group + fmt.startswith("int"))
    n, kk = 65, 200  # the last K tile and the last group are partial
    qt = tilec.quantize(torch.randn(n, kk, generator=gen), fmt, group_size=group)
    w = qt.dequantize().double()
    for m in (1, 7, 33):
        x = torch.randn(m, kk, generator=gen).half()
        out, source = run(k, qt, x, group, schedule)
        ref = x.double() @ w.T
        err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
        assert err <= 2 * 2.0**-10, f"{fmt} g{group} M={m}: {err:.3e}"
    assert (")) * scale_w)" in source) == (schedule is DEFERRED)  # the scale follows the product
    assert "scale_w[:, None]" in source or schedule is DEFERRED  # else one scale per row
    assert (".to(tl.uint16).to(tl.float16, bitcast=True)" in source) == (32 % bits == 0)  # magic unpack: whole words


@pytest.mark.parametrize("fmt", ["uint4", "int4", "uint3"])
def test_bf16_defers_the_scale_without_the_f16_magic(fmt: str) -> None:
    k = kernel(fmt)
    gen = torch.Generator().manual_seed(7)
    qt = tilec.quantize(torch.randn(65, 200, generator=gen), fmt, group_size=64, scale_dtype=torch.bfloat16)
    w = qt.dequantize().double()
    x = torch.randn(7, 200, generator=gen).to(torch.bfloat16)
    out, source = run(k, qt, x, 64)
    ref = x.double() @ w.T
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-7
    assert "* scale_w)" in source and ".to(tl.float16, bitcast=True)" not in source


def test_unaligned_group_keeps_the_per_weight_scale() -> None:
    k = kernel("uint4")
    gen = torch.Generator().manual_seed(8)
    qt = tilec.quantize(torch.randn(65, 200, generator=gen), "uint4", group_size=32)
    x = torch.randn(7, 200, generator=gen).half()
    out, source = run(k, qt, x, 32)
    ref = x.double() @ qt.dequantize().double().T
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10
    assert "* scale_w)" not in source and "(w_codes.to(tl.float32) - zero_w) * scale_w" in source


@pytest.mark.parametrize("permuted", [True, False], ids=["k_order", "stream_order"])
@pytest.mark.parametrize("fmt", ["uint4", "uint2", "uint1", "uint8", "int4", "int2", "int8"])
def test_both_k_orders_of_the_f16_unpack_match(fmt: str, permuted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """codegen/quant_load.py puts the deferred f16 tile in the product's K order (lane pairs (s, s + half)
    of each word adjacent, the activations permuted alike; codes through the f16-subnormal unpack and a
    2**9 on the group scale); the stream order (magic_k_order off) must give the same products.
    Masked tails (N = 65, K = 200) and NaN-poisoned outputs, as above."""
    from tilec.codegen import quant_load

    if not permuted:
        monkeypatch.setattr(quant_load, "magic_k_order", lambda kernel, e: None)
    k = kernel(fmt)  # a fresh Kernel: nothing specialised before the patch is reused
    bits = int(fmt[-1])
    gen = torch.Generator().manual_seed(300 + bits)
    n, kk, group = 65, 200, 64
    qt = tilec.quantize(torch.randn(n, kk, generator=gen), fmt, group_size=group)
    w = qt.dequantize().double()
    for m, schedule in ((7, DEFERRED), (20, {"m": 16, "n": 16, "k": 32})):
        x = torch.randn(m, kk, generator=gen).half()
        out, source = run(k, qt, x, group, schedule)
        ref = x.double() @ w.T
        err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
        assert err <= 2 * 2.0**-10, f"{fmt} M={m}: {err:.3e}"
    assert ("x_mk_k_order = tl.reshape(tl.permute(" in source) == permuted
    assert ("* 512.0" in source) == permuted  # the subnormal unpack's 2**-9, undone on the group scale
    gpu = k.specialize({"M": 7, "N": 65, "K": 200, "G": 4}, {"T": dt.f16}, target="cuda",
                       schedule=DEFERRED, scalars={"group": group}).source
    assert ("fma.rn.f16x2" in gpu) == permuted and "inline_asm" not in source  # one PTX op per lanes register


def test_every_uint4_code_and_zero_point_unpacks_exactly() -> None:
    """The f16-subnormal unpack for every uint4 code q and zero point z (row n has zero point n in every
    group, codes run through 0..15 along K), scale 1: one-hot activations read each (q - z) back exactly."""
    from tilec.formats.qtensor import QTensor
    from tilec.ir.packing import PackedLayout, pack

    n, kk, group = 16, 200, 64
    groups = -(-kk // group)
    codes = ((torch.arange(kk)[None, :] + torch.arange(n)[:, None] * 7) % 16).to(torch.uint8)
    zeros = torch.arange(n, dtype=torch.uint8)[:, None].expand(n, groups).contiguous()
    layout = PackedLayout(4)
    words = pack(codes, layout)
    assert isinstance(words, torch.Tensor)
    qt = QTensor("uint4", "affine", (n, kk), group, layout, (words,), torch.ones(n, groups, dtype=torch.float16), zeros)
    x = torch.eye(kk, dtype=torch.float16)
    out, source = run(kernel("uint4"), qt, x, group)
    assert "* 512.0" in source
    assert torch.equal(out, (codes.T.float() - torch.arange(n).float()).half())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fmt", ["uint4", "int4"])
def test_subnormal_unpack_on_gpu(fmt: str) -> None:
    """The decode tile's GPU form (one fma.rn.f16x2 per lanes register, f16 subnormal inputs) against
    float64, group 128 so the scale follows the product; masked N and K tails."""
    k = kernel(fmt)
    gen = torch.Generator().manual_seed(11)
    n, kk, group = 4099, 8195, 128
    qt = tilec.quantize(torch.randn(n, kk, generator=gen), fmt, group_size=group)
    w = qt.dequantize().double()
    x = torch.randn(16, kk, generator=gen).half()
    out, source = run(k, qt.to("cuda"), x.cuda(), group, {"m": 16, "n": 128, "k": 128, "num_warps": 4})
    ref = x.double() @ w.T
    assert "fma.rn.f16x2" in source
    assert ((out.cpu().double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10
