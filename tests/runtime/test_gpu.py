"""On a CUDA device: every shipped example at production-like sizes against float64 (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tilec
from tilec.ir import dtypes as dt
from tilec.runtime.examples import run_example

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.tile"))
SIZES = {"M": 1031, "N": 4099, "K": 2053}  # large, and multiples of no block size


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_example_on_gpu(path: Path, dtype: str) -> None:
    module = tilec.compile(path)
    for example in module.examples:
        kernel = module.kernels[example.kernel]
        dims = {k: v for k, v in SIZES.items() if k in kernel.signature.dims}
        for r in run_example(module, example, "cuda", dtypes_override={"T": dt.DTYPES[dtype]}, dims_override=dims):
            assert r.ok, f"{r.kernel} {r.sizes}: {r.max_rel_err:.3e} > {r.tolerance:.1e}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.parametrize("m", [1, 16])
def test_decode_path_on_gpu(path: Path, m: int) -> None:
    """Small M takes the default decode schedule (split-K where the kernel allows it); three launches in a row
    reuse the arrival counters, which each launch must leave at zero."""
    module = tilec.compile(path)
    for example in module.examples:
        kernel = module.kernels[example.kernel]
        dims = {k: v for k, v in {"M": m, "N": 4099, "K": 8195}.items() if k in kernel.signature.dims}
        for seed in range(3):
            for r in run_example(module, example, "cuda", seed=seed, dims_override=dims):
                assert r.ok, f"{r.kernel} {r.sizes} seed {seed}: {r.max_rel_err:.3e} > {r.tolerance:.1e}"
