"""Out-of-bounds accesses, which Triton's interpreter does not report, caught by guard bands.

Every tensor is a view into a larger buffer: rows padded with extra columns and
the whole surrounded by extra elements, all NaN.  An unmasked read past an edge
brings NaN into the result; a write past an edge changes the guard band.  Run for
ragged sizes (masks needed) and for sizes that divide the blocks (masks elided by
the mask pass), so elision is checked too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tilec
from tilec.runtime.examples import example_values
from tilec.runtime.reference import evaluate

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.tile"))
GUARD = 37  # elements before and after each tensor, and extra columns per row


def guarded(shape: tuple[int, ...], dtype: torch.dtype, fill: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A view of ``shape`` inside a NaN buffer; returns (view, buffer)."""
    rows = 1
    for s in shape[:-1]:
        rows *= s
    row = shape[-1] + GUARD
    buffer = torch.full((2 * GUARD + rows * row,), float("nan"), dtype=dtype)
    strides, step = [], 1
    for axis in range(len(shape) - 1, -1, -1):
        strides.insert(0, step)
        step *= row if axis == len(shape) - 1 else shape[axis]
    view = buffer.as_strided(shape, tuple(strides), GUARD)
    if fill is not None:
        view.copy_(fill)
    return view, buffer


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.parametrize("sizes", [{"M": 37, "N": 65, "K": 70}, {"M": 64, "N": 64, "K": 64}], ids=["ragged", "exact"])
def test_no_access_outside_the_tensors(path: Path, sizes: dict[str, int]) -> None:
    module = tilec.compile(path)
    for example in module.examples:
        kernel = module.kernels[example.kernel]
        dims, dtypes, scalars = example_values(kernel, example)
        dims.update({k: v for k, v in sizes.items() if k in dims})
        gen = torch.Generator().manual_seed(7)
        views, buffers, env = {}, {}, {}
        for p in kernel.signature.params:
            if p.kind != "tensor":
                continue
            shape = tuple(d if isinstance(d, int) else dims[d] for d in p.dims)
            dtype = getattr(torch, (dtypes.get(p.dtype) or tilec.ir.dtypes.DTYPES[p.dtype]).torch_name)
            is_output = p.name in kernel.outputs and p.name not in kernel.inputs
            fill = None if is_output else torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
            views[p.name], buffers[p.name] = guarded(shape, dtype, fill)
            if not is_output:
                env[p.name] = views[p.name].double()
        before = {name: buf.clone() for name, buf in buffers.items()}
        kernel(**views, **scalars, schedule={"m": 16, "n": 16, "k": 16} if "k" in kernel.ir().tile_vars() else None)
        env.update({k: float(v) for k, v in {**scalars, **dims}.items()})
        env.update(dtypes)
        expected = evaluate(example.body, env)
        for name, buf in buffers.items():
            inside = torch.zeros_like(buf, dtype=torch.bool)
            inside.as_strided(views[name].shape, views[name].stride(), GUARD).fill_(True)
            assert torch.isnan(buf[~inside]).all(), f"{kernel.name} wrote outside '{name}'"
            if name in expected:
                out = views[name].double()
                assert torch.isfinite(out).all(), f"{kernel.name} read outside its inputs (NaN in '{name}')"
                ref = expected[name]
                assert (out - ref).abs().max() / ref.abs().max() < 2 * 2.0**-7
            else:
                assert torch.equal(buf[inside].view(torch.int16 if buf.element_size() == 2 else torch.int32),
                                   before[name][inside].view(torch.int16 if buf.element_size() == 2 else torch.int32))
