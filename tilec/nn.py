"""Drop-in modules: ``tilec.nn.QuantLinear.from_linear(linear, "uint4", group_size=128)``; W8A8 / FP8 with
``QuantLinear.from_linear(linear, "int8", group_size=None, activations="int8")`` (or ``"fp8_e4m3"`` twice)."""

from __future__ import annotations

import torch

from tilec.formats.qtensor import QTensor, quantize
from tilec.ir.packing import PackedLayout
from tilec.ops import linear


class QuantLinear(torch.nn.Module):
    """A ``torch.nn.Linear`` whose weight is stored quantised (packed words, scales, zero points as buffers)."""

    words: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None
    tensor_scale: torch.Tensor | None
    channel_scales: torch.Tensor | None
    bias: torch.Tensor | None

    def __init__(self, qweight: QTensor, bias: torch.Tensor | None = None, activations: str | None = None):
        super().__init__()
        if activations is not None:  # refuse a weight the W8A8 / FP8 path cannot take now, not at first call
            from tilec.ops_act_quant import weight_codes

            weight_codes(qweight, activations)
        self.activations = activations
        self.in_features, self.out_features = qweight.shape[1], qweight.shape[0]
        self.format, self.group_size, self.scheme = qweight.format, qweight.group_size, qweight.scheme
        self.register_buffer("words", qweight.packed[0])
        self.register_buffer("scales", qweight.scales)
        self.register_buffer("zeros", qweight.zeros)
        self.register_buffer("tensor_scale", qweight.tensor_scale)
        self.register_buffer("channel_scales", qweight.channel_scales)  # two-level (W4A8) weights
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, module: torch.nn.Linear, format: str = "uint4", group_size: int | None = 128,  # noqa: A002
                    activations: str | None = None, **options: object) -> QuantLinear:
        """``activations`` ("int8" / "fp8_e4m3"): quantise inputs per token too (tilec.ops.linear's argument)."""
        qweight = quantize(module.weight, format, group_size=group_size, scale_dtype=module.weight.dtype
                           if module.weight.dtype in (torch.float16, torch.bfloat16) else torch.float16,
                           **options)  # type: ignore[arg-type]
        bias = None if module.bias is None else module.bias.detach().clone()
        return cls(qweight.to(module.weight.device), bias, activations)

    @property
    def qweight(self) -> QTensor:
        from tilec import formats

        return QTensor(self.format, self.scheme, (self.out_features, self.in_features), self.group_size,
                       PackedLayout(formats.get(self.format).bits), (self.words,), self.scales, self.zeros,
                       self.tensor_scale, self.channel_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return linear(x, self.qweight, bias, activations=self.activations)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, format={self.format}, " \
               f"group_size={self.group_size}" + (", two_level" if self.scheme == "two_level" else "") + \
               (f", activations={self.activations}" if self.activations else "")
