"""Integer element formats ``int1`` .. ``int8`` and ``uint1`` .. ``uint8``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilec.formats.base import TableFormat

if TYPE_CHECKING:
    from tilec.formats.base import F32Array, F64Array, U8Array


@dataclass(frozen=True)
class IntFormat(TableFormat):
    """A ``bits``-wide integer, signed (two's complement) or unsigned.

    Convention:

    - code: the low ``bits`` bits of the byte; a signed value is stored in two's complement, so ``int4`` -1 is
      code ``0b1111`` (0x0F). ``int1`` is {0, -1} (code 1 is -1); ``uint1`` is {0, 1}.
    - decode ignores the bits above ``bits`` (a sign-extended byte such as 0xFF for int4 -1 decodes to -1).
    - encode: the input is rounded to float32, then to the nearest integer with ties to even (``numpy.rint``),
      then saturated to ``[min, max]``; +-inf saturate; **NaN encodes to code 0** (value 0).
    """

    bits: int
    signed: bool

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ValueError(f"integer formats have 1..8 bits, got {self.bits!r}")

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    @property
    def max(self) -> float:
        return float(2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1)

    @property
    def min(self) -> float:
        return float(-(2 ** (self.bits - 1)) if self.signed else 0)

    def _decode_table(self) -> F32Array:
        return _int_table(self.bits, self.signed)

    def _encode_f64(self, a: F64Array, saturate: bool | None = None) -> U8Array:
        import numpy as np

        r = np.clip(np.rint(a), self.min, self.max)
        r[np.isnan(r)] = 0.0
        return (r.astype(np.int64) & (2**self.bits - 1)).astype(np.uint8)


_TABLES: dict[tuple[int, bool], F32Array] = {}


def _int_table(bits: int, signed: bool) -> F32Array:
    table = _TABLES.get((bits, signed))
    if table is None:
        import numpy as np

        codes = np.arange(2**bits, dtype=np.int64)
        if signed:
            codes = np.where(codes >= 2 ** (bits - 1), codes - 2**bits, codes)
        table = codes.astype(np.float32)
        _TABLES[(bits, signed)] = table
    return table


INT_FORMATS: tuple[IntFormat, ...] = tuple(IntFormat(b, True) for b in range(1, 9))
UINT_FORMATS: tuple[IntFormat, ...] = tuple(IntFormat(b, False) for b in range(1, 9))
