"""Run a spec's examples: random inputs, poisoned outputs, the kernel, the float64 reference.

Used by ``tilec run``, ``tilec demo`` and the interpreter tests.  An output
passes when its normwise error ``max|out - ref| / max|ref|`` is at most twice
the output dtype's machine epsilon (one rounding of the result plus the
accumulated rounding of f32 arithmetic and of explicit casts in the spec), and
it holds no NaN or infinity where the reference is finite.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tilec.api import SpecModule
from tilec.errors import ArgumentError, TileTypeError
from tilec.frontend import ast
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.runtime.kernel import Kernel
from tilec.runtime.reference import evaluate

EPS = {"f16": 2.0**-10, "bf16": 2.0**-7, "f32": 2.0**-23, "f64": 2.0**-52}


def tolerance(dtype: dt.DType) -> float:
    return 2 * EPS.get(dtype.name, 0.0)


@dataclass(frozen=True)
class ExampleResult:
    kernel: str
    sizes: str
    output: str
    max_rel_err: float
    tolerance: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.max_rel_err <= self.tolerance  # False for NaN


def example_values(kernel: Kernel, example: ast.Example) -> tuple[dict[str, int], dict[str, dt.DType], dict[str, Any]]:
    """Split an example's header into dimension sizes, dtype bindings and scalar values."""
    dims: dict[str, int] = {}
    dtypes: dict[str, dt.DType] = {}
    scalars: dict[str, Any] = {}
    sig = kernel.signature
    scalar_names = {p.name for p in sig.params if p.kind == "scalar"}
    for kw in example.bindings:
        value = kw.value
        negative = isinstance(value, ast.UnaryOp) and value.op == "-"
        if negative:
            assert isinstance(value, ast.UnaryOp)
            value = value.operand
        if kw.name in sig.dtype_vars:
            if not (isinstance(value, ast.Name) and value.id in dt.DTYPES):
                raise TileTypeError(f"dtype variable {kw.name} needs a dtype", kw.span)
            dtypes[kw.name] = dt.DTYPES[value.id]
        elif kw.name in sig.dims and isinstance(value, ast.Int) and not negative:
            dims[kw.name] = value.value
        elif kw.name in scalar_names and isinstance(value, (ast.Int, ast.Float, ast.Bool)):
            scalars[kw.name] = -value.value if negative else value.value
        else:
            raise ArgumentError(f"example binding '{kw.name}' is not a dimension, dtype variable or scalar "
                                f"of {kernel.name}, or has the wrong kind of value", kw.span)
    missing = [d for d in sig.dims if d not in dims] + [s for s in scalar_names if s not in scalars]
    if missing:
        raise ArgumentError(f"example for {kernel.name} does not give {', '.join(missing)}", example.span)
    return dims, dtypes, scalars


def make_inputs(kernel: Kernel, dims: Mapping[str, int], dtypes: Mapping[str, dt.DType], device: str,
                seed: int = 0, scalars: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fresh random inputs, and outputs filled with NaN (poison) so an unwritten element fails.

    A packed parameter gets ``tilec.quantize`` of a random weight, with the group size its
    ``dequantize`` call names; the scale and zero tensors of that call get the QTensor's own.  Integer
    (u8) scales make it a two-level QTensor; its channel scales go to the one float ``[rows]`` input.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, Any] = {}
    for p in kernel.signature.params:
        if p.kind == "packed":
            tensors.update(_quantized(kernel, p.name, p.dtype, dims, dtypes, gen, dict(scalars or {}), device))
    for p in kernel.signature.params:
        if p.kind != "tensor" or p.name in tensors:
            continue
        shape = tuple(d if isinstance(d, int) else dims[d] for d in p.dims)
        dtype = dt.DTYPES.get(p.dtype) or dtypes.get(p.dtype, dt.f16)
        torch_dtype = getattr(torch, dtype.torch_name)
        if p.name in kernel.outputs and p.name not in kernel.inputs:
            fill = float("nan") if dtype.is_float else -1
            tensors[p.name] = torch.full(shape, fill, dtype=torch_dtype, device=device)
        elif dtype.is_float:
            tensors[p.name] = torch.randn(shape, generator=gen, dtype=torch.float64).to(torch_dtype).to(device)
        else:  # small integers: products of them stay in f16's range with random-normal scales
            lo, hi = (0, 2) if dtype.name == "bool" else (-8, 8)
            tensors[p.name] = torch.randint(lo, hi, shape, generator=gen).to(torch_dtype).to(device)
    return tensors


def _quantized(kernel: Kernel, name: str, fmt: str, dims: Mapping[str, int], dtypes: Mapping[str, dt.DType],
               gen: Any, scalars: dict[str, Any], device: str) -> dict[str, Any]:
    import torch

    from tilec.formats.qtensor import quantize

    kir = kernel.ir(dtypes)
    loads = [e for s in ir.walk_stmts(kir.body.body) if isinstance(s, (ir.Assign, ir.Store))
             for e in ir.walk_exprs(s.value) if isinstance(e, ir.QuantLoad) and e.tensor == name and e.scale]
    if not loads:
        raise ArgumentError(f"example: packed '{name}' is never dequantised, so its group size is unknown")
    load = loads[0]
    group = scalars[load.group.name] if isinstance(load.group, ir.ScalarArg) else int(getattr(load.group, "value", 0))
    param = kir.param(name)
    assert isinstance(param, ir.PackedParam)
    shape = [int(d.subs({s: dims[s.name] for s in d.free_symbols})) for d in param.dims]
    assert load.scale is not None
    scale_dtype = getattr(torch, kir.param(load.scale).dtype.torch_name)
    out: dict[str, Any] = {}
    two_level = _two_level(kir, load)
    if two_level:
        channel = _channel_scale(kernel, kir, param)
        scale_dtype = getattr(torch, kir.param(channel).dtype.torch_name)
    qt = quantize(torch.randn(shape, generator=gen), fmt, group_size=group, scale_dtype=scale_dtype,
                  two_level=two_level)
    if two_level:
        assert qt.channel_scales is not None
        out[channel] = qt.channel_scales.to(device)
    out.update({name: qt.to(device), load.scale: qt.scales.to(device)})
    if load.zero is not None:
        assert qt.zeros is not None
        out[load.zero] = qt.zeros.to(device)
    return out


