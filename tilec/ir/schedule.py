"""A schedule: how a kernel is cut into tiles and launched.

Kept apart from the algorithm (the spec): the same spec runs under any valid
schedule.  Defaults come from :mod:`tilec.runtime.schedule`; users pin one per
call or per kernel; the autotuner (a later issue) searches over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Schedule:
    blocks: Mapping[str, int] = field(default_factory=dict)  # tile variable -> block size
    num_warps: int = 4
    num_stages: int = 3
    group_m: int = 8  # grouped program order for 2-D grids (L2 reuse); 1 = row-major
    split_k: int = 1  # programs sharing one output tile's reduction loop (passes/split_k.py); 1 = no split

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", dict(sorted(dict(self.blocks).items())))

    def key(self) -> tuple[object, ...]:
        return (tuple(self.blocks.items()), self.num_warps, self.num_stages, self.group_m, self.split_k)

    def __hash__(self) -> int:
        return hash(self.key())

    def replace(self, **changes: object) -> Schedule:
        values: dict[str, object] = {"blocks": self.blocks, "num_warps": self.num_warps,
                                     "num_stages": self.num_stages, "group_m": self.group_m, "split_k": self.split_k}
        values.update(changes)
        return Schedule(**values)  # type: ignore[arg-type]
