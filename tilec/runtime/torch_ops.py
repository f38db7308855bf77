"""Registering a kernel as a torch custom op, with a fake function derived from the spec.

A kernel writes into output parameters (destination passing); the op is the
functional form torch wants: it takes the inputs and scalars, allocates the
outputs (shapes from the dimension symbols bound by the inputs, dtypes from
the spec or from dtype variables bound by the inputs) and returns them.  A
tensor that is both read and written is an in-place argument (``Tensor(a!)``).
The fake function allocates the same outputs without running anything, which is
all ``torch.compile(fullgraph=True)`` needs to trace through the op.
"""

from __future__ import annotations

from typing import Any

from tilec.errors import ArgumentError, TilecError
from tilec.ir import dtypes as dt
from tilec.ir.signature import ParamSpec
from tilec.runtime.kernel import Kernel

_REGISTERED: dict[str, tuple[Kernel, Any]] = {}
_LIBRARIES: dict[str, Any] = {}


def register_op(kernel: Kernel, name: str | None = None, namespace: str = "tilec") -> Any:
    """Register ``kernel`` as ``torch.ops.<namespace>.<name>`` and return the op."""
    import torch

    name = name or kernel.name
    qualname = f"{namespace}::{name}"
    if qualname in _REGISTERED:
        existing, op = _REGISTERED[qualname]
        if existing is kernel:
            return op
        raise TilecError(f"torch op {qualname} is already registered for another kernel",
                         hint="pass name=... to register under another name")
    sig = kernel.signature
    packed = [p.name for p in sig.params if p.kind == "packed"]
    if packed:
        raise ArgumentError(f"{kernel.name} takes packed (QTensor) parameters ({', '.join(packed)}), which a torch "
                            "op schema cannot express yet", hint="call the kernel directly with the QTensor")
    outputs = [p for p in sig.params if p.kind == "tensor" and p.name in kernel.outputs and p.name not in kernel.inputs]
    inputs = [p for p in sig.params if p not in outputs]
    _check_derivable(kernel, inputs, outputs)

    schema_args = []
    for p in inputs:
        if p.kind == "tensor":
            mutated = p.name in kernel.outputs
            schema_args.append(f"Tensor{'(a!)' if mutated else ''} {p.name}")
        else:
            dtype = dt.DTYPES.get(p.dtype, dt.f32)
            schema_args.append(f"{'float' if dtype.is_float else 'bool' if dtype.kind == 'bool' else 'int'} {p.name}")
    returns = "()" if not outputs else "Tensor" if len(outputs) == 1 else f"({', '.join('Tensor' for _ in outputs)})"
    if namespace not in _LIBRARIES:
        _LIBRARIES[namespace] = torch.library.Library(namespace, "FRAGMENT")
    lib = _LIBRARIES[namespace]
    lib.define(f"{name}({', '.join(schema_args)}) -> {returns}")

    def allocate(values: dict[str, Any]) -> list[Any]:
        dims: dict[str, int] = {}
        dtypes: dict[str, Any] = {}
        device = None
        for p in inputs:
            if p.kind == "tensor":
                t = values[p.name]
                device = t.device
                dims.update({d: s for d, s in zip(p.dims, t.shape) if isinstance(d, str)})
                if p.dtype not in dt.DTYPES:
                    dtypes[p.dtype] = t.dtype
            elif p.kind == "dim":
                dims[p.name] = values[p.name]
        out = []
        for p in outputs:
            shape = [d if isinstance(d, int) else dims[d] for d in p.dims]
            dtype = getattr(torch, dt.DTYPES[p.dtype].torch_name) if p.dtype in dt.DTYPES else dtypes[p.dtype]
            out.append(torch.empty(shape, dtype=dtype, device=device))
        return out

    def finish(out: list[Any]) -> Any:
        return None if not out else out[0] if len(out) == 1 else tuple(out)

    def impl(*args: Any) -> Any:
        values = dict(zip((p.name for p in inputs), args))
        out = allocate(values)
        kernel(**values, **{p.name: t for p, t in zip(outputs, out)})
        return finish(out)

    def fake(*args: Any) -> Any:
        return finish(allocate(dict(zip((p.name for p in inputs), args))))

    lib.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(qualname, fake, lib=lib)
    op = getattr(getattr(torch.ops, namespace), name)
    _REGISTERED[qualname] = (kernel, op)
    return op


def _check_derivable(kernel: Kernel, inputs: list[ParamSpec], outputs: list[ParamSpec]) -> None:
    known_dims = {d for p in inputs if p.kind in ("tensor", "dim") for d in p.dims if isinstance(d, str)}
    known_dtypes = {p.dtype for p in inputs if p.kind == "tensor"}
    if not any(p.kind == "tensor" for p in inputs):
        raise ArgumentError(f"{kernel.name} has no input tensor: a torch op cannot know its device")
    for p in outputs:
        for d in p.dims:
            if isinstance(d, str) and d not in known_dims:
                raise ArgumentError(f"output '{p.name}' has dimension {d}, which no input tensor determines", p.span,
                                    hint="a torch op derives output shapes from its inputs")
        if p.dtype not in dt.DTYPES and p.dtype not in known_dtypes:
            raise ArgumentError(f"output '{p.name}' has dtype variable {p.dtype}, which no input determines", p.span)