def quantized_inputs(kernel: Kernel, dtypes: Mapping[str, dt.DType]) -> frozenset[str]:
    """The tensors `make_inputs` takes from a packed parameter's QTensor rather than drawing at random:
    the scales and zero points of its ``dequantize`` calls, and a two-level weight's channel scales."""
    kir = kernel.ir(dtypes)
    names: set[str] = set()
    for stmt in ir.walk_stmts(kir.body.body):
        if isinstance(stmt, (ir.Assign, ir.Store)):
            for e in ir.walk_exprs(stmt.value):
                if isinstance(e, ir.QuantLoad) and e.scale is not None:
                    names |= {n for n in (e.scale, e.zero) if n is not None}
                    param = kir.param(e.tensor)
                    if _two_level(kir, e) and isinstance(param, ir.PackedParam):
                        names.add(_channel_scale(kernel, kir, param))
    return frozenset(names)


def _two_level(kir: ir.Kernel, load: ir.QuantLoad) -> bool:
    """Integer codes with integer (u8) group scales: a two-level QTensor's second level.  (MX and nvfp4
    scales are u8 codes too, but of e8m0 / e4m3 values, on table-decoded elements.)"""
    param = kir.param(load.tensor)
    coded = isinstance(param, ir.PackedParam) and (param.table or param.e8m0_scales or param.e4m3_scales)
    return load.scale is not None and kir.param(load.scale).dtype.is_int and not coded


def _channel_scale(kernel: Kernel, kir: ir.Kernel, packed: ir.PackedParam) -> str:
    """A two-level weight's per-channel float scale: the one float input tensor ``[rows]`` of the weight."""
    candidates = [p.name for p in kir.tensors if p.name in kernel.inputs and p.name != packed.name
                  and len(p.dims) == 1 and p.dims[0] == packed.dims[0] and p.dtype.is_float]
    if len(candidates) != 1:
        raise ArgumentError(f"example: two-level '{packed.name}' needs exactly one float tensor [{packed.dims[0]}] "
                            f"for its channel scales, found {candidates or 'none'}")
    return candidates[0]


def run_example(module: SpecModule, example: ast.Example, device: str = "cpu", seed: int = 0,
                dtypes_override: Mapping[str, dt.DType] | None = None,
                dims_override: Mapping[str, int] | None = None,
                schedule: Mapping[str, object] | None = None) -> list[ExampleResult]:
    """Run one example; ``*_override`` replace the example's own dtype bindings or sizes; ``schedule``
    pins (part of) the schedule of both launches."""
    import torch

    kernel = module.kernels[example.kernel]
    dims, dtypes, scalars = example_values(kernel, example)
    dtypes.update(dtypes_override or {})
    dims.update(dims_override or {})
    tensors = make_inputs(kernel, dims, dtypes, device, seed, scalars)
    tensors.update({p.name: dims[p.name] for p in kernel.signature.params if p.kind == "dim"})
    kernel(**tensors, **scalars, schedule=schedule)  # the checked run: outputs were poisoned before it
    checked = {name: t.clone() for name, t in tensors.items() if name in kernel.outputs}
    fresh = {**tensors, **{name: torch.empty_like(t) for name, t in checked.items()}}
    start = time.perf_counter()  # a second, warm launch is what is timed (compiled and cached by now)
    kernel(**fresh, **scalars, schedule=schedule)
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    env: dict[str, Any] = {name: (t.dequantize() if hasattr(t, "dequantize") else t.detach()).to("cpu", torch.float64)
                           for name, t in tensors.items() if name in kernel.inputs}
    env.update({k: float(v) for k, v in scalars.items()})
    env.update({k: float(v) for k, v in dims.items()})
    env.update(dtypes)
    expected = evaluate(example.body, env)
    sizes = ", ".join(f"{k}={v}" for k, v in dims.items()) + "".join(f", {k}={v.name}" for k, v in dtypes.items())
    results = []
    for name, ref in expected.items():
        if name not in kernel.outputs:
            continue
        got = checked[name].detach().to("cpu", torch.float64)
        out_dtype = dt.from_torch(tensors[name].dtype) or dt.f32
        scale = ref.abs().max().item() if ref.numel() else 1.0
        if got.shape != ref.shape:
            err = float("inf")
        elif not torch.isfinite(got).all():
            err = float("nan")
        else:
            err = (got - ref).abs().max().item() / max(scale, 1e-30) if ref.numel() else 0.0
        results.append(ExampleResult(kernel.name, sizes, name, err, tolerance(out_dtype), seconds))
    return results
