"""Ready-made kernels with torch conventions.

``tilec.ops.linear(x, qweight, bias=None)`` computes ``x @ W.T (+ bias)`` for a :class:`tilec.QTensor`
weight ``W`` [out_features, in_features] in an integer format (``uint1``..``uint8`` asymmetric,
``int2``..``int8`` symmetric) or a minifloat/codebook format with group scales (``fp4_e2m1``,
``fp6_e2m3``, ``fp6_e3m2``, ``fp8_e4m3``, ``fp8_e5m2``, ``nf4``) or an OCP MX format (``mxfp4``...``mxint8``,
e8m0 scales) or ``nvfp4``, like ``torch.nn.functional.linear``.  A two-level QTensor
(``tilec.quantize(w, "uint4", group_size=128, two_level=True)``) runs W4A8: x is quantised per token to
int8 and multiplied on the integer tensor cores (``torch.ops.tilec.linear_w4a8``, tilec/ops_w4a8.py);
``activations="int8" | "fp8_e4m3"`` with a per-channel int8 / e4m3 weight runs W8A8 / FP8 x FP8
(``torch.ops.tilec.linear_act_quant``, tilec/ops_act_quant.py).
``x`` may also be a block-scaled QTensor (MX with an MX weight, nvfp4 with nvfp4), through
``torch.ops.tilec.linear_block_scaled``: on sm_100 that product is ``tl.dot_scaled``.
Float ``x`` with weight-only quantisation goes through the torch op ``torch.ops.tilec.linear_packed`` (the
QTensor's tensors are its arguments), so it works under ``torch.compile(fullgraph=True)``.  The kernel is
a tile-language spec (the same as examples/w4a16.tile, with the format and the epilogue filled in),
compiled once per variant.
"""

from __future__ import annotations

from typing import Any

import torch

from tilec.api import compile as compile_spec
from tilec.errors import ArgumentError
from tilec.formats.qtensor import QTensor, scheme_of
from tilec.ir.packing import PackedLayout
from tilec.ir.signature import TABLE_DECODED, is_packed_format
from tilec.ops_act_quant import linear_quantized_activations
from tilec.ops_attention import attention  # noqa: F401  (tilec.ops.attention)
from tilec.ops_decode import decode_attention, merge_attention  # noqa: F401  (tilec.ops.decode_attention)
from tilec.ops_epilogue import bias_param, check_activation, epilogue
from tilec.ops_w4a8 import linear_two_level
from tilec.runtime.kernel import Kernel

_SPEC = """
def linear(x: Tensor[M, K, T], w: Tensor[N, K, {fmt}], scale: Tensor[N, G, {scale_type}], {zero_param}{bias_param}
           out: Tensor[M, N, T], group: i32, tensor_scale: f32):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += x[m, k] @ {weight}.T
        out[m, n] = {result}.to(T)
"""
_KERNELS: dict[tuple[str, bool, str | None], Kernel] = {}


def _check(fmt: str, activation: str | None) -> None:
    """The variant's names, checked without compiling anything (so torch.compile can trace the check: the
    kernel itself is compiled inside the torch op, on its first real call)."""
    if not is_packed_format(fmt):  # the only text that reaches the spec: a validated format name
        raise ArgumentError(f"tilec.ops.linear supports uint1..uint8, int2..int8 and "
                            f"{', '.join(sorted(TABLE_DECODED))}, not '{fmt}'")
    check_activation(activation)


def _kernel(fmt: str, has_bias: bool, activation: str | None = None) -> Kernel:
    _check(fmt, activation)
    key = (fmt, has_bias, activation)
    if key not in _KERNELS:
        signed = not fmt.startswith("uint")  # signed ints and float formats take no zero points
        coded = scheme_of(fmt) in ("mx", "nvfp4")  # scales are 8-bit codes; values come out in f32
        weight = "dequantize(w[n, k], scale, {zero}, group)"
        if fmt == "nvfp4":
            weight = f"({weight} * tensor_scale).to(T)"
        elif coded:
            weight = f"{weight}.to(T)"
        text = _SPEC.format(
            fmt=fmt, scale_type="u8" if coded else "T", weight=weight,
            zero_param="" if signed else "zero: Tensor[N, G, u8], ",
            bias_param=bias_param(has_bias), result=epilogue("acc", has_bias, activation),
        ).replace("{zero}", "None" if signed else "zero")
        _KERNELS[key] = compile_spec(text, name=f"<tilec.ops.linear {fmt}>").linear
    return _KERNELS[key]


