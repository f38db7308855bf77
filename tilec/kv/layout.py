"""Storage layout of a quantised KV cache: the formats and the split-plane byte packing.

A token's head vector of ``D`` channels in a ``b``-bit integer format is stored as ``D // P`` bytes, with
``P = 8 // b`` planes (int8: 1, int4: 2, int2: 4). Byte ``j`` holds channel ``j + i * (D // P)`` in bits
``[i * b, (i + 1) * b)`` for plane ``i = 0 .. P - 1``::

    int4, D = 8 (Dp = 4):   byte j = | ch j+4 (bits 7..4) | ch j (bits 3..0) |
    int2, D = 8 (Dp = 2):   byte j = | ch j+6 | ch j+4 | ch j+2 | ch j |      (2 bits each, plane 3 on top)

Why split planes rather than adjacent channels in a byte: a kernel that loads ``Dp`` consecutive bytes and
shifts by ``i * b`` gets channels ``i * Dp .. (i + 1) * Dp - 1`` as one contiguous slice, so the planes
meet contiguous slices of q (``q[i*Dp:(i+1)*Dp]``) with no interleave shuffle. fp8 codes are one byte per
channel (P = 1), kept as the torch float8 dtype.
"""

from __future__ import annotations

import torch

from tilec.errors import ArgumentError

#: The cache formats: unsigned asymmetric integers (scale and zero) and OCP fp8 (scale only).
KV_FORMATS: tuple[str, ...] = ("int8", "int4", "int2", "fp8_e4m3", "fp8_e5m2")
INT_FORMATS: tuple[str, ...] = ("int8", "int4", "int2")
FP8_DTYPES: dict[str, torch.dtype] = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
#: Largest finite magnitude of each fp8 format: x / scale is clamped to it before conversion (e4m3fn has no
#: inf and torch saturates, but e5m2 would round past 57344 to inf).
FP8_MAX: dict[str, float] = {"fp8_e4m3": 448.0, "fp8_e5m2": 57344.0}
_BITS = {"int8": 8, "int4": 4, "int2": 2, "fp8_e4m3": 8, "fp8_e5m2": 8}


def check_format(fmt: object) -> str:
    if fmt not in _BITS:
        raise ArgumentError(f"KV cache format must be one of {KV_FORMATS}, got {fmt!r}")
    return str(fmt)


def bits(fmt: str) -> int:
    """Bits per stored code: 8, 4 or 2."""
    return _BITS[check_format(fmt)]


def planes(fmt: str) -> int:
    """Channels per stored byte (P): 8 // bits for the integer formats, 1 for fp8."""
    return 8 // bits(fmt)


def is_fp8(fmt: str) -> bool:
    return check_format(fmt) in FP8_DTYPES


def packed_dim(head_dim: int, fmt_bits: int) -> int:
    """D // P, raising ArgumentError when P does not divide D."""
    p = _planes_of_bits(fmt_bits)
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % p:
        raise ArgumentError(f"head dim {head_dim!r} must be a positive multiple of {p} ({p} channels per byte)")
    return head_dim // p


def _planes_of_bits(fmt_bits: int) -> int:
    if fmt_bits not in (8, 4, 2):
        raise ArgumentError(f"bits must be 8, 4 or 2, got {fmt_bits!r}")
    return 8 // fmt_bits


def pack_planes(codes: torch.Tensor, fmt_bits: int) -> torch.Tensor:
    """uint8 codes [..., D] (each < 2**bits) -> split-plane bytes [..., D // P] uint8 (module docstring)."""
    p = _planes_of_bits(fmt_bits)
    if codes.dtype != torch.uint8 or codes.dim() < 1:
        raise ArgumentError(f"pack_planes takes uint8 codes [..., D], got {codes.dtype} {tuple(codes.shape)}")
    d = codes.shape[-1]
    dp = packed_dim(d, fmt_bits)
    if p == 1:
        return codes.contiguous()
    if codes.numel() and int(codes.max()) >= 1 << fmt_bits:
        raise ArgumentError(f"pack_planes: a code does not fit in {fmt_bits} bits")
    # [..., P, Dp]: element [i, j] is channel i * Dp + j, the plane-i occupant of byte j.
    split = codes.reshape(*codes.shape[:-1], p, dp).to(torch.int32)
    shifts = torch.arange(p, device=codes.device, dtype=torch.int32).mul_(fmt_bits).unsqueeze(-1)
    return (split << shifts).sum(dim=-2).to(torch.uint8)


def unpack_planes(packed: torch.Tensor, fmt_bits: int, head_dim: int) -> torch.Tensor:
    """Split-plane bytes [..., D // P] uint8 -> codes [..., D] uint8; the exact inverse of `pack_planes`."""
    p = _planes_of_bits(fmt_bits)
    dp = packed_dim(head_dim, fmt_bits)
    if packed.dtype != torch.uint8 or packed.dim() < 1 or packed.shape[-1] != dp:
        raise ArgumentError(
            f"unpack_planes takes uint8 bytes [..., {dp}] for D = {head_dim}, got {packed.dtype} {tuple(packed.shape)}"
        )
    if p == 1:
        return packed.contiguous()
    shifts = torch.arange(p, device=packed.device, dtype=torch.int32).mul_(fmt_bits).unsqueeze(-1)
    split = (packed.to(torch.int32).unsqueeze(-2) >> shifts) & ((1 << fmt_bits) - 1)  # [..., P, Dp]
    return split.reshape(*packed.shape[:-1], head_dim).to(torch.uint8)
