"""tilec: a compiler for fused low-precision GPU kernels written in a tile language.

``import tilec`` is cheap and never touches CUDA: torch and Triton are imported
when a kernel is first launched or compiled.
"""

from tilec.api import SpecModule, compile, kernel  # noqa: A004  (tilec.compile is the public name)
from tilec.errors import (
    ArgumentError,
    BackendError,
    ScheduleError,
    TilecError,
    TileNameError,
    TileShapeError,
    TileSyntaxError,
    TileTypeError,
)
from tilec.ir.schedule import Schedule
from tilec.runtime.kernel import Kernel

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``tilec.quantize``, ``QTensor``, ``ops``, ``nn`` and ``kv`` load torch: imported on first use."""
    if name in ("quantize", "QTensor"):
        from tilec.formats import qtensor

        return getattr(qtensor, name)
    if name in ("ops", "nn", "kv"):
        import importlib

        return importlib.import_module(f"tilec.{name}")
    raise AttributeError(f"module 'tilec' has no attribute '{name}'")


__all__ = [
    "ArgumentError", "BackendError", "Kernel", "QTensor", "Schedule", "ScheduleError", "SpecModule", "TileNameError",
    "TileShapeError", "TileSyntaxError", "TileTypeError", "TilecError", "compile", "kernel", "quantize",
]