@torch.library.custom_op("tilec::linear_packed", mutates_args=())
def linear_packed(x: torch.Tensor, words: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                  bias: torch.Tensor | None, format: str, group: int, in_features: int,  # noqa: A002
                  tensor_scale: torch.Tensor | None = None, activation: str | None = None) -> torch.Tensor:
    """``act(x [M, K] @ W.T + bias)`` for ``W`` given as its packed words, group scales and (uintB) zero points;
    ``tensor_scale``: nvfp4's one-element fp32 tensor scale (a tensor, so torch.compile never has to read it)."""
    kernel = _kernel(format, bias is not None, activation)
    scheme = scheme_of(format)
    bits = int(kernel.ir().param("w").bits)  # type: ignore[union-attr]
    qt = QTensor(format, scheme, (words.shape[0], in_features), group, PackedLayout(bits), (words,), scales, zeros,
                 tensor_scale if scheme == "nvfp4" else None)
    out = torch.empty(x.shape[0], words.shape[0], dtype=x.dtype, device=x.device)
    args: list[Any] = [x, qt, scales] + ([zeros] if format.startswith("uint") else [])
    kernel(*args, *([bias] if bias is not None else []), out, group,
           float(tensor_scale) if tensor_scale is not None else 1.0)
    return out


@linear_packed.register_fake
def _(x: torch.Tensor, words: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
      bias: torch.Tensor | None, format: str, group: int, in_features: int,  # noqa: A002
      tensor_scale: torch.Tensor | None = None, activation: str | None = None) -> torch.Tensor:
    return x.new_empty(x.shape[0], words.shape[0])


