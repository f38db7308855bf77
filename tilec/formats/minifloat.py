"""Minifloats ``float(e, m)``: 1 sign bit, ``e`` exponent bits, ``m`` mantissa bits, e + m + 1 <= 8.

Code layout (the low ``1 + e + m`` bits of a byte): ``S EEEE MMM`` with the sign in the top bit. With exponent
field ``E`` and mantissa field ``M``: ``E == 0`` is subnormal, ``M * 2**(1 - bias - m)``; otherwise the value
is ``(2**m + M) * 2**(E - bias - m)``. Which codes are special is the `FloatConvention`:

========== ===== ========================================================= ==========================
``nan``    inf   special codes                                             used by
========== ===== ========================================================= ==========================
"ieee"     yes   top exponent field reserved: M == 0 is +-inf, M != 0 NaN  fp8_e5m2 (OCP, IEEE-like)
"all_ones" no    only S.1111.111 (exponent and mantissa all ones) is NaN   fp8_e4m3 (OCP e4m3fn)
"neg_zero" no    only 1.0000.000 (negative zero) is NaN; no -0             *fnuz types (AMD, Graphcore)
"none"     no    none: every code is finite                                fp4_e2m1, fp6_e2m3, fp6_e3m2
========== ===== ========================================================= ==========================

Encoding (the input is first rounded to float32, see `tilec.formats.base`):

- round to nearest, ties to even. "Even" is the code's least significant bit; for m >= 1 that is the
  mantissa's, as in IEEE 754. (For m == 0 it is the exponent's: IEEE defines no such format.)
- subnormals are kept; a value below half the smallest subnormal becomes a zero of the input's sign.
- overflow: formats with infinities round to +-inf, like IEEE, torch and ml_dtypes (|x| >= the midpoint of
  max and 2**(emax + 1) becomes inf); ``encode_saturating`` (used by the MX block formats) clamps to +-max
  instead. Formats without infinities always saturate to +-max, +-inf included: this matches torch's
  ``float8_e4m3fn`` and ml_dtypes' fp4/fp6 types; ml_dtypes' ``float8_e4m3fn`` instead turns |x| >= 464 and
  +-inf into NaN.
- -0.0 encodes to the negative zero code (``neg_zero`` formats, which have none, give +0).
- NaN encodes to the format's NaN, with the input's sign where the format has signed NaNs: the all-ones
  code ``S.1..1.1..1`` for "ieee" and "all_ones" (torch also writes 0x7F for e5m2; ml_dtypes writes the
  quiet NaN 0x7E); 0x80 for "neg_zero". **Formats without NaN encode NaN as +0 (code 0)** (ml_dtypes
  returns a zero there too, with the sign flipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from tilec.formats.base import TableFormat, nearest_thresholds, round_to_index

if TYPE_CHECKING:
    import torch

    from tilec.formats.base import F32Array, F64Array, U8Array

NanEncoding = Literal["ieee", "all_ones", "neg_zero", "none"]
_VALID = {("ieee", True): "ieee", ("all_ones", False): "fn", ("neg_zero", False): "fnuz", ("none", False): "finite"}
_F32_MAX = float.fromhex("0x1.fffffep+127")


@dataclass(frozen=True)
class FloatConvention:
    """How a minifloat spends its codes: exponent ``bias``, NaN encoding and whether it has infinities.

    Valid combinations: ``nan="ieee", inf=True`` (top exponent reserved: inf and NaNs), ``nan="all_ones",
    inf=False`` (OCP "fn": only S.1111.111 is NaN), ``nan="neg_zero", inf=False`` ("fnuz": the negative zero
    code is the NaN), ``nan="none", inf=False`` (every code finite, as OCP MX's FP4/FP6).
    """

    bias: int
    nan: NanEncoding = "ieee"
    inf: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bias, int):
            raise TypeError(f"bias must be an int, got {self.bias!r}")
        if (self.nan, self.inf) not in _VALID:
            raise ValueError(
                f"unsupported minifloat convention nan={self.nan!r}, inf={self.inf!r}; valid: "
                + ", ".join(f"(nan={n!r}, inf={i})" for n, i in _VALID)
            )

    @property
    def style(self) -> str:
        """Short tag: "ieee", "fn", "fnuz" or "finite"."""
        return _VALID[(self.nan, self.inf)]


class _Values(NamedTuple):
    """Pure-Python description of a minifloat's codes (built without numpy, on construction)."""

    mags: list[float]  # finite magnitudes, index = magnitude code (increasing)
    specials: dict[int, float]  # magnitude code -> inf / nan


class _Layout(NamedTuple):
    table: Any  # float32 ndarray, 2**bits entries
    thr_sat: Any  # thresholds (float64 ndarray) / tie directions for the saturating rounding
    up_sat: Any
    thr_inf: Any  # ... and for the rounding to infinity (None without infinities)
    up_inf: Any
    nan_code: int  # code of a positive NaN (0 when the format has no NaN)


@dataclass(frozen=True)
class MinifloatFormat(TableFormat):
    """A minifloat ``float(e, m)`` with an explicit `FloatConvention` (see the module docstring for the
    exact encoding, rounding, overflow, -0 and NaN rules). Equality ignores ``name``."""

    e: int
    m: int
    convention: FloatConvention
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        e, m = self.e, self.m
        _check_em(e, m)
        if not self.name:
            style, bias = self.convention.style, self.convention.bias
            object.__setattr__(self, "name", f"float{1 + e + m}_e{e}m{m}_{style}_b{bias}")
        _values(e, m, self.convention)  # validates the value range

    @property
    def bits(self) -> int:
        return 1 + self.e + self.m

    @property
    def bias(self) -> int:
        return self.convention.bias

    @property
    def has_inf(self) -> bool:
        return self.convention.inf

    @property
    def has_nan(self) -> bool:
        return self.convention.nan != "none"

    @property
    def max(self) -> float:
        """Largest finite value."""
        return _values(self.e, self.m, self.convention).mags[-1]

    @property
    def min(self) -> float:
        """Most negative finite value (-max)."""
        return -self.max

    @property
    def emax(self) -> int:
        """Exponent of the largest finite value: floor(log2(max))."""
        return math.frexp(self.max)[1] - 1

    @property
    def smallest_subnormal(self) -> float:
        return _values(self.e, self.m, self.convention).mags[1]

    def _decode_table(self) -> F32Array:
        table: F32Array = _layout(self).table
        return table

    def _encode_f64(self, a: F64Array, saturate: bool | None = None) -> U8Array:
        import numpy as np

        lay = _layout(self)
        if lay.thr_inf is None or saturate:
            index = round_to_index(np.abs(a), lay.thr_sat, lay.up_sat)
        else:
            index = round_to_index(np.abs(a), lay.thr_inf, lay.up_inf)
        sign_bit = 1 << (self.e + self.m)
        negative = np.signbit(a)
        codes = np.where(negative, index | sign_bit, index)
        nan = np.isnan(a)
        if self.convention.nan == "neg_zero":
            codes = np.where(index == 0, 0, codes)
            codes = np.where(nan, sign_bit, codes)
        elif self.convention.nan == "none":
            codes = np.where(nan, 0, codes)
        else:
            codes = np.where(nan, np.where(negative, lay.nan_code | sign_bit, lay.nan_code), codes)
        return codes.astype(np.uint8)

    def encode_saturating(self, x: torch.Tensor) -> torch.Tensor:
        """Like ``encode``, but overflow (and +-inf) clamps to +-max even where the format has infinities."""
        import torch

        from tilec.formats.base import to_f64

        return torch.from_numpy(self._encode_f64(to_f64(x), saturate=True)).reshape(x.shape)


def _check_em(e: object, m: object) -> None:
    if not (isinstance(e, int) and isinstance(m, int) and e >= 1 and m >= 0 and e + m + 1 <= 8):
        raise ValueError(f"minifloats need e >= 1, m >= 0 and e + m + 1 <= 8, got e={e!r}, m={m!r}")


_VALUES: dict[tuple[int, int, FloatConvention], _Values] = {}
_LAYOUTS: dict[tuple[int, int, FloatConvention], _Layout] = {}


def _values(e: int, m: int, conv: FloatConvention) -> _Values:
    key = (e, m, conv)
    vals = _VALUES.get(key)
    if vals is None:
        vals = _VALUES[key] = _build_values(e, m, conv)
    return vals


def _layout(fmt: MinifloatFormat) -> _Layout:
    key = (fmt.e, fmt.m, fmt.convention)
    lay = _LAYOUTS.get(key)
    if lay is None:
        lay = _LAYOUTS[key] = _build_layout(*key)
    return lay


def _build_values(e: int, m: int, conv: FloatConvention) -> _Values:
    n = e + m
    if conv.nan == "ieee" and m == 0:
        raise ValueError("an IEEE-like minifloat needs m >= 1: with m == 0 the top exponent has no NaN code")
    if 1 - conv.bias - m < -149:
        raise ValueError(f"bias {conv.bias} puts the smallest value of float(e={e}, m={m}) below float32's")
    mags: list[float] = []
    specials: dict[int, float] = {}
    for c in range(2**n):
        big_e, mant = c >> m, c & (2**m - 1)
        if conv.nan == "ieee" and big_e == 2**e - 1:
            specials[c] = math.inf if mant == 0 else math.nan
        elif conv.nan == "all_ones" and c == 2**n - 1:
            specials[c] = math.nan
        else:
            significand, exponent = (mant, 1) if big_e == 0 else (2**m + mant, big_e)
            try:
                v = math.ldexp(significand, exponent - conv.bias - m)
            except OverflowError:
                v = math.inf
            if v > _F32_MAX:
                raise ValueError(f"bias {conv.bias} puts the largest value of float(e={e}, m={m}) above float32's")
            mags.append(v)
    if len(mags) < 2:
        raise ValueError(f"float(e={e}, m={m}) with {conv} has no positive finite value")
    return _Values(mags, specials)


def _build_layout(e: int, m: int, conv: FloatConvention) -> _Layout:
    import numpy as np

    n = e + m
    mags, specials = _values(e, m, conv)
    table = np.empty(2 ** (n + 1), dtype=np.float32)
    for c in range(2**n):
        v = mags[c] if c < len(mags) else specials[c]
        table[c] = v
        table[c | 2**n] = -v
    if conv.nan == "neg_zero":
        table[2**n] = np.float32(math.nan)
    even_up = [(i + 1) % 2 == 0 for i in range(len(mags))]
    thr_sat, up_sat = nearest_thresholds(mags, even_up)
    thr_inf = up_inf = None
    if conv.inf:
        emax = math.frexp(mags[-1])[1] - 1
        t, u = nearest_thresholds([*mags, math.ldexp(1.0, emax + 1)], [*even_up, len(mags) % 2 == 0])
        thr_inf, up_inf = np.array(t, dtype=np.float64), np.array(u, dtype=bool)
    nan_code = 2**n - 1 if conv.nan in ("ieee", "all_ones") else 0
    return _Layout(table, np.array(thr_sat, dtype=np.float64), np.array(up_sat, dtype=bool), thr_inf, up_inf, nan_code)


def _named(name: str, e: int, m: int, nan: NanEncoding, inf: bool) -> MinifloatFormat:
    return MinifloatFormat(e, m, FloatConvention(2 ** (e - 1) - 1, nan, inf), name)


# OCP MX v1.0 section 5.3 (FP4/FP6 element types: no inf, no NaN) and OCP OFP8 (E4M3 "fn", E5M2 IEEE-like).
fp4_e2m1 = _named("fp4_e2m1", 2, 1, "none", False)
fp6_e2m3 = _named("fp6_e2m3", 2, 3, "none", False)
fp6_e3m2 = _named("fp6_e3m2", 3, 2, "none", False)
fp8_e4m3 = _named("fp8_e4m3", 4, 3, "all_ones", False)
fp8_e5m2 = _named("fp8_e5m2", 5, 2, "ieee", True)
NAMED_MINIFLOATS: tuple[MinifloatFormat, ...] = (fp4_e2m1, fp6_e2m3, fp6_e3m2, fp8_e4m3, fp8_e5m2)


def minifloat(
    e: int, m: int, bias: int | None = None, nan: NanEncoding = "ieee", inf: bool | None = None, name: str | None = None
) -> MinifloatFormat:
    """The minifloat ``float(e, m)``: ``bias`` defaults to ``2**(e - 1) - 1``, ``inf`` to ``nan == "ieee"``.

    Without an explicit ``name``, a format equal to a named one (``fp8_e4m3`` ...) is returned as that one.
    """
    _check_em(e, m)
    conv = FloatConvention(2 ** (e - 1) - 1 if bias is None else bias, nan, nan == "ieee" if inf is None else inf)
    fmt = MinifloatFormat(e, m, conv, name or "")
    if name is None:
        for named in NAMED_MINIFLOATS:
            if named == fmt:
                return named
    return fmt
