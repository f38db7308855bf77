"""What every element format shares: the `ElementFormat` protocol and exact rounding onto a table of values.

An element format has at most 8 bits. A code is held in one ``uint8``, in the low ``bits`` bits; ``decode``
ignores the bits above ``bits``, so sign-extended two's complement bytes decode correctly too.

Encoding is a function of the float32 value of the input: every input is first rounded to float32 (round to
nearest even), exactly as torch and ml_dtypes convert float64 to their 8-bit float types (they go through
float32 too, so a float64 input is double rounded by all three). From float32 on, rounding is exact: the work
is done in float64, where every float32 value, every value of a format and every midpoint between two
float32 values of nearby magnitude is exact, and where a midpoint is not (values 2^29 apart) the threshold
is taken one float64 below it, which no float32 input can reach from the wrong side.

numpy and torch are imported inside the functions, so ``import tilec.formats`` stays cheap.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    F64Array = np.ndarray[Any, np.dtype[np.float64]]
    U8Array = np.ndarray[Any, np.dtype[np.uint8]]
    F32Array = np.ndarray[Any, np.dtype[np.float32]]


@runtime_checkable
class ElementFormat(Protocol):
    """The interface of every element format (integers, minifloats, e8m0, codebooks)."""

    @property
    def name(self) -> str: ...

    @property
    def bits(self) -> int: ...

    @property
    def max(self) -> float: ...

    @property
    def min(self) -> float: ...

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...

    def values(self) -> torch.Tensor: ...


class TableFormat(ABC):
    """Mixin: ``encode``/``decode``/``values`` from ``_encode_f64`` and a decode table of ``2**bits`` entries."""

    @abstractmethod
    def _decode_table(self) -> F32Array:
        """float32 value of every code 0 .. 2**bits - 1 (index = code)."""

    @abstractmethod
    def _encode_f64(self, a: F64Array, saturate: bool | None = None) -> U8Array:
        """Codes of ``a``, a float64 array whose values are float32 values (or exact multiples of them by
        powers of two that stay in float32 range: the block formats scale by their shared exponent)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (``torch.uint8``, same shape as ``x``) of the float32 rounding of ``x``."""
        import torch

        codes = self._encode_f64(to_f64(x))
        return torch.from_numpy(codes).reshape(x.shape)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """float32 value of every code (bits above ``bits`` are ignored)."""
        import torch

        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        table = torch.from_numpy(self._decode_table())
        index = codes.detach().to(device="cpu", dtype=torch.int64) & (len(table) - 1)
        return table[index]

    def values(self) -> torch.Tensor:
        """float32 tensor of the value of every code (index = code)."""
        import torch

        return torch.from_numpy(self._decode_table().copy())


def to_f64(x: torch.Tensor) -> F64Array:
    """float64 numpy array of the float32 rounding of ``x`` (any real dtype, any device)."""
    import numpy as np
    import torch

    if x.dtype.is_complex:
        raise TypeError("complex tensors cannot be encoded")
    t = x.detach().to("cpu")
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    with np.errstate(invalid="ignore"):  # signalling NaN bit patterns are quieted, not an error
        return np.ascontiguousarray(t.numpy(), dtype=np.float64)


def nearest_thresholds(values: list[float], tie_up: list[bool]) -> tuple[list[float], list[bool]]:
    """Decision thresholds between consecutive strictly increasing ``values`` for round-to-nearest.

    Returns ``(thresholds, up)``: ``a`` rounds to index ``i + 1`` or above iff ``a > thresholds[i]``, or
    ``a == thresholds[i]`` and ``up[i]``. ``tie_up[i]`` says where an exact midpoint goes. A midpoint that is
    not a float64 is replaced by the float64 just below it with ``up = False``: a float32 input never equals it.
    """
    thresholds: list[float] = []
    up: list[bool] = []
    for i in range(len(values) - 1):
        lo, hi = Fraction(values[i]), Fraction(values[i + 1])
        if not lo < hi:
            raise ValueError("values must be strictly increasing")
        mid = (lo + hi) / 2
        t = float(mid)
        if Fraction(t) == mid:
            thresholds.append(t)
            up.append(tie_up[i])
        else:
            thresholds.append(t if Fraction(t) < mid else math.nextafter(t, -math.inf))
            up.append(False)
    return thresholds, up


def round_to_index(a: F64Array, thresholds: F64Array, up: np.ndarray[Any, np.dtype[np.bool_]]) -> np.ndarray[Any, Any]:
    """Index of the nearest value for every element of ``a`` (see `nearest_thresholds`); NaN -> last index."""
    import numpy as np

    index = np.searchsorted(thresholds, a, side="left")
    if len(thresholds):
        at = np.minimum(index, len(thresholds) - 1)
        index = index + ((thresholds[at] == a) & up[at])
    return index
