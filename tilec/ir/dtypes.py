"""Element types of the tile language and their Triton / torch spellings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    name: str  # the spec's spelling: f16
    triton: str  # generated code's spelling: tl.float16
    torch_name: str  # attribute of the torch module: float16
    signature: str  # Triton's signature spelling: fp16 (pointers are "*fp16")
    bits: int
    kind: str  # "float" | "int" | "uint" | "bool"

    def __repr__(self) -> str:
        return self.name

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_fp8(self) -> bool:
        """8-bit floats: storage and matrix-product operands only; arithmetic on them happens in f32."""
        return self.kind == "float" and self.bits == 8

    @property
    def is_half(self) -> bool:
        """16-bit floats: math on them is computed in f32 and rounded back."""
        return self.kind == "float" and self.bits == 16


def _d(name: str, triton: str, torch_name: str, sig: str, bits: int, kind: str) -> DType:
    return DType(name, triton, torch_name, sig, bits, kind)


f16 = _d("f16", "tl.float16", "float16", "fp16", 16, "float")
bf16 = _d("bf16", "tl.bfloat16", "bfloat16", "bf16", 16, "float")
f32 = _d("f32", "tl.float32", "float32", "fp32", 32, "float")
f64 = _d("f64", "tl.float64", "float64", "fp64", 64, "float")
i8 = _d("i8", "tl.int8", "int8", "i8", 8, "int")
i16 = _d("i16", "tl.int16", "int16", "i16", 16, "int")
i32 = _d("i32", "tl.int32", "int32", "i32", 32, "int")
i64 = _d("i64", "tl.int64", "int64", "i64", 64, "int")
u8 = _d("u8", "tl.uint8", "uint8", "u8", 8, "uint")
boolean = _d("bool", "tl.int1", "bool", "i1", 1, "bool")
f8e4m3 = _d("f8e4m3", "tl.float8e4nv", "float8_e4m3fn", "fp8e4nv", 8, "float")  # OCP e4m3 "fn": max 448
f8e5m2 = _d("f8e5m2", "tl.float8e5", "float8_e5m2", "fp8e5", 8, "float")

DTYPES: dict[str, DType] = {d.name: d for d in (f16, bf16, f32, f64, i8, i16, i32, i64, u8, boolean, f8e4m3, f8e5m2)}
BY_TORCH_NAME: dict[str, DType] = {d.torch_name: d for d in DTYPES.values()}


def promote(a: DType, b: DType) -> DType:
    """The common type of a binary operation between two tiles.

    Floats beat integers; among floats the wider wins, and f16 with bf16 meet
    at f32 (neither holds the other).  Among integers the wider wins; a signed
    and an unsigned of equal width meet at the next signed width.
    """
    if a == b:
        return a
    if a.is_float or b.is_float:
        if not (a.is_float and b.is_float):
            return a if a.is_float else b
        if a.bits == b.bits:  # f16 vs bf16
            return f32
        return a if a.bits > b.bits else b
    if a.kind == "bool":
        return b
    if b.kind == "bool":
        return a
    if a.kind == b.kind:
        return a if a.bits > b.bits else b
    signed, unsigned = (a, b) if a.kind == "int" else (b, a)
    if signed.bits > unsigned.bits:
        return signed
    return {8: i16, 16: i32, 32: i64}.get(unsigned.bits, i64)


_FROM_TORCH: dict[object, DType | None] = {}


def from_torch(dtype: object) -> DType | None:
    """The tile dtype of a ``torch.dtype`` (None if the language has no such type); memoised, it is on
    every launch's path."""
    found = _FROM_TORCH.get(dtype, False)
    if found is False:
        found = _FROM_TORCH[dtype] = BY_TORCH_NAME.get(str(dtype).removeprefix("torch."))
    return found  # type: ignore[return-value]
