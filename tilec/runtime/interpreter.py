"""Running generated kernels on CPU tensors through Triton's interpreter.

Triton decides at decoration time whether ``@triton.jit`` functions are
interpreted (the TRITON_INTERPRET variable).  tilec wants both in one process
(CPU tensors interpreted, CUDA tensors compiled), so for the duration of a
CPU launch it swaps the ``@jit`` helpers of ``triton.language`` (``tl.sum``,
``tl.cdiv``, ``tl.sigmoid``, ...) for interpreted ones.

The interpreter patches ``triton.language`` (module functions, ``tl.tensor``'s
operators, dtype methods) while it runs, and for nested device-function calls
it never undoes those patches: after one interpreted launch, compiling for a
GPU in the same process failed inside ``tl.cdiv``.  So the context manager
snapshots every module and class of ``triton.language`` first and restores
them exactly afterwards.  A lock keeps two launches from patching at once.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.RLock()


def _patchable() -> list[Any]:
    import triton.language as tl

    modules = [tl, tl.core, tl.math, tl.standard, tl.semantic]
    classes = {cls for module in modules for cls in vars(module).values()
               if inspect.isclass(cls) and cls.__module__.startswith("triton.language")}
    return modules + sorted(classes, key=lambda c: c.__qualname__)


def _snapshot(objects: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    return [(obj, dict(vars(obj))) for obj in objects]


def _restore(snapshots: list[tuple[Any, dict[str, Any]]]) -> None:
    for obj, saved in snapshots:
        current = dict(vars(obj))
        if inspect.isclass(obj):  # names the interpreter's function rewriter adds to modules stay: it caches them
            for name in current.keys() - saved.keys():
                delattr(obj, name)
        for name, value in saved.items():
            if current.get(name) is not value:
                setattr(obj, name, value)


@contextlib.contextmanager
def interpreted_language() -> Iterator[None]:
    import triton.language as tl
    from triton import knobs
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    with _LOCK:
        snapshots = _snapshot(_patchable())
        previous = knobs.runtime.interpret
        knobs.runtime.interpret = True
        try:
            for module in (tl, tl.standard, tl.math, tl.core):
                for name, value in list(vars(module).items()):
                    if isinstance(value, JITFunction):
                        setattr(module, name, InterpretedFunction(value.fn))
            yield
        finally:
            knobs.runtime.interpret = previous
            _restore(snapshots)


def interpreted(jit_fn: Any) -> Any:
    """The interpreter's version of a ``@triton.jit`` function."""
    from triton.runtime.interpreter import InterpretedFunction

    return InterpretedFunction(jit_fn.fn)


def scalar_arguments(values: list[Any]) -> list[Any]:
    """Integer arguments in a form this Triton's interpreter can use as loop bounds.

    Triton 3.6's interpreter wraps an integer argument as a 1-element array, and
    NumPy 2 refuses to turn that into a loop bound (``range(0, tl.cdiv(K, BK))``
    fails).  Where that is the case (detected, not assumed by version), integers
    are passed as 0-d interpreter tensors instead; Triton 3.9 needs nothing.
    """
    if not _ints_are_one_element_arrays():
        return values
    import numpy as np
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    out: list[Any] = []
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31:
            v = tl.tensor(TensorHandle(np.array(v, dtype=np.int32), tl.int32), tl.int32)
        out.append(v)
    return out


_ONE_ELEMENT: list[bool] = []


_COMPUTED_BOUNDS: list[bool] = []


def loop_bounds_must_be_ints() -> bool:
    """Whether this Triton's interpreter fails on a loop bound computed in the kernel.

    Values in the interpreter are 1-element arrays; 3.9 squeezes one into a loop bound,
    3.6 calls ``int()`` on it, which NumPy 2 refuses.  Probed once by running a loop whose
    bound is ``program_id + n``, rather than assumed from version numbers.
    """
    if not _COMPUTED_BOUNDS:
        import torch

        out = torch.zeros(1, dtype=torch.int32)
        try:
            with interpreted_language():
                interpreted(_computed_bound_probe())[(1,)](out, *scalar_arguments([3]))
            works = int(out.item()) == 3
        except Exception:  # any failure means: do not compute loop bounds here
            works = False
        _COMPUTED_BOUNDS.append(not works)
    return _COMPUTED_BOUNDS[0]


def _computed_bound_probe() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def computed_bound(out_ptr, n):
        count = 0
        for _ in range(0, tl.program_id(axis=0) + n):
            count += 1
        tl.store(out_ptr, count)

    return computed_bound


def _ints_are_one_element_arrays() -> bool:
    if not _ONE_ELEMENT:
        from triton.runtime.interpreter import _implicit_cvt

        _ONE_ELEMENT.append(getattr(_implicit_cvt(3).handle.data, "ndim", 0) == 1)
    return _ONE_ELEMENT[0]
