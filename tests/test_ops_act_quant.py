"""tilec.ops.linear with quantised activations: W8A8 (int8) and FP8 x FP8 (e4m3), per token x per channel."""

from __future__ import annotations

import pytest
import torch

import tilec
from tilec.ops_act_quant import quantize_per_token, weight_codes

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    return (10 * torch.log10(ref.pow(2).sum() / (ref - approx).pow(2).sum())).item()


@pytest.mark.parametrize("fmt", ["int8", "fp8_e4m3"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [1, 7, 33])
def test_kernel_matches_the_float64_product_of_the_quantised_operands(fmt: str, dtype: torch.dtype, m: int) -> None:
    """The products are exact (int32, or f32 sums of exact e4m3 products over K = 150): what remains is the
    epilogue's f32 arithmetic and one rounding to x's dtype, so 2 ulp of that dtype, normwise."""
    gen = torch.Generator().manual_seed(m + len(fmt))
    qw = tilec.quantize(torch.randn(65, 150, generator=gen), fmt, group_size=None)
    x = torch.randn(m, 150, generator=gen).to(dtype)
    bias = torch.randn(65, generator=gen).to(dtype)
    out = tilec.ops.linear(x, qw, bias, activations=fmt)
    assert out.shape == (m, 65) and out.dtype == dtype and torch.isfinite(out).all()
    xq, x_scale = quantize_per_token(x, fmt)
    codes, w_scale = weight_codes(qw, fmt)
    ref = (xq.double() @ codes.double().T) * x_scale.double()[:, None] * w_scale.double() + bias.double()
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * EPS[dtype]


@pytest.mark.parametrize("fmt,floor", [("int8", 35.0), ("fp8_e4m3", 25.0)])
def test_sqnr_against_the_unquantised_product(fmt: str, floor: float) -> None:
    """Measured on this data: int8 40.0 dB, e4m3 28.3 dB (e4m3 has 3 mantissa bits: ~2**-4 relative steps)."""
    gen = torch.Generator().manual_seed(0)
    w, x = torch.randn(65, 200, generator=gen), torch.randn(7, 200, generator=gen).half()
    out = tilec.ops.linear(x, tilec.quantize(w, fmt, group_size=None), activations=fmt)
    assert sqnr_db(x.double() @ w.double().T, out.double()) >= floor


def test_per_token_quantisation_rules() -> None:
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [3.0, float("nan"), 1.0]])
    q, s = quantize_per_token(x, "int8")
    assert q[0].tolist() == [64, -127, 32] and s[0].item() == pytest.approx(2 / 127)  # 63.5 -> 64 (even), 31.75 -> 32
    assert q[1].tolist() == [0, 0, 0] and s[1].item() == 1.0  # an all-zero row keeps a unit scale
    assert torch.isnan(s[2])  # a NaN row poisons its scale, so its output row is NaN
    q8, s8 = quantize_per_token(x[:2], "fp8_e4m3")
    assert q8.dtype == torch.float8_e4m3fn and q8.float()[0].tolist() == [224.0, -448.0, 112.0]
    assert s8[0].item() == pytest.approx(2 / 448)


def test_nan_activation_rows_give_nan_output_rows() -> None:
    qw = tilec.quantize(torch.randn(20, 64), "int8", group_size=None)
    x = torch.randn(3, 64).half()
    x[1, 5] = float("nan")
    out = tilec.ops.linear(x, qw, activations="int8")
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2]]).all()


def test_fused_activation_and_torch_compile() -> None:
    gen = torch.Generator().manual_seed(4)
    qw = tilec.quantize(torch.randn(40, 64, generator=gen), "int8", group_size=None)
    x = torch.randn(2, 3, 64, generator=gen).half()
    eager = tilec.ops.linear(x, qw, activation="silu", activations="int8")
    assert eager.shape == (2, 3, 40)
    compiled = torch.compile(lambda t: tilec.ops.linear(t, qw, activation="silu", activations="int8"),
                             fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), eager)
    xq, xs = quantize_per_token(x.reshape(-1, 64), "int8")
    codes, ws = weight_codes(qw, "int8")
    ref = torch.nn.functional.silu((xq.double() @ codes.double().T) * xs.double()[:, None] * ws.double())
    assert ((eager.reshape(-1, 40).double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10


def test_wrong_weights_are_refused_before_launch() -> None:
    x = torch.randn(2, 64).half()
    with pytest.raises(tilec.ArgumentError, match="needs a weight in int8"):
        tilec.ops.linear(x, tilec.quantize(torch.randn(8, 64), "uint4", group_size=32), activations="int8")
    with pytest.raises(tilec.ArgumentError, match="per-channel"):
        tilec.ops.linear(x, tilec.quantize(torch.randn(8, 64), "int8", group_size=32), activations="int8")
    with pytest.raises(tilec.ArgumentError, match="not supported"):
        tilec.ops.linear(x, tilec.quantize(torch.randn(8, 64), "int8", group_size=None), activations="int4")


@pytest.mark.aot
@pytest.mark.parametrize("fmt", ["int8", "fp8_e4m3"])
def test_kernels_compile_for_sm90_with_tensor_cores_and_no_spills(fmt: str) -> None:
    from tilec.codegen.aot import compile_for_gpu
    from tilec.ir import dtypes as dt
    from tilec.ops_act_quant import _kernel

    dims = {"M": 4096, "N": 4096, "K": 4096}
    compiled = _kernel(fmt, True, "gelu").specialize(dims, {"T": dt.bf16}, target="cuda")
    art = compile_for_gpu(compiled, "sm_90", dims)
    assert "ttng.warp_group_dot" in art.asm["ttgir"]
    report = art.resources()
    assert report.spill_stores == 0 and report.spill_loads == 0, report.text


def test_quant_linear_module_with_quantised_activations() -> None:
    gen = torch.Generator().manual_seed(6)
    lin = torch.nn.Linear(96, 24).half()
    x = torch.randn(5, 96, generator=gen).half()
    for fmt in ("int8", "fp8_e4m3"):
        qlin = tilec.nn.QuantLinear.from_linear(lin, fmt, group_size=None, activations=fmt)
        assert f"activations={fmt}" in repr(qlin)
        direct = tilec.ops.linear(x, qlin.qweight, lin.bias.detach(), activations=fmt)
        assert torch.equal(qlin(x), direct)
    with pytest.raises(tilec.ArgumentError, match="per-channel"):  # refused when built, not at the first call
        tilec.nn.QuantLinear.from_linear(lin, "int8", group_size=32, activations="int8")
