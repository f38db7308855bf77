"""Codebook formats: a table of up to 256 float32 values, code = index into the table (``nf4`` built in)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from tilec.formats.base import TableFormat, nearest_thresholds, round_to_index

if TYPE_CHECKING:
    import torch

    from tilec.formats.base import F32Array, F64Array, U8Array


class _Plan(NamedTuple):
    table: Any  # float32 decode table padded with NaN to 2**bits entries
    thresholds: Any  # float64 decision thresholds between the sorted distinct values
    up: Any
    codes: Any  # uint8: code of each sorted distinct value (the lowest code holding it)
    nan_code: int


@dataclass(frozen=True)
class Codebook(TableFormat):
    """A lookup-table format: code ``i`` is ``table[i]`` (values are rounded to float32 on construction).

    - ``bits`` = the fewest bits holding every index (nf4: 4); codes past the table decode to NaN.
    - encode: the input is rounded to float32, then to the **nearest table value**; an exact tie between two
      values goes to the **lower code** (index), and a value listed twice is encoded as its lower code.
      +-inf go to the extreme values. **NaN encodes to the code of the value nearest to 0** (ties: lower code).
    - table values must be finite; -0.0 and 0.0 count as the same value.
    """

    name: str
    table: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a codebook needs a name")
        try:
            vals = tuple(struct.unpack("<f", struct.pack("<f", float(v)))[0] for v in self.table)
        except OverflowError:
            raise ValueError(f"codebook {self.name!r}: a value is out of float32 range") from None
        if not 1 <= len(vals) <= 256:
            raise ValueError(f"a codebook holds 1..256 values, got {len(vals)}")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"codebook {self.name!r}: values must be finite")
        object.__setattr__(self, "table", vals)

    @property
    def bits(self) -> int:
        return max(1, (len(self.table) - 1).bit_length())

    @property
    def max(self) -> float:
        return max(self.table)

    @property
    def min(self) -> float:
        return min(self.table)

    def values(self) -> torch.Tensor:
        """float32 tensor of the table (index = code); only the table's own codes, no padding."""
        import torch

        return torch.tensor(self.table, dtype=torch.float32)

    def _decode_table(self) -> F32Array:
        table: F32Array = _plan(self).table
        return table

    def _encode_f64(self, a: F64Array, saturate: bool | None = None) -> U8Array:
        import numpy as np

        plan = _plan(self)
        codes = plan.codes[round_to_index(a, plan.thresholds, plan.up)]
        result: U8Array = np.where(np.isnan(a), plan.nan_code, codes).astype(np.uint8)
        return result


_PLANS: dict[Codebook, _Plan] = {}


def _plan(cb: Codebook) -> _Plan:
    plan = _PLANS.get(cb)
    if plan is None:
        plan = _PLANS[cb] = _build_plan(cb.table, cb.bits)
    return plan


def _build_plan(table: tuple[float, ...], bits: int) -> _Plan:
    import numpy as np

    lowest: dict[float, int] = {}
    for code, v in enumerate(table):
        lowest.setdefault(v + 0.0, code)  # + 0.0 folds -0.0 into 0.0
    distinct = sorted(lowest)
    codes = [lowest[v] for v in distinct]
    thresholds, up = nearest_thresholds(distinct, [codes[i + 1] < codes[i] for i in range(len(codes) - 1)])
    nan_code = min(range(len(table)), key=lambda c: (abs(table[c]), c))
    padded = np.full(2**bits, np.nan, dtype=np.float32)
    padded[: len(table)] = table
    return _Plan(
        padded, np.array(thresholds, dtype=np.float64), np.array(up, dtype=bool), np.array(codes, np.uint8), nan_code
    )


# NF4 (4-bit NormalFloat) from QLoRA: Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs" (2023),
# Appendix E, as shipped in bitsandbytes (the NF4 lookup table of its dequantize kernels). Code 7 is exactly 0.
NF4_VALUES: tuple[float, ...] = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)

nf4 = Codebook("nf4", NF4_VALUES)
