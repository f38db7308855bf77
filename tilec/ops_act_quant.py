"""W8A8 and FP8 x FP8 for ``tilec.ops.linear``: activations quantised per token, weights per channel.

    qw = tilec.quantize(w, "int8", group_size=None)        # per-channel int8 weights
    y = tilec.ops.linear(x, qw, activations="int8")        # W8A8: int8 x int8 -> int32 tensor cores
    qw = tilec.quantize(w, "fp8_e4m3", group_size=None)    # per-channel e4m3 weights
    y = tilec.ops.linear(x, qw, activations="fp8_e4m3")    # FP8 x FP8 -> f32 tensor cores (sm_89+)

Shapes: ``x [M, K]`` (f16/bf16); the weight's packed words ``[N, W]`` int32 hold one byte per code,
little-endian (tilec.ir.packing's dense stream at 8 bits), so they are *viewed*, not copied, as the
``[N, K]`` int8 / float8_e4m3fn matrix the kernel reads (row stride ``4 W``); ``w_scale [N]`` f32 is the
per-channel scale.  ``torch.ops.tilec.linear_act_quant`` does both steps, so the whole thing works under
``torch.compile(fullgraph=True)``:

1. per token (row of x), in float32: ``x_scale = max|x| / qmax`` (127 for int8, 448 for e4m3; an all-zero
   row takes 1.0), then ``xq = x / x_scale`` rounded to nearest even (int8: clamped to [-127, 127]; e4m3:
   torch's cast, exact rounding, never past 448 by construction).  A row holding NaN or infinity has a
   NaN/inf scale, so its output row is NaN/inf, never a silent number;
2. the kernel below: ``acc = xq @ wq.T`` (int32, or f32 for fp8), then
   ``act(acc * x_scale[m] * w_scale[n] + bias[n])`` in float32, rounded once to x's dtype.
"""

from __future__ import annotations

import torch

from tilec.api import compile as compile_spec
from tilec.errors import ArgumentError
from tilec.formats.qtensor import QTensor
from tilec.ops_epilogue import bias_param, check_activation, epilogue
from tilec.runtime.kernel import Kernel

_SPEC = """
def linear(x: Tensor[M, K, {dtype}], w: Tensor[N, K, {dtype}], x_scale: Tensor[M, f32], w_scale: Tensor[N, f32],
           {bias_param}out: Tensor[M, N, T]):
    for m, n in tiles(M, N):
        acc = zeros([m, n], {acc})
        for k in tiles(K):
            acc += x[m, k] @ w[n, k].T
        y = acc.to(f32) * x_scale[m][:, None] * w_scale[n]
        out[m, n] = {result}.to(T)
"""
# activation format -> (language dtype, accumulator, torch dtype, largest code magnitude)
FORMATS: dict[str, tuple[str, str, torch.dtype, float]] = {
    "int8": ("i8", "i32", torch.int8, 127.0),
    "fp8_e4m3": ("f8e4m3", "f32", torch.float8_e4m3fn, 448.0),
}
_KERNELS: dict[tuple[str, bool, str | None], Kernel] = {}


def _check(fmt: str, activation: str | None) -> None:
    """The variant's names, checked without compiling (traceable by torch.compile; the op compiles)."""
    if fmt not in FORMATS:  # the only text that reaches the spec: a validated name from this table
        raise ArgumentError(f"activations='{fmt}' is not supported", hint="one of: " + ", ".join(FORMATS))
    check_activation(activation)


def _kernel(fmt: str, has_bias: bool, activation: str | None) -> Kernel:
    _check(fmt, activation)
    key = (fmt, has_bias, activation)
    if key not in _KERNELS:
        dtype, acc, _, _ = FORMATS[fmt]
        text = _SPEC.format(dtype=dtype, acc=acc, bias_param=bias_param(has_bias),
                            result=epilogue("y", has_bias, activation))
        _KERNELS[key] = compile_spec(text, name=f"<tilec.ops.linear {fmt} activations>").linear
    return _KERNELS[key]


def quantize_per_token(x: torch.Tensor, fmt: str = "int8") -> tuple[torch.Tensor, torch.Tensor]:
    """``x [M, K]`` -> ``(codes [M, K] int8 or float8_e4m3fn, float32 scales [M])``: symmetric, absmax / qmax
    per row, round to nearest even (module docstring)."""
    _, _, torch_dtype, qmax = FORMATS[fmt]
    xf = x.to(torch.float32)
    scale = xf.abs().amax(dim=-1) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    scaled = xf / scale[:, None]
    if torch_dtype == torch.int8:
        return torch.nan_to_num(torch.round(scaled).clamp(-qmax, qmax), nan=0.0).to(torch.int8), scale
    return scaled.to(torch_dtype), scale  # e4m3fn: |scaled| <= 448 for finite rows; NaN stays NaN


@torch.library.custom_op("tilec::linear_act_quant", mutates_args=())
def linear_act_quant(x: torch.Tensor, weight: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None,
                     format: str, activation: str | None = None) -> torch.Tensor:  # noqa: A002
    """``act(quant(x) [M, K] @ weight.T * scales + bias)`` for ``weight [N, K]`` int8 / float8_e4m3fn codes."""
    kernel = _kernel(format, bias is not None, activation)
    xq, x_scale = quantize_per_token(x, format)
    out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype, device=x.device)
    kernel(xq, weight, x_scale, w_scale, *([bias] if bias is not None else []), out)
    return out


@linear_act_quant.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None,
      format: str, activation: str | None = None) -> torch.Tensor:  # noqa: A002
    return x.new_empty(x.shape[0], weight.shape[0])


def weight_codes(qweight: QTensor, fmt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel weight as the kernel reads it: ``(codes [N, K] viewed from the packed words, w_scale [N])``,
    after checking that ``qweight`` is what ``activations=fmt`` needs."""
    hint = f"tilec.quantize(weight, '{fmt}', group_size=None)"
    if qweight.format != fmt:
        raise ArgumentError(f"activations='{fmt}' needs a weight in {fmt}, not {qweight.format}", hint=hint)
    if qweight.group_size != qweight.shape[1] or qweight.zeros is not None:
        raise ArgumentError(f"activations='{fmt}' needs symmetric per-channel weight scales (one group per row), "
                            f"not groups of {qweight.group_size}" + (" with zero points" if qweight.zeros is not None
                                                                      else ""), hint=hint)
    # the layout's fields, not a PackedLayout(8) built for comparison: dynamo cannot trace that constructor
    if (qweight.layout.bits, qweight.layout.order, qweight.layout.planes) != (8, (0,), (8,)) \
            or len(qweight.packed) != 1:
        raise ArgumentError(f"activations='{fmt}' needs the dense 8-bit packing, not {qweight.layout}", hint=hint)
    codes = qweight.packed[0].view(torch.uint8).view(FORMATS[fmt][2])[:, : qweight.shape[1]]
    return codes, qweight.scales[:, 0].to(torch.float32)


def linear_quantized_activations(rows: torch.Tensor, qweight: QTensor, bias: torch.Tensor | None,
                                 activation: str | None, fmt: str) -> torch.Tensor:
    """``tilec.ops.linear(..., activations=fmt)``; ``rows`` is ``[M, in_features]``, already checked."""
    _check(fmt, activation)  # validates the format and the activation early
    codes, w_scale = weight_codes(qweight, fmt)
    out: torch.Tensor = torch.ops.tilec.linear_act_quant(rows, codes, w_scale, bias, fmt, activation)
    return out
