"""Small integer codes to f16/bf16 by the 2**p magic (codegen/lowering.magic_cast): exact, and emitted only
where it is."""

from __future__ import annotations

import torch

import tilec
from tilec.codegen.lowering import _byte_field_asm

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
    for T, magic, triton in (("f16", 0x6400, "tl.float16"), ("bf16", 0x4300, "tl.bfloat16")):
        src = code("cuda", T)
        # four codes per inline-asm group (lowering._byte_field_asm), - 8 folded into the magic's subtraction
        masked = f'{_byte_field_asm("c_nall", 0, 15, magic, triton)} - ' + ("1032.0" if T == "f16" else "136.0")
        assert masked in src, src
        # a whole u8 (0..255) fits f16's magic (c < 1024) but not bf16's (c < 128): bf16 keeps the cast
        whole = f'{_byte_field_asm("c_nall_1", 0, 255, magic, triton)} - 1021.0'
        assert (whole in src) == (T == "f16"), src
        assert (f"c_nall_1.to({triton})" in src) == (T == "bf16")


def run_ptx(asm: str, word: int) -> tuple[int, int]:
    """Evaluate the few PTX instructions _byte_field_asm emits on one 32-bit input register ($2)."""
    regs = {"$2": word}
    for ins in asm.strip("{} ").split(";"):
        op, *args = ins.replace(",", " ").split() or [".reg"]
        if op == ".reg":
            continue
        val = [regs[a] if a in regs else int(a, 0) for a in args[1:]]
        if op == "prmt.b32":  # bytes of {b, a}, selected by the selector's nibbles (no sign replication)
            both = val[0] | (val[1] << 32)
            regs[args[0]] = sum(((both >> (8 * ((val[2] >> (4 * i)) & 7))) & 0xFF) << (8 * i) for i in range(4))
        elif op == "mov.b32":
            regs[args[0]] = val[0]
        elif op == "shr.b32":
            regs[args[0]] = val[0] >> val[1]
        elif op == "lop3.b32":  # the truth table's bit (a, b, c) for each bit position
            a, b, c, lut = val
            regs[args[0]] = sum(((lut >> ((((a >> i) & 1) << 2) | (((b >> i) & 1) << 1) | ((c >> i) & 1))) & 1) << i
                                for i in range(32))
        else:
            raise AssertionError(op)
    return regs["$0"], regs["$1"]


def test_the_byte_field_asm_is_elementwise_and_exact() -> None:
    """Element i of the four packed u8 codes (byte i) becomes 16-bit lane i of ($0, $1) = 2**p + field, for every
    shift and mask the lowering emits: each byte value in each position, over random words."""
    gen = torch.Generator().manual_seed(0)
    words = [int(w) for w in torch.randint(0, 2**32, (64,), generator=gen, dtype=torch.int64)]
    words += [v << (8 * i) for v in range(256) for i in range(4)]
    for magic in (0x6400, 0x4300):
        for shift, mask in ((0, 15), (4, 15), (0, 3), (2, 3), (4, 3), (6, 3), (0, 255), (3, 0x1F), (0, 0xF0)):
            asm = _byte_field_asm("x", shift, mask & (0xFF >> shift), magic, "tl.float16").split('"')[1]
            for w in words:
                lo, hi = run_ptx(asm, w)
                got = [lo & 0xFFFF, lo >> 16, hi & 0xFFFF, hi >> 16]
                assert got == [magic | (((w >> (8 * i)) & 0xFF) >> shift & mask) for i in range(4)], (shift, mask, w)


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
