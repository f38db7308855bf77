"""``e8m0``: the OCP MX v1.0 scale format (section 5.4.1), an unsigned power of two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilec.formats.base import TableFormat

if TYPE_CHECKING:
    from tilec.formats.base import F32Array, F64Array, U8Array

_TABLE: list[F32Array] = []


@dataclass(frozen=True)
class E8M0Format(TableFormat):
    """8 exponent bits, no mantissa, no sign: code ``c`` is ``2**(c - 127)`` for c in 0..254, code 255 is NaN.
    No zero, no infinity. Range 2**-127 (a float32 subnormal) .. 2**127.

    ``encode`` follows ml_dtypes' ``float8_e8m0fnu`` bit for bit (input rounded to float32 first):

    - positive finite x with x = s * 2**k, 1 <= s < 2: code ``k + 127``, plus 1 when s >= 1.5 (round to
      nearest, **ties away from zero**, i.e. up: 1.5 -> 2, 3 -> 4, 6 -> 8);
    - float32 subnormals follow the same rule: x >= 1.5 * 2**-127 -> code 1 (2**-126), else code 0
      (2**-127), as ml_dtypes >= 0.7 does. (ml_dtypes < 0.7 and torch 2.13 send everything above
      2**-127 to code 1, an artefact of their bit-level conversion; tilec pins ml_dtypes >= 0.7.);
    - x >= 1.5 * 2**127 -> 255 (NaN);
    - 0, -0, negative values, +-inf and NaN -> 255 (NaN).

    torch's ``float8_e8m0fnu`` cast agrees on positive normal values but ignores the sign, maps +-0 to
    code 0 and rounds subnormals as above; this format follows ml_dtypes there.
    """

    @property
    def name(self) -> str:
        return "e8m0"

    @property
    def bits(self) -> int:
        return 8

    @property
    def max(self) -> float:
        return 2.0**127

    @property
    def min(self) -> float:
        """Smallest value (the format is unsigned): 2**-127."""
        return 2.0**-127

    def _decode_table(self) -> F32Array:
        if not _TABLE:
            import numpy as np

            table = np.ldexp(1.0, np.arange(255) - 127).astype(np.float32)
            table = np.append(table, np.float32(np.nan))
            _TABLE.append(table)
        return _TABLE[0]

    def _encode_f64(self, a: F64Array, saturate: bool | None = None) -> U8Array:
        import numpy as np

        positive = np.isfinite(a) & (a > 0)
        mant, exp = np.frexp(np.where(positive, a, 1.0))  # a = mant * 2**exp, 0.5 <= mant < 1
        code = (exp - 1 + 127) + (mant >= 0.75)
        code = np.where(positive, np.clip(code, 0, 255), 255)
        return code.astype(np.uint8)


e8m0 = E8M0Format()
