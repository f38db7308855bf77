"""W4A8 for ``tilec.ops.linear``: two-level weights (``tilec.quantize(w, "uint4", two_level=True)``) times
activations quantised per token to int8, on the integer tensor cores.

``torch.ops.tilec.linear_w4a8`` does both steps, so ``tilec.ops.linear`` works under
``torch.compile(fullgraph=True)``:

1. per token (row of ``x``, f16/bf16), the same quantiser as W8A8 (tilec/ops_act_quant.py
   ``quantize_per_token``): ``x_scale = max|x| / 127`` in float32 (an all-zero row takes 1.0),
   ``xq = clamp(round(x / x_scale), -127, 127)`` as int8, rounding to nearest, ties to even; a row holding
   NaN or infinity has a NaN or infinite scale, so its output row is NaN/inf rather than a silent number;
2. the kernel below (examples/w4a8.tile with the epilogue filled in): ``acc = xq @ ((q - z) * s2).T`` in
   int32, then ``act(acc * x_scale[m] * s1[n] + bias[n])`` in float32, rounded once to x's dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from tilec.api import compile as compile_spec
from tilec.errors import ArgumentError
from tilec.formats.qtensor import QTensor
from tilec.ir.packing import PackedLayout
from tilec.ops_act_quant import quantize_per_token
from tilec.ops_epilogue import bias_param, check_activation, epilogue
from tilec.runtime.kernel import Kernel

_SPEC = """
def linear(x: Tensor[M, K, i8], w: Tensor[N, K, {fmt}], s2: Tensor[N, G, u8], zero: Tensor[N, G, u8],
           x_scale: Tensor[M, f32], w_scale: Tensor[N, S], {bias_param}out: Tensor[M, N, T], group: i32):
    for m, n in tiles(M, N):
        acc = zeros([m, n], i32)
        for k in tiles(K):
            acc += x[m, k] @ dequantize(w[n, k], s2, zero, group).T
        y = acc.to(f32) * x_scale[m][:, None] * w_scale[n].to(f32)
        out[m, n] = {result}.to(T)
"""
_FORMATS = frozenset(f"uint{b}" for b in range(1, 9))
_KERNELS: dict[tuple[str, bool, str | None], Kernel] = {}


def _check(fmt: str, activation: str | None) -> None:
    """The variant's names, checked without compiling (traceable by torch.compile; the op compiles)."""
    if fmt not in _FORMATS:  # the only text that reaches the spec: a validated format name
        raise ArgumentError(f"two-level weights have uint1..uint8 codes, not '{fmt}'")
    check_activation(activation)


def _kernel(fmt: str, has_bias: bool, activation: str | None) -> Kernel:
    _check(fmt, activation)
    key = (fmt, has_bias, activation)
    if key not in _KERNELS:
        text = _SPEC.format(fmt=fmt, bias_param=bias_param(has_bias), result=epilogue("y", has_bias, activation))
        _KERNELS[key] = compile_spec(text, name=f"<tilec.ops.linear w4a8 {fmt}>").linear
    return _KERNELS[key]


@torch.library.custom_op("tilec::linear_w4a8", mutates_args=())
def linear_w4a8(x: torch.Tensor, words: torch.Tensor, s2: torch.Tensor, zeros: torch.Tensor,
                channel_scales: torch.Tensor, bias: torch.Tensor | None, format: str,  # noqa: A002
                group: int, in_features: int, activation: str | None = None) -> torch.Tensor:
    """``act(x [M, K] @ W.T + bias)`` for a two-level ``W`` given as its words, s2, zero points and s1."""
    kernel = _kernel(format, bias is not None, activation)
    bits = int(format.removeprefix("uint"))
    qt = QTensor(format, "two_level", (words.shape[0], in_features), group, PackedLayout(bits), (words,), s2, zeros,
                 channel_scales=channel_scales)
    xq, x_scale = quantize_per_token(x)
    out = torch.empty(x.shape[0], words.shape[0], dtype=x.dtype, device=x.device)
    args: list[Any] = [xq, qt, s2, zeros, x_scale, channel_scales] + ([bias] if bias is not None else [])
    kernel(*args, out, group)
    return out


@linear_w4a8.register_fake
def _(x: torch.Tensor, words: torch.Tensor, s2: torch.Tensor, zeros: torch.Tensor, channel_scales: torch.Tensor,
      bias: torch.Tensor | None, format: str, group: int, in_features: int,  # noqa: A002
      activation: str | None = None) -> torch.Tensor:
    return x.new_empty(x.shape[0], words.shape[0])


def linear_two_level(rows: torch.Tensor, qweight: QTensor, bias: torch.Tensor | None,
                     activation: str | None) -> torch.Tensor:
    """``tilec.ops.linear`` for a two-level QTensor; ``rows`` is ``[M, in_features]``, already checked."""
    if qweight.zeros is None or qweight.channel_scales is None:
        raise ArgumentError("a two-level QTensor needs its zero points and channel scales")
    _check(qweight.format, activation)  # validates the format and the activation early
    out: torch.Tensor = torch.ops.tilec.linear_w4a8(rows, qweight.packed[0], qweight.scales, qweight.zeros,
                                                    qweight.channel_scales, bias, qweight.format,
                                                    qweight.group_size, qweight.shape[1], activation)
    return out
