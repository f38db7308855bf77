"""QTensor: a quantised ``[out_features, in_features]`` weight, packed, with what dequantises it.

Shapes (``g`` = group size along ``in_features``, ``G = ceil(in / g)``, ``W_p`` = 32-bit words per row
of plane ``p`` of the packing layout):

==============  ==============================  ==========================================================
field           shape / dtype                   meaning
==============  ==============================  ==========================================================
``packed``      tuple of int32 ``[out, W_p]``   codes packed along ``in`` by ``layout`` (tilec.ir.packing)
``scales``      ``[out, G]``                    affine / scaled: float scales; mx: e8m0 codes (uint8);
                                                nvfp4: fp8_e4m3 codes (uint8); two_level: integer s2 (uint8)
``zeros``       uint8 ``[out, G]`` or None      asymmetric affine and two_level zero points
``tensor_scale`` float32 ``[]`` or None         nvfp4's per-tensor scale
``channel_scales`` ``[out]`` or None            two_level: the float per-channel scale s1
==============  ==============================  ==========================================================

Schemes: ``affine`` (int/uint codes, ``(q - zero) * scale``), ``scaled`` (minifloat or codebook codes
times a per-group float scale ``amax / format.max``), ``mx`` (OCP MX blocks of 32), ``nvfp4``, and
``two_level`` (QServe's progressive scheme, ``quantize(w, "uint4", group_size=128, two_level=True)``:
``s1[n] * ((q - zero) * s2)`` where ``(q - zero) * s2`` is an exact int8; tilec.formats.two_level).
Codes are never requantised after import: ``from_gptq`` / ``from_awq`` repack the integer codes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from tilec.formats import registry
from tilec.formats.affine import dequantize_affine, quantize_affine
from tilec.formats.codebook import Codebook
from tilec.formats.integer import IntFormat
from tilec.formats.minifloat import MinifloatFormat
from tilec.formats.mx import MXFormat
from tilec.formats.nvfp4 import NVFP4Format
from tilec.formats.two_level import dequantize_two_level, quantize_two_level
from tilec.ir.packing import PackedLayout, pack_planes, unpack


@dataclass(frozen=True)
class QTensor:
    format: str
    scheme: str  # "affine" | "scaled" | "mx" | "nvfp4"
    shape: tuple[int, int]
    group_size: int
    layout: PackedLayout
    packed: tuple[torch.Tensor, ...]
    scales: torch.Tensor
    zeros: torch.Tensor | None = None
    tensor_scale: torch.Tensor | None = None
    channel_scales: torch.Tensor | None = None

    @property
    def bits(self) -> int:
        return self.layout.bits

    @property
    def nbytes(self) -> int:
        extra = [self.scales] + [t for t in (self.zeros, self.tensor_scale, self.channel_scales) if t is not None]
        return sum(t.numel() * t.element_size() for t in (*self.packed, *extra))

    def codes(self) -> torch.Tensor:
        """The element codes, uint8 ``[out, in]`` (unpacked by the layout's plan)."""
        words = self.packed if len(self.packed) > 1 else self.packed[0]
        return unpack(words, self.layout, self.shape[1])

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight the codes stand for, ``[out, in]``, computed in float32."""
        fmt = registry.get(self.format)
        codes = self.codes()
        if self.scheme == "affine":
            assert isinstance(fmt, IntFormat)
            return dequantize_affine(codes, self.scales, self.zeros, fmt, self.group_size, dtype)
        if self.scheme == "two_level":
            assert self.zeros is not None and self.channel_scales is not None
            return dequantize_two_level(codes, self.scales, self.zeros, self.channel_scales, self.group_size, dtype)
        if self.scheme == "mx":
            assert isinstance(fmt, MXFormat)
            return fmt.dequantize(codes, self.scales, dtype)
        if self.scheme == "nvfp4":
            assert isinstance(fmt, NVFP4Format) and self.tensor_scale is not None
            return fmt.dequantize(codes, self.scales, self.tensor_scale, dtype)
        assert isinstance(fmt, (MinifloatFormat, Codebook))
        values = fmt.decode(codes).to(torch.float32)
        return (_grouped(values, self.group_size) * self.scales.to(torch.float32)[..., None]).reshape(
            values.shape[0], -1)[:, : self.shape[1]].to(dtype)

    def to(self, device: Any) -> QTensor:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return replace(self, packed=tuple(t.to(device) for t in self.packed), scales=self.scales.to(device),
                       zeros=move(self.zeros), tensor_scale=move(self.tensor_scale),
                       channel_scales=move(self.channel_scales))

    def __repr__(self) -> str:
        return (f"QTensor({self.format}, {self.scheme}, shape={self.shape}, group_size={self.group_size}, "
                f"layout={self.layout}, {self.nbytes} bytes)")


def scheme_of(format: str) -> str:  # noqa: A002
    """How a QTensor in ``format`` dequantises: "affine", "scaled", "mx" or "nvfp4"."""
    fmt = registry.get(format)
    if isinstance(fmt, IntFormat):
        return "affine"
    if isinstance(fmt, MXFormat):
        return "mx"
    if isinstance(fmt, NVFP4Format):
        return "nvfp4"
    if isinstance(fmt, (MinifloatFormat, Codebook)):
        return "scaled"
    raise ValueError(f"format '{format}' cannot quantise a weight (it is a scale format)")


def quantize(weight: torch.Tensor, format: str, group_size: int | None = 128, *,  # noqa: A002
             symmetric: bool | None = None, scale_dtype: torch.dtype = torch.float16,
             two_level: bool = False) -> QTensor:
    """Quantise an ``[out_features, in_features]`` weight, groups along ``in_features``.

    ``group_size=None`` means one group per row (per channel).  ``symmetric`` defaults to True for
    signed integer formats and False for unsigned ones.  MX formats have blocks of 32 and nvfp4 of 16,
    fixed by their specifications.  ``two_level=True`` (unsigned integer formats, asymmetric) quantises
    QServe's way: per channel to int8 with a float scale (``scale_dtype``), then per group to ``uintB``
    with uint8 integer scales and zero points (scheme ``two_level``, for the W4A8 kernel).
    """
    if weight.dim() != 2:
        raise ValueError(f"quantize expects a 2-D [out_features, in_features] weight, got shape {tuple(weight.shape)}")
    fmt = registry.get(format)
    out, inp = weight.shape
    g = inp if group_size is None else int(group_size)
    w = weight.detach().to("cpu", torch.float32)
    zeros = tensor_scale = None
    if two_level:
        if symmetric:
            raise ValueError("two-level quantisation is asymmetric (uint codes with integer zero points)")
        codes, s2, zeros, s1 = quantize_two_level(w, format, g, scale_dtype)
        layout = PackedLayout(fmt.bits)
        return QTensor(format, "two_level", (out, inp), g, layout, pack_planes(codes, layout), s2, zeros,
                       channel_scales=s1)
    if isinstance(fmt, IntFormat):
        sym = fmt.signed if symmetric is None else symmetric
        codes, scales, zeros = quantize_affine(w, fmt, g, sym, scale_dtype)
        scheme, bits = "affine", fmt.bits
    elif isinstance(fmt, MXFormat):
        _fixed_group(format, g, fmt.block_size, group_size)
        codes, scales = fmt.quantize(w)
        scheme, bits, g = "mx", fmt.bits, fmt.block_size
    elif isinstance(fmt, NVFP4Format):
        _fixed_group(format, g, fmt.block_size, group_size)
        codes, scales, tensor_scale = fmt.quantize(w)
        scheme, bits, g = "nvfp4", fmt.bits, fmt.block_size
    elif isinstance(fmt, (MinifloatFormat, Codebook)):
        if not torch.isfinite(w).all():
            raise ValueError("quantize: the weights contain NaN or infinity")
        amax = _grouped(w, g).abs().amax(dim=-1)
        scales = (amax / float(fmt.max)).to(scale_dtype)
        scales = torch.where(scales == 0, torch.ones_like(scales), scales)
        scaled = _grouped(w, g) / scales.to(torch.float32)[..., None]
        codes = fmt.encode(scaled.reshape(out, -1)[:, :inp].contiguous())
        scheme, bits = "scaled", fmt.bits
    else:
        raise ValueError(f"format '{format}' cannot quantise a weight (it is a scale format)")
    layout = PackedLayout(bits)
    return QTensor(format, scheme, (out, inp), g, layout, pack_planes(codes, layout), scales, zeros, tensor_scale)


def from_gptq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, bits: int = 4,
              g_idx: torch.Tensor | None = None, zeros_minus_one: bool = True) -> QTensor:
    """Import GPTQ tensors without requantising.

    GPTQ's layout (AutoGPTQ / exllama "v1"): ``qweight`` int32 ``[in * bits / 32, out]`` packs ``in``
    along rows, code ``j`` of a word at bits ``bits * j``; ``qzeros`` int32 ``[G, out * bits / 32]`` packs
    ``out`` the same way along columns and stores ``zero - 1`` (``zeros_minus_one``); ``scales``
    ``[G, out]``.  ``g_idx`` (act-order) must describe contiguous groups.
    """
    rows, out = qweight.shape
    inp = rows * 32 // bits
    groups = scales.shape[0]
    if g_idx is not None:
        expected = torch.arange(inp, device=g_idx.device) // (inp // groups)
        if not torch.equal(g_idx.to(torch.int64), expected):
            raise ValueError("act-order g_idx (columns not in contiguous groups) is not supported: "
                             "reorder in_features by g_idx first")
    codes = _unpack_words(qweight.t().contiguous(), bits, inp)  # [out, in]
    zeros = _unpack_words(qzeros, bits, out).t().contiguous()  # [out, G]
    if zeros_minus_one:
        zeros = ((zeros.to(torch.int16) + 1) & (2**bits - 1)).to(torch.uint8)
    return _affine(codes, scales.t().contiguous(), zeros, bits, inp // groups)


AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # AWQ packs element AWQ_ORDER[k] of each 8 into nibble k


def from_awq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_size: int) -> QTensor:
    """Import AWQ (GEMM layout) tensors without requantising.

    ``qweight`` int32 ``[in, out / 8]`` packs ``out`` along columns, nibble ``k`` of a word holding output
    feature ``8 * c + AWQ_ORDER[k]``; ``qzeros`` int32 ``[G, out / 8]`` likewise; ``scales`` ``[G, out]``.
    """
    cols = qweight.shape[1]
    codes = _unpack_words(qweight, 4, cols * 8, AWQ_ORDER).t().contiguous()  # [out, in]
    zeros = _unpack_words(qzeros, 4, qzeros.shape[1] * 8, AWQ_ORDER).t().contiguous()  # [out, G]
    return _affine(codes, scales.t().contiguous(), zeros, 4, group_size)


def _affine(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int, group: int) -> QTensor:
    layout = PackedLayout(bits)
    return QTensor(f"uint{bits}", "affine", (codes.shape[0], codes.shape[1]), group, layout,
                   pack_planes(codes, layout), scales, zeros)


def _unpack_words(words: torch.Tensor, bits: int, n: int, order: tuple[int, ...] = ()) -> torch.Tensor:
    """Codes packed along the last axis in little-endian fields, optionally permuted within words."""
    layout = PackedLayout(bits, order) if order else PackedLayout(bits)
    return unpack(words.cpu().to(torch.int32), layout, n)


def _grouped(x: torch.Tensor, g: int) -> torch.Tensor:
    pad = -x.shape[-1] % g
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(*x.shape[:-1], -1, g)


def _fixed_group(name: str, g: int, block: int, requested: int | None) -> None:
    if requested not in (None, 128, block):  # 128 is quantize()'s default; MX/nvfp4 blocks are fixed
        raise ValueError(f"{name} has blocks of {block} by specification; group_size={g} is not allowed")
