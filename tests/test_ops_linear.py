"""tilec.ops.linear, torch.ops.tilec.linear_affine and tilec.nn.QuantLinear."""

from __future__ import annotations

import pytest
import torch

import tilec


def _ref(x: torch.Tensor, qt: tilec.QTensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = x.double() @ qt.dequantize().double().T
    return out if bias is None else out + bias.double()


@pytest.mark.parametrize("fmt", ["uint4", "int4", "uint3", "uint8", "fp4_e2m1", "fp8_e4m3", "nf4", "mxfp4", "mxint8",
                                 "nvfp4"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_matches_dequantised_reference(fmt: str, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    group = None if fmt == "nvfp4" else 32  # MX blocks are 32 anyway; nvfp4's are 16 by specification
    qt = tilec.quantize(torch.randn(33, 96, generator=gen), fmt, group_size=group)
    x = torch.randn(2, 3, 96, generator=gen).half()
    bias = torch.randn(33, generator=gen).half() if with_bias else None
    out = tilec.ops.linear(x, qt, bias)
    assert out.shape == (2, 3, 33) and out.dtype == torch.float16
    ref = _ref(x.reshape(-1, 96), qt, bias).reshape(2, 3, 33)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10


@pytest.mark.parametrize("activation", ["silu", "gelu", "relu"])
def test_fused_activation_epilogue(activation: str) -> None:
    gen = torch.Generator().manual_seed(2)
    qt = tilec.quantize(torch.randn(40, 64, generator=gen), "uint4", group_size=32)
    x, bias = torch.randn(6, 64, generator=gen).half(), torch.randn(40, generator=gen).half()
    out = tilec.ops.linear(x, qt, bias, activation=activation)
    pre = _ref(x, qt, bias)
    act = {"silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu, "relu": torch.relu}[activation]
    ref = act(pre)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10
    with pytest.raises(tilec.ArgumentError, match="unknown activation"):
        tilec.ops.linear(x, qt, activation="tanh!")


def test_linear_under_torch_compile_and_as_module() -> None:
    lin = torch.nn.Linear(64, 40).half()
    qlin = tilec.nn.QuantLinear.from_linear(lin, "uint4", group_size=32)
    x = torch.randn(5, 64).half()
    eager = qlin(x)
    compiled = torch.compile(lambda t: qlin(t) * 2.0, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), eager * 2.0)
    ref = _ref(x, qlin.qweight, lin.bias.detach())
    assert ((eager.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10
    exact = x.double() @ lin.weight.double().T + lin.bias.double()
    assert ((eager.double() - exact).abs().max() / exact.abs().max()).item() < 0.15  # 4-bit quantisation error
    assert "format=uint4" in repr(qlin)


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4", "nf4"])
def test_quant_linear_module_for_block_and_table_formats(fmt: str) -> None:
    """QuantLinear keeps each format's own scheme (MX e8m0 / nvfp4 e4m3 scale codes, nvfp4's tensor scale)."""
    lin = torch.nn.Linear(64, 40).half()
    qlin = tilec.nn.QuantLinear.from_linear(lin, fmt, group_size=None if fmt != "nf4" else 32)
    assert qlin.qweight.scheme == tilec.formats.qtensor.scheme_of(fmt)
    x = torch.randn(5, 64).half()
    ref = _ref(x, qlin.qweight, lin.bias.detach())
    assert ((qlin(x).double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10


def test_linear_rejects_bad_arguments() -> None:
    qt = tilec.quantize(torch.randn(8, 32), "uint4", group_size=16)
    with pytest.raises(tilec.ArgumentError, match="31 features"):
        tilec.ops.linear(torch.randn(2, 31).half(), qt)
    with pytest.raises(tilec.ArgumentError, match="float16 or bfloat16"):
        tilec.ops.linear(torch.randn(2, 32), qt)
    with pytest.raises(tilec.ArgumentError, match="integer, minifloat"):
        tilec.ops.linear(torch.randn(2, 32).half(), torch.randn(8, 32))  # type: ignore[arg-type]


@pytest.mark.parametrize("fa,fw", [("mxfp8_e4m3", "mxfp4"), ("mxfp4", "mxfp4"), ("nvfp4", "nvfp4"),
                                   ("mxfp6_e2m3", "mxfp8_e5m2")])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_linear_with_block_scaled_activations(fa: str, fw: str, out_dtype: torch.dtype) -> None:
    """Both operands block-scaled (QTensors): against the float64 product of the dequantised operands, with a
    fused bias and activation; nvfp4's two tensor scales are applied in the epilogue."""
    gen = torch.Generator().manual_seed(len(fa) + len(fw))
    qw = tilec.quantize(torch.randn(33, 150, generator=gen), fw)
    qx = tilec.quantize(torch.randn(7, 150, generator=gen) * 2, fa)
    bias = torch.randn(33, generator=gen).to(out_dtype)
    out = tilec.ops.linear(qx, qw, bias, activation="silu", out_dtype=out_dtype)
    assert out.shape == (7, 33) and out.dtype == out_dtype
    ref = torch.nn.functional.silu(qx.dequantize().double() @ qw.dequantize().double().T + bias.double())
    eps = 2.0**-10 if out_dtype == torch.float16 else 2.0**-7
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * eps


def test_block_scaled_linear_under_torch_compile() -> None:
    gen = torch.Generator().manual_seed(3)
    qw = tilec.quantize(torch.randn(40, 64, generator=gen), "mxfp4")
    qx = tilec.quantize(torch.randn(5, 64, generator=gen), "mxfp8_e4m3")
    eager = tilec.ops.linear(qx, qw, out_dtype=torch.bfloat16)
    compiled = torch.compile(lambda a, s: torch.ops.tilec.linear_block_scaled(
        a, s, qw.packed[0], qw.scales, None, "mxfp8_e4m3", "mxfp4", 64, 1.0, None, torch.bfloat16) * 2.0,
        fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(qx.packed[0], qx.scales), eager * 2.0)


def test_block_scaled_linear_rejects_bad_arguments() -> None:
    qw = tilec.quantize(torch.randn(8, 64), "mxfp4")
    qx = tilec.quantize(torch.randn(2, 64), "mxfp8_e4m3")
    with pytest.raises(tilec.ArgumentError, match=r"out_dtype=torch\.float16 or torch\.bfloat16"):
        tilec.ops.linear(qx, qw)
    with pytest.raises(tilec.ArgumentError, match="both operands MX"):
        tilec.ops.linear(tilec.quantize(torch.randn(2, 64), "nvfp4"), qw, out_dtype=torch.float16)
    with pytest.raises(tilec.ArgumentError, match="both operands MX"):
        tilec.ops.linear(tilec.quantize(torch.randn(2, 64), "uint4", group_size=32), qw, out_dtype=torch.float16)
    with pytest.raises(tilec.ArgumentError, match="32 features"):
        tilec.ops.linear(tilec.quantize(torch.randn(2, 32), "mxfp8_e4m3"), qw, out_dtype=torch.float16)
    with pytest.raises(tilec.ArgumentError, match="out_dtype is for block-scaled"):
        tilec.ops.linear(torch.randn(2, 64).half(), qw, out_dtype=torch.float16)


@pytest.mark.parametrize("variant", ["uint4", "nvfp4", "int8-activations", "w4a8", "nvfp4-activations"])
def test_torch_compile_fullgraph_needs_no_eager_warm_up(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first call of a variant may be inside torch.compile(fullgraph=True, dynamic=True): the kernel is
    compiled inside the torch op, not where dynamo traces (it used to fail there: the spec parser reads files),
    and nvfp4's tensor scales reach the op as tensors (``float(tensor)`` cannot be traced)."""
    import tilec.ops_act_quant
    import tilec.ops_w4a8

    for module, name in ((tilec.ops, "_KERNELS"), (tilec.ops, "_SCALED_KERNELS"),
                         (tilec.ops_act_quant, "_KERNELS"), (tilec.ops_w4a8, "_KERNELS")):
        monkeypatch.setattr(module, name, {})  # nothing compiled yet
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(40, 64, generator=gen)
    bias = torch.randn(40, generator=gen).half()
    x = torch.randn(5, 64, generator=gen).half()
    if variant == "uint4":
        qw, kw = tilec.quantize(w, "uint4", group_size=32), {}
    elif variant == "nvfp4":
        qw, kw = tilec.quantize(w, "nvfp4"), {}
    elif variant == "int8-activations":
        qw, kw = tilec.quantize(w, "int8", group_size=None), {"activations": "int8"}
    elif variant == "w4a8":
        qw, kw = tilec.quantize(w, "uint4", group_size=32, two_level=True), {}
    else:
        qw, kw = tilec.quantize(w, "nvfp4"), {"out_dtype": torch.float16}
        x = tilec.quantize(x.float(), "nvfp4")  # type: ignore[assignment]
    compiled = torch.compile(lambda t: tilec.ops.linear(t, qw, bias, activation="silu", **kw) * 2.0,
                             fullgraph=True, dynamic=True, backend="aot_eager")
    got = compiled(x)
    assert torch.equal(got, tilec.ops.linear(x, qw, bias, activation="silu", **kw) * 2.0)
    if variant in ("uint4", "nvfp4"):  # against float64 (the other variants also quantise x)
        ref = torch.nn.functional.silu(x.double() @ qw.dequantize().double().T + bias.double()) * 2.0
        assert ((got.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10


@pytest.mark.parametrize("fa,fw", [("mxfp8_e4m3", "mxfp4"), ("nvfp4", "nvfp4")])
def test_block_scaled_activations_of_an_empty_batch(fa: str, fw: str) -> None:
    """Zero tokens quantise (MX / nvfp4 reshapes used -1, which 0 rows leave ambiguous) and give [0, N]."""
    qw = tilec.quantize(torch.randn(40, 70), fw)
    qx = tilec.quantize(torch.randn(0, 70), fa)
    assert qx.packed[0].shape[0] == 0 and qx.scales.shape == (0, -(-70 // (16 if fa == "nvfp4" else 32)))
    assert qx.dequantize().shape == (0, 70)
    out = tilec.ops.linear(qx, qw, out_dtype=torch.float16)
    assert out.shape == (0, 40) and out.dtype == torch.float16
