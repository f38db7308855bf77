"""Running generated kernels on CPU tensors through Triton's interpreter.

Triton decides at decoration time whether ``@triton.jit`` functions are
interpreted (the TRITON_INTERPRET variable).  tilec wants both in one process
(CPU tensors interpreted, CUDA tensors compiled), so for the duration of a
CPU launch it swaps the ``@jit`` helpers of ``triton.language`` (``tl.sum``,
``tl.cdiv``, ``tl.sigmoid``, ...) for interpreted ones and restores them after.
A lock keeps two launches from patching at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.RLock()


@contextlib.contextmanager
def interpreted_language() -> Iterator[None]:
    import triton.language as tl
    from triton import knobs
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    with _LOCK:
        saved: list[tuple[Any, str, Any]] = []
        previous = knobs.runtime.interpret
        knobs.runtime.interpret = True
        try:
            for module in (tl, tl.standard, tl.math, tl.core):
                for name, value in list(vars(module).items()):
                    if isinstance(value, JITFunction):
                        saved.append((module, name, value))
                        setattr(module, name, InterpretedFunction(value.fn))
            yield
        finally:
            for module, name, value in saved:
                setattr(module, name, value)
            knobs.runtime.interpret = previous


def interpreted(jit_fn: Any) -> Any:
    """The interpreter's version of a ``@triton.jit`` function."""
    from triton.runtime.interpreter import InterpretedFunction

    return InterpretedFunction(jit_fn.fn)
