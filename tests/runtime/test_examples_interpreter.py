"""Every shipped example, in Triton's interpreter, against its float64 reference, in f16 and bf16.

Sizes are the examples' own (M=37, N=65, K=70: multiples of no tile size) plus a
second, different odd size; inputs are fresh random values, outputs are poisoned
with NaN before the launch.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

import tilec
from tilec.ir import dtypes as dt
from tilec.runtime.examples import run_example

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.tile"))
CASES = [(path, dtype, sizes) for path in EXAMPLES for dtype in ("f16", "bf16")
         for sizes in (None, {"M": 19, "N": 33, "K": 100})]


@pytest.mark.parametrize("path,dtype,sizes", CASES,
                         ids=[f"{p.stem}-{d}-{'example' if s is None else 'alt'}" for p, d, s in CASES])
def test_example_matches_float64_reference(path: Path, dtype: str, sizes: dict[str, int] | None) -> None:
    module = tilec.compile(path)
    assert module.examples, f"{path.name} declares no example"
    for example in module.examples:
        kernel = module.kernels[example.kernel]
        dims = {k: v for k, v in (sizes or {}).items() if k in kernel.signature.dims}
        results = run_example(module, example, "cpu", seed=zlib.crc32(f"{path.name}{dtype}".encode()) % 1000,
                              dtypes_override={"T": dt.DTYPES[dtype]}, dims_override=dims)
        assert results, "the example assigns no output"
        for r in results:
            assert r.max_rel_err == r.max_rel_err, f"{r.kernel}: NaN in the output"
            assert r.ok, f"{r.kernel} {r.sizes}: error {r.max_rel_err:.3e} > {r.tolerance:.1e}"
