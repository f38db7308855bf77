"""Ready-made kernels with torch conventions.

``tilec.ops.linear(x, qweight, bias=None)`` computes ``x @ W.T (+ bias)`` for a :class:`tilec.QTensor`
weight ``W`` [out_features, in_features] in an integer format (``uint1``..``uint8`` asymmetric,
``int2``..``int8`` symmetric) or a minifloat/codebook format with group scales (``fp4_e2m1``,
``fp6_e2m3``, ``fp6_e3m2``, ``fp8_e4m3``, ``fp8_e5m2``, ``nf4``) or an OCP MX format (``mxfp4``...``mxint8``,
e8m0 scales) or ``nvfp4``, like ``torch.nn.functional.linear``.  A two-level QTensor
(``tilec.quantize(w, "uint4", group_size=128, two_level=True)``) runs W4A8: x is quantised per token to
int8 and multiplied on the integer tensor cores (``torch.ops.tilec.linear_w4a8``, tilec/ops_w4a8.py).
It goes through the torch op ``torch.ops.tilec.linear_packed`` (the QTensor's tensors are its
arguments), so it works under ``torch.compile(fullgraph=True)``.  The kernel is a tile-language spec
(the same as examples/w4a16.tile, with the format and the epilogue filled in), compiled once per variant.
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
_ACTIVATIONS = {None: "{}", "silu": "silu({})", "gelu": "gelu({})", "relu": "maximum({}, 0.0)"}
_KERNELS: dict[tuple[str, bool, str | None], Kernel] = {}


def _kernel(fmt: str, has_bias: bool, activation: str | None = None) -> Kernel:
    if not is_packed_format(fmt):  # the only text that reaches the spec: a validated format name
        raise ArgumentError(f"tilec.ops.linear supports uint1..uint8, int2..int8 and "
                            f"{', '.join(sorted(TABLE_DECODED))}, not '{fmt}'")
    if activation not in _ACTIVATIONS:
        raise ArgumentError(f"unknown activation '{activation}'", hint="one of: silu, gelu, relu, or None")
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
            bias_param="bias: Tensor[N, T], " if has_bias else "",
            result="(" + _ACTIVATIONS[activation].format("acc + bias[n]" if has_bias else "acc") + ")",
        ).replace("{zero}", "None" if signed else "zero")
        _KERNELS[key] = compile_spec(text, name=f"<tilec.ops.linear {fmt}>").linear
    return _KERNELS[key]


@torch.library.custom_op("tilec::linear_packed", mutates_args=())
def linear_packed(x: torch.Tensor, words: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                  bias: torch.Tensor | None, format: str, group: int, in_features: int,  # noqa: A002
                  tensor_scale: float = 1.0, activation: str | None = None) -> torch.Tensor:
    """``act(x [M, K] @ W.T + bias)`` for ``W`` given as its packed words, group scales and (uintB) zero points."""
    kernel = _kernel(format, bias is not None, activation)
    scheme = scheme_of(format)
    bits = int(kernel.ir().param("w").bits)  # type: ignore[union-attr]
    qt = QTensor(format, scheme, (words.shape[0], in_features), group, PackedLayout(bits), (words,), scales, zeros,
                 torch.tensor(tensor_scale) if scheme == "nvfp4" else None)
    out = torch.empty(x.shape[0], words.shape[0], dtype=x.dtype, device=x.device)
    args: list[Any] = [x, qt, scales] + ([zeros] if format.startswith("uint") else [])
    kernel(*args, *([bias] if bias is not None else []), out, group, tensor_scale)
    return out


@linear_packed.register_fake
def _(x: torch.Tensor, words: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
      bias: torch.Tensor | None, format: str, group: int, in_features: int,  # noqa: A002
      tensor_scale: float = 1.0, activation: str | None = None) -> torch.Tensor:
    return x.new_empty(x.shape[0], words.shape[0])


def linear(x: torch.Tensor, qweight: QTensor, bias: torch.Tensor | None = None,
           activation: str | None = None, activations: str | None = None) -> torch.Tensor:
    """``activation(x @ W.T + bias)`` for ``x [..., in_features]``; returns ``[..., out_features]`` in x's dtype.

    ``activation`` (None, "silu", "gelu" (exact) or "relu") is fused into the kernel's epilogue.
    ``activations`` quantises x per token before the product (tilec/ops_act_quant.py): "int8" with a
    per-channel int8 weight is W8A8, "fp8_e4m3" with a per-channel fp8_e4m3 weight is FP8 x FP8; None
    keeps x in 16 bits (weight-only quantisation).

    The weight's scales are used in x's dtype (converted if they were stored in another).
    """
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
    _kernel(qweight.format, bias is not None, activation)  # validates the format and the activation early
    coded = qweight.scheme in ("mx", "nvfp4")  # scales are e8m0 / e4m3 codes, used as they are
    scales = qweight.scales if coded else qweight.scales.to(x.dtype)
    tensor_scale = float(qweight.tensor_scale) if qweight.tensor_scale is not None else 1.0
    out = torch.ops.tilec.linear_packed(rows, qweight.packed[0], scales, qweight.zeros, bias, qweight.format,
                                        qweight.group_size, in_features, tensor_scale, activation)
    return out.reshape(*x.shape[:-1], out_features)
