"""Compile-time and launch-overhead figures that need no GPU (design.md section 7, last rows).

    python benchmarks/compile_time.py

Prints the median time from spec text to Triton source per shipped kernel
(parse, check, passes, emit; the Lark grammar is built once per process and
reported separately), and tilec's own per-call cost before Triton's launcher:
argument binding and validation plus the specialisation-key lookup.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

import tilec
from tilec.errors import Source
from tilec.frontend.parser import parse_module
from tilec.runtime import args as argbind
from tilec.runtime.examples import example_values, make_inputs

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.tile"))


def median_ms(fn, repeat: int = 30) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    start = time.perf_counter()
    parse_module(Source("<warm-up>", ""))
    print(f"grammar construction (once per process): {1e3 * (time.perf_counter() - start):.1f} ms")
    print(f"{'kernel':<28} {'spec->Triton (ms)':>18} {'per-call overhead (us)':>24}")
    for path in EXAMPLES:
        text = path.read_text()
        module = tilec.compile(text, name=path.name)
        for example in module.examples:
            kernel = module.kernels[example.kernel]
            dims, dtypes, scalars = example_values(kernel, example)
            sizes = {**dims, **{k: v.name for k, v in dtypes.items()}}

            def compile_once(name: str = example.kernel, text: str = text, spec: str = path.name,
                             sizes: dict = sizes) -> None:  # type: ignore[type-arg]
                tilec.compile(text, name=spec).kernels[name].triton_code(**sizes)

            compile_ms = median_ms(compile_once)
            tensors = make_inputs(kernel, dims, dtypes, "cpu", scalars=scalars)
            kernel(**tensors, **scalars)

            def bind_and_lookup(kernel: tilec.Kernel = kernel, values: dict = {**tensors, **scalars}) -> None:  # noqa: B006
                bound = argbind.bind(kernel.signature, (), values, kernel.outputs)
                argbind.check_groups(kernel.signature, kernel._groups, bound)
                kernel._for_launch(bound, None)

            overhead_us = 1e3 * median_ms(bind_and_lookup, 300)
            print(f"{kernel.name:<28} {compile_ms:>18.2f} {overhead_us:>24.1f}")
    print(f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
