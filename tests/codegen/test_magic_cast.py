"""Small integer codes to f16/bf16 by the 2**p magic (codegen/lowering.magic_cast): exact, and emitted only
where it is."""

from __future__ import annotations

import torch

import tilec

SPEC = """
def codes(c: Tensor[N, D, u8], o: Tensor[N, D, T], w: Tensor[N, D, T]):
    for n in tiles(N):
        o[n, :] = (c[n, :] & 15).to(T) - 8.0
        w[n, :] = c[n, :].to(T) + 3.0
"""


def test_the_identity_holds_for_every_code_and_shift() -> None:
    """(2**p + c) - (2**p + s) == c - s in the float itself: f16 for c < 1024, bf16 for c < 128."""
    for dtype, bits, base, count in ((torch.float16, 0x6400, 1024, 1024), (torch.bfloat16, 0x4300, 128, 128)):
        codes = torch.arange(count, dtype=torch.int32)
        magic = (codes | bits).to(torch.int16).view(dtype)
        assert torch.equal(magic.double(), codes.double() + base)
        for shift in (0, 8, -8, base, -base):
            assert torch.equal((magic - (base + shift)).double(), (codes - shift).double())


def code(target: str, T: str) -> str:
    kernel = tilec.compile(SPEC).codes
    return kernel.triton_code(N=37, D=64, T=T, target=target, schedule={"n": 16})


def test_gpu_code_uses_the_magic_and_folds_the_shift() -> None:
    for T, magic, triton in (("f16", "0x6400", "tl.float16"), ("bf16", "0x4300", "tl.bfloat16")):
        src = code("cuda", T)
        masked = f"((c_nall & 15).to(tl.uint16) | {magic}).to({triton}, bitcast=True) - "
        assert masked + ("1032.0" if T == "f16" else "136.0") in src  # - 8 folded into the magic's subtraction
        # a whole u8 (0..255) fits f16's magic (c < 1024) but not bf16's (c < 128): bf16 keeps the cast
        whole = f"(c_nall_1.to(tl.uint16) | {magic}).to({triton}, bitcast=True) - 1021.0"
        assert (whole in src) == (T == "f16"), src
        assert (f"c_nall_1.to({triton})" in src) == (T == "bf16")


def test_the_interpreter_gets_the_magic_for_f16_only_and_both_are_exact() -> None:
    assert "| 0x6400).to(tl.float16, bitcast=True) - 1032.0" in code("cpu", "f16")
    # its interpreter cannot subtract a constant in bf16 (no get_bf16): the plain cast (rounded on the bits)
    assert "0x4300" not in code("cpu", "bf16")
    kernel = tilec.compile(SPEC).codes
    c = torch.arange(37 * 64, dtype=torch.int32).remainder(256).to(torch.uint8).reshape(37, 64)
    for dtype in (torch.float16, torch.bfloat16):
        o, w = torch.full((37, 64), float("nan"), dtype=dtype), torch.full((37, 64), float("nan"), dtype=dtype)
        kernel(c, o, w, schedule={"n": 16})
        assert torch.equal(o.double(), (c.int() & 15).double() - 8)
        assert torch.equal(w, (c.double() + 3).to(dtype))
