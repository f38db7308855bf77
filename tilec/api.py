"""The public entry points: ``@tilec.kernel`` and ``tilec.compile``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, overload

from tilec.errors import Source, TileNameError
from tilec.frontend import ast
from tilec.ir.schedule import Schedule
from tilec.runtime.kernel import Kernel

ScheduleLike = Schedule | Mapping[str, object] | None


@dataclass(frozen=True)
class SpecModule:
    """What ``tilec.compile`` returns: the spec's kernels as attributes, and its examples."""

    source: Source
    kernels: dict[str, Kernel]
    examples: tuple[ast.Example, ...]

    def __getattr__(self, name: str) -> Kernel:
        kernels = object.__getattribute__(self, "kernels")
        if name in kernels:
            return kernels[name]
        raise AttributeError(f"spec {self.source.name} has no kernel '{name}' (it has: {', '.join(kernels)})")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.kernels))


def compile(path_or_source: str | os.PathLike[str], *, name: str | None = None) -> SpecModule:  # noqa: A001
    """Parse and check a ``.tile`` spec (a path, or the spec text itself)."""
    from tilec.frontend.parser import parse_module

    text_or_path = os.fspath(path_or_source)
    if "\n" not in text_or_path and os.path.exists(text_or_path):
        with open(text_or_path, encoding="utf-8") as f:
            source = Source(name or text_or_path, f.read())
    else:
        source = Source(name or "<spec>", text_or_path)
    module = parse_module(source)
    kernels: dict[str, Kernel] = {}
    for kdef in module.kernels:
        if kdef.name in kernels:
            raise TileNameError(f"kernel '{kdef.name}' is defined twice", kdef.name_span)
        kernels[kdef.name] = Kernel(kdef, source)
    for example in module.examples:
        if example.kernel not in kernels:
            raise TileNameError(f"example for unknown kernel '{example.kernel}'", example.kernel_span,
                                hint="kernels in this spec: " + (", ".join(kernels) or "none"))
    return SpecModule(source, kernels, module.examples)


@overload
def kernel(fn: Callable[..., Any], /) -> Kernel: ...
@overload
def kernel(*, schedule: ScheduleLike = None) -> Callable[[Callable[..., Any]], Kernel]: ...


def kernel(fn: Callable[..., Any] | None = None, /, *, schedule: ScheduleLike = None) -> Any:
    """Turn a Python function written in the tile language into a :class:`Kernel`.

    The function is never run by Python: its source is parsed by tilec's grammar.
    Annotations such as ``Tensor[M, K, f16]`` need not evaluate: put
    ``from __future__ import annotations`` at the top of the file, or import the
    names from :mod:`tilec.lang`.
    """
    def wrap(f: Callable[..., Any]) -> Kernel:
        from tilec.frontend.parser import parse_function

        module, source = parse_function(f)
        if len(module.kernels) != 1:
            raise TileNameError(f"@tilec.kernel expects one function, found {len(module.kernels)}")
        return Kernel(module.kernels[0], source, schedule=schedule)

    return wrap(fn) if fn is not None else wrap
