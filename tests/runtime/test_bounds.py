"""Out-of-bounds accesses, which Triton's interpreter does not report, caught by guard bands.

Every tensor is a view into a larger buffer: rows padded with extra columns and
the whole surrounded by extra elements, all NaN.  An unmasked read past an edge
brings NaN into the result; a write past an edge changes the guard band.  Run for
ragged sizes (masks needed) and for sizes that divide the blocks (masks elided by
the mask pass), so elision is checked too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import tilec
from tilec.errors import BackendError
from tilec.formats.qtensor import QTensor
from tilec.passes.interpreter_workarounds import interpreter_runs_dot_scaled
from tilec.passes.split_k import split_blocker
from tilec.runtime import args as argbind
from tilec.runtime.examples import example_values, make_inputs, quantized_inputs
from tilec.runtime.kernel import launch
from tilec.runtime.reference import evaluate

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.tile"))
GUARD = 37  # elements before and after each tensor, and extra columns per row


def sentinel(dtype: torch.dtype) -> float:
    return float("nan") if dtype.is_floating_point else -1


def guarded(shape: tuple[int, ...], dtype: torch.dtype, fill: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A view of ``shape`` inside a buffer of sentinels (NaN; -1 for integers); returns (view, buffer)."""
    rows = 1
    for s in shape[:-1]:
        rows *= s
    row = shape[-1] + GUARD
    buffer = torch.full((2 * GUARD + rows * row,), sentinel(dtype), dtype=dtype)
    strides, step = [], 1
    for axis in range(len(shape) - 1, -1, -1):
        strides.insert(0, step)
        step *= row if axis == len(shape) - 1 else shape[axis]
    view = buffer.as_strided(shape, tuple(strides), GUARD)
    if fill is not None:
        view.copy_(fill)
    return view, buffer


def _linked(kernel: tilec.Kernel, dtypes: dict, name: str) -> bool:
    """Whether ``name`` is the scale or zero tensor of a dequantising load, or a two-level weight's channel
    scales (it must match its QTensor)."""
    return name in quantized_inputs(kernel, dtypes)


# Examples whose lowering depends on the GPU arch run a second time lowered for sm_100 (tl.dot_scaled);
# those with a splittable reduction run split-K too, with 2 and 3 splits: at K = 70 (3 tiles of 32) and
# K = 64 (2 tiles) one of them leaves the last split a tile past the end of K.
SPLITTABLE = [p for p in EXAMPLES if all(split_blocker(k.ir()) is None for k in tilec.compile(p).kernels.values())]
LOWERINGS = ([(p, None, 1) for p in EXAMPLES] + [(p, 100, 1) for p in EXAMPLES if p.stem == "mx_gemm"]
             + [(p, None, s) for p in SPLITTABLE for s in (2, 3)])


@pytest.mark.parametrize("path,arch,split", LOWERINGS,
                         ids=[p.stem + ("-sm_100" if a else "") + (f"-split{s}" if s > 1 else "")
                              for p, a, s in LOWERINGS])
@pytest.mark.parametrize("sizes", [{"M": 37, "N": 65, "K": 70}, {"M": 64, "N": 64, "K": 64}], ids=["ragged", "exact"])
def test_no_access_outside_the_tensors(path: Path, arch: int | None, split: int, sizes: dict[str, int]) -> None:
    module = tilec.compile(path)
    for example in module.examples:
        kernel = module.kernels[example.kernel]
        dims, dtypes, scalars = example_values(kernel, example)
        dims.update({k: v for k, v in sizes.items() if k in dims})
        gen = torch.Generator().manual_seed(7)
        views, buffers, env = {}, {}, {}
        # packed weights: a QTensor whose words sit in a guard band; its scales/zeros are guarded below
        linked = {k: v for k, v in make_inputs(kernel, dims, dtypes, "cpu", 7, scalars).items()
                  if k in {p.name for p in kernel.signature.params if p.kind == "packed"}
                  or (not isinstance(v, QTensor) and k in kernel.inputs and _linked(kernel, dtypes, k))}
        for name, value in linked.items():
            if isinstance(value, QTensor):
                words, buffers[name] = guarded(tuple(value.packed[0].shape), torch.int32, value.packed[0])
                views[name] = replace(value, packed=(words,))
                env[name] = value.dequantize().double()
            else:
                views[name], buffers[name] = guarded(tuple(value.shape), value.dtype, value)
        for p in kernel.signature.params:
            if p.kind != "tensor" or p.name in views:
                continue
            shape = tuple(d if isinstance(d, int) else dims[d] for d in p.dims)
            dtype = getattr(torch, (dtypes.get(p.dtype) or tilec.ir.dtypes.DTYPES[p.dtype]).torch_name)
            is_output = p.name in kernel.outputs and p.name not in kernel.inputs
            fill = None if is_output else torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
            views[p.name], buffers[p.name] = guarded(shape, dtype, fill)
            if not is_output:
                env[p.name] = views[p.name].double()
        before = {name: buf.clone() for name, buf in buffers.items()}
        schedule = {"m": 16, "n": 16, "k": 32, "split_k": split} if "k" in kernel.ir().tile_vars() else None
        if arch is None:
            kernel(**views, **scalars, schedule=schedule)
        else:  # the sm_100 lowering, in the interpreter
            bound = argbind.bind(kernel.signature, (), {**views, **scalars}, kernel.outputs)
            if not interpreter_runs_dot_scaled():  # Triton 3.6: tilec refuses it before Triton
                with pytest.raises(BackendError, match=r"cannot run tl\.dot_scaled"):
                    kernel.specialize(bound.dims, bound.dtypes, target="cpu", schedule=schedule, arch=arch)
                return
            compiled = kernel.specialize(bound.dims, bound.dtypes, target="cpu", schedule=schedule, arch=arch)
            assert "tl.dot_scaled(" in compiled.source
            launch(compiled, bound)
        env.update({k: float(v) for k, v in {**scalars, **dims}.items()})
        env.update(dtypes)
        expected = evaluate(example.body, env)
        for name, buf in buffers.items():
            view = views[name].packed[0] if isinstance(views[name], QTensor) else views[name]
            inside = torch.zeros_like(buf, dtype=torch.bool)
            inside.as_strided(view.shape, view.stride(), GUARD).fill_(True)
            outside = buf[~inside]
            untouched = torch.isnan(outside) if buf.dtype.is_floating_point else outside == -1
            assert untouched.all(), f"{kernel.name} wrote outside '{name}'"
            if name in expected:
                out = views[name].double()
                assert torch.isfinite(out).all(), f"{kernel.name} read outside its inputs (NaN in '{name}')"
                ref = expected[name]
                assert (out - ref).abs().max() / ref.abs().max() < 2 * 2.0**-7
            else:
                bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[buf.element_size()]
                assert torch.equal(buf[inside].view(bits), before[name][inside].view(bits))