def linear(x: torch.Tensor | QTensor, qweight: QTensor, bias: torch.Tensor | None = None,
           activation: str | None = None, activations: str | None = None,
           out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``activation(x @ W.T + bias)`` for ``x [..., in_features]``; returns ``[..., out_features]`` in x's dtype.

    ``activation`` (None, "silu", "gelu" (exact) or "relu") is fused into the kernel's epilogue.
    ``activations`` quantises x per token before the product (tilec/ops_act_quant.py): "int8" with a
    per-channel int8 weight is W8A8, "fp8_e4m3" with a per-channel fp8_e4m3 weight is FP8 x FP8; None
    keeps x in 16 bits (weight-only quantisation).

    The weight's scales are used in x's dtype (converted if they were stored in another).

    ``x`` may itself be a block-scaled QTensor ``[tokens, in_features]`` (``tilec.quantize(x, "mxfp8_e4m3")``)
    with an MX weight, or an nvfp4 one with an nvfp4 weight; ``out_dtype`` (float16 or bfloat16) is then
    required.  Both operands stay block-scaled: on sm_100 the product is Blackwell's block-scaled MMA
    (``tl.dot_scaled``), elsewhere both are dequantised in registers.
    """
    if isinstance(x, QTensor):
        if activations is not None:
            raise ArgumentError("activations= quantises float x; this x is already a block-scaled QTensor")
        return _linear_block_scaled(x, qweight, bias, activation, out_dtype)
    if out_dtype is not None:
        raise ArgumentError("out_dtype is for block-scaled (QTensor) activations; float x gives x's dtype")
    if not isinstance(qweight, QTensor) or qweight.scheme not in ("affine", "scaled", "mx", "nvfp4", "two_level"):
        raise ArgumentError("tilec.ops.linear takes a QTensor in an integer, minifloat/codebook or MX format",
                            hint="tilec.quantize(weight, 'uint4', group_size=128)")
    out_features, in_features = qweight.shape
    if x.shape[-1] != in_features:
        raise ArgumentError(f"x has {x.shape[-1]} features but the weight expects {in_features}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise ArgumentError(f"x must be float16 or bfloat16, got {x.dtype}")
    if bias is not None and (bias.shape != (out_features,) or bias.dtype != x.dtype):
        raise ArgumentError(f"bias must be [{out_features}] of {x.dtype}, got {tuple(bias.shape)} {bias.dtype}")
    rows = x.reshape(-1, in_features)
    if qweight.scheme == "two_level":  # W4A8: activations quantised per token to int8 (tilec/ops_w4a8.py)
        if activations not in (None, "int8"):
            raise ArgumentError(f"two-level weights take int8 activations (W4A8), not activations='{activations}'")
        return linear_two_level(rows, qweight, bias, activation).reshape(*x.shape[:-1], out_features)
    if activations is not None:
        out = linear_quantized_activations(rows, qweight, bias, activation, activations)
        return out.reshape(*x.shape[:-1], out_features)
    _check(qweight.format, activation)  # validates the format and the activation early
    coded = qweight.scheme in ("mx", "nvfp4")  # scales are e8m0 / e4m3 codes, used as they are
    scales = qweight.scales if coded else qweight.scales.to(x.dtype)
    out = torch.ops.tilec.linear_packed(rows, qweight.packed[0], scales, qweight.zeros, bias, qweight.format,
                                        qweight.group_size, in_features, qweight.tensor_scale, activation)
    return out.reshape(*x.shape[:-1], out_features)


_SCALED_SPEC = """
def linear(a: Tensor[M, K, {fa}], a_scale: Tensor[M, G, u8], w: Tensor[N, K, {fw}], w_scale: Tensor[N, G, u8],
           {bias_param}out: Tensor[M, N, T], tensor_scale: f32):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += dequantize(a[m, k], a_scale, None, {g}).to(T) @ dequantize(w[n, k], w_scale, None, {g}).to(T).T
        out[m, n] = {result}.to(T)
"""
_SCALED_KERNELS: dict[tuple[str, str, bool, str | None], Kernel] = {}


def _check_scaled(fa: str, fw: str, activation: str | None) -> None:
    """As :func:`_check`, for block-scaled activations."""
    schemes = (scheme_of(fa) if is_packed_format(fa) else None, scheme_of(fw) if is_packed_format(fw) else None)
    if schemes not in (("mx", "mx"), ("nvfp4", "nvfp4")):  # validated names only reach the spec
        raise ArgumentError(f"block-scaled activations need both operands MX (any mxfp*/mxint8) or both nvfp4, "
                            f"not {fa} x {fw}")
    check_activation(activation)


def _scaled_kernel(fa: str, fw: str, has_bias: bool, activation: str | None) -> Kernel:
    _check_scaled(fa, fw, activation)
    key = (fa, fw, has_bias, activation)
    if key not in _SCALED_KERNELS:
        text = _SCALED_SPEC.format(fa=fa, fw=fw, g=16 if fa == "nvfp4" else 32, bias_param=bias_param(has_bias),
                                   result=epilogue("acc * tensor_scale", has_bias, activation))
        _SCALED_KERNELS[key] = compile_spec(text, name=f"<tilec.ops.linear {fa} x {fw}>").linear
    return _SCALED_KERNELS[key]


@torch.library.custom_op("tilec::linear_block_scaled", mutates_args=())
def linear_block_scaled(a_words: torch.Tensor, a_scales: torch.Tensor, w_words: torch.Tensor, w_scales: torch.Tensor,
                        bias: torch.Tensor | None, a_format: str, w_format: str, in_features: int,
                        tensor_scale: float, activation: str | None, out_dtype: torch.dtype,
                        a_tensor_scale: torch.Tensor | None = None,
                        w_tensor_scale: torch.Tensor | None = None) -> torch.Tensor:
    """``act((A @ W.T) * tensor_scale + bias)`` for block-scaled ``A`` [M, K] and ``W`` [N, K] given as their
    packed words and scale codes (``tensor_scale``: the product of nvfp4's two tensor scales, else 1; also
    multiplied by ``a_tensor_scale`` and ``w_tensor_scale``, one-element tensors, read here rather than
    where torch.compile traces)."""
    for extra in (a_tensor_scale, w_tensor_scale):
        tensor_scale *= float(extra) if extra is not None else 1.0
    kernel = _scaled_kernel(a_format, w_format, bias is not None, activation)
    operands: list[Any] = []
    for name, fmt, words, scales in (("a", a_format, a_words, a_scales), ("w", w_format, w_words, w_scales)):
        bits = int(kernel.ir().param(name).bits)  # type: ignore[union-attr]
        block = 16 if fmt == "nvfp4" else 32
        tensor_scale_one = torch.tensor(1.0) if fmt == "nvfp4" else None  # applied once, in the epilogue
        qt = QTensor(fmt, scheme_of(fmt), (words.shape[0], in_features), block, PackedLayout(bits), (words,), scales,
                     None, tensor_scale_one)
        operands += [qt, scales]
    out = torch.empty(a_words.shape[0], w_words.shape[0], dtype=out_dtype, device=a_words.device)
    kernel(*operands, *([bias] if bias is not None else []), out, tensor_scale)
    return out


@linear_block_scaled.register_fake
def _(a_words: torch.Tensor, a_scales: torch.Tensor, w_words: torch.Tensor, w_scales: torch.Tensor,
      bias: torch.Tensor | None, a_format: str, w_format: str, in_features: int, tensor_scale: float,
      activation: str | None, out_dtype: torch.dtype, a_tensor_scale: torch.Tensor | None = None,
      w_tensor_scale: torch.Tensor | None = None) -> torch.Tensor:
    return a_words.new_empty(a_words.shape[0], w_words.shape[0], dtype=out_dtype)


def _linear_block_scaled(x: QTensor, qweight: QTensor, bias: torch.Tensor | None, activation: str | None,
                         out_dtype: torch.dtype | None) -> torch.Tensor:
    if not isinstance(qweight, QTensor):
        raise ArgumentError("tilec.ops.linear takes a QTensor weight")
    if out_dtype not in (torch.float16, torch.bfloat16):
        raise ArgumentError(f"block-scaled activations need out_dtype=torch.float16 or torch.bfloat16, got {out_dtype}")
    out_features, in_features = qweight.shape
    if x.shape[1] != in_features:
        raise ArgumentError(f"x has {x.shape[1]} features but the weight expects {in_features}")
    if bias is not None and (bias.shape != (out_features,) or bias.dtype != out_dtype):
        raise ArgumentError(f"bias must be [{out_features}] of {out_dtype}, got {tuple(bias.shape)} {bias.dtype}")
    _check_scaled(x.format, qweight.format, activation)  # validates formats early
    return torch.ops.tilec.linear_block_scaled(x.packed[0], x.scales, qweight.packed[0], qweight.scales, bias,
                                               x.format, qweight.format, in_features, 1.0, activation,
                                               out_dtype, x.tensor_scale, qweight.tensor_scale)
