"""Split-plane packing: exact inverse, and the bit positions against a direct per-byte formula."""

from __future__ import annotations

import pytest
import torch

from tilec.errors import ArgumentError
from tilec.kv import KV_FORMATS, bits, pack_planes, planes, unpack_planes


def direct_pack(codes: list[int], b: int) -> list[int]:
    """Byte j = sum over planes i of code[j + i * Dp] << (i * b), written out one byte at a time."""
    p = 8 // b
    dp = len(codes) // p
    return [sum(codes[j + i * dp] << (i * b) for i in range(p)) for j in range(dp)]


@pytest.mark.parametrize("b", [8, 4, 2])
@pytest.mark.parametrize("d", [64, 80, 96, 128, 256])
def test_pack_unpack_roundtrip(b: int, d: int) -> None:
    g = torch.Generator().manual_seed(d * 10 + b)
    codes = torch.randint(0, 2**b, (3, 5, d), generator=g, dtype=torch.uint8)
    packed = pack_planes(codes, b)
    assert packed.shape == (3, 5, d // (8 // b)) and packed.dtype == torch.uint8
    assert torch.equal(unpack_planes(packed, b, d), codes)
    assert packed[1, 2].tolist() == direct_pack(codes[1, 2].tolist(), b)


def test_hand_examples() -> None:
    # int4, D = 4: byte 0 = ch0 | ch2 << 4, byte 1 = ch1 | ch3 << 4.
    assert pack_planes(torch.tensor([1, 2, 3, 4], dtype=torch.uint8), 4).tolist() == [0x31, 0x42]
    # int2, D = 8 (Dp = 2): byte 0 = ch0 | ch2 << 2 | ch4 << 4 | ch6 << 6; byte 1 the odd channels.
    codes = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0], dtype=torch.uint8)
    assert pack_planes(codes, 2).tolist() == [0 | 2 << 2 | 3 << 4 | 1 << 6, 1 | 3 << 2 | 2 << 4 | 0 << 6]
    assert pack_planes(codes, 2).tolist() == direct_pack(codes.tolist(), 2)
    assert pack_planes(codes, 8).tolist() == codes.tolist()


def test_format_tables() -> None:
    assert KV_FORMATS == ("int8", "int4", "int2", "fp8_e4m3", "fp8_e5m2")
    assert [bits(f) for f in KV_FORMATS] == [8, 4, 2, 8, 8]
    assert [planes(f) for f in KV_FORMATS] == [1, 2, 4, 1, 1]
    with pytest.raises(ArgumentError, match="format"):
        planes("int3")


def test_bad_arguments() -> None:
    with pytest.raises(ArgumentError, match="multiple of 4"):
        pack_planes(torch.zeros(6, dtype=torch.uint8), 2)
    with pytest.raises(ArgumentError, match="multiple of 2"):
        unpack_planes(torch.zeros(3, dtype=torch.uint8), 4, 7)
    with pytest.raises(ArgumentError, match="4 bits"):
        pack_planes(torch.tensor([16, 0], dtype=torch.uint8), 4)
    with pytest.raises(ArgumentError, match="uint8"):
        pack_planes(torch.zeros(4, dtype=torch.int32), 4)
    with pytest.raises(ArgumentError, match="bits"):
        pack_planes(torch.zeros(4, dtype=torch.uint8), 3)
