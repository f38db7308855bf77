"""Names for writing ``@tilec.kernel`` functions without ``from __future__ import annotations``.

``from tilec.lang import *`` makes ``Tensor[M, K, f16]`` evaluate (to nothing
useful) so Python accepts the annotations; tilec itself reads the source text.
Dimension and dtype-variable names still need defining, e.g. ``M, N, K, T = tilec.lang.symbols("M N K T")``.
"""

from __future__ import annotations

from typing import Any

from tilec.ir.dtypes import DTYPES


class _Anything:
    def __init__(self, name: str):
        self._name = name

    def __getitem__(self, item: Any) -> _Anything:
        return self

    def __repr__(self) -> str:
        return self._name


def symbols(names: str) -> tuple[_Anything, ...]:
    return tuple(_Anything(n) for n in names.split())


Tensor = _Anything("Tensor")
f16, bf16, f32, f64, i8, i16, i32, i64, u8, f8e4m3, f8e5m2 = (
    _Anything(n) for n in ("f16", "bf16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "f8e4m3", "f8e5m2"))
assert set(DTYPES) - {"bool"} == {"f16", "bf16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "f8e4m3", "f8e5m2"}
__all__ = ["Tensor", "bf16", "f8e4m3", "f8e5m2", "f16", "f32", "f64", "i8", "i16", "i32", "i64", "symbols", "u8"]
