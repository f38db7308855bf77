"""The ``tilec`` command line.

    tilec compile SPEC [--kernel NAME] [--emit triton|ttir|ttgir|llir|ptx]
                       [--target cpu|sm_80|sm_90|sm_100] [--shape M=37,N=65] [--dtype T=bf16]
                       [--schedule m=64,n=64,num_warps=8] [-o FILE]
    tilec run SPEC... [--device cpu|cuda] [--dtype T=bf16]
    tilec demo [--device cpu|cuda]
    tilec formats

Errors in a spec print as ``file:line:col`` with the source line and a caret,
and the command exits with status 2; a failed check in ``run`` exits with 1.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tilec.errors import TilecError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _pairs(text: str | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise TilecError(f"--{what} takes NAME=VALUE pairs separated by commas, got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _ints(text: str | None, what: str) -> dict[str, int]:
    out = {}
    for key, value in _pairs(text, what).items():
        try:
            out[key] = int(value)
        except ValueError:
            raise TilecError(f"--{what} {key}={value}: not an integer") from None
    return out


def _numbers(text: str | None, what: str) -> dict[str, int | float]:
    """Integers, else finite floats (``--scalar group=128,scale=0.125``)."""
    out: dict[str, int | float] = {}
    for key, value in _pairs(text, what).items():
        try:
            out[key] = int(value)
            continue
        except ValueError:
            pass
        try:
            out[key] = float(value)
        except ValueError:
            raise TilecError(f"--{what} {key}={value}: not a number") from None
        if not math.isfinite(out[key]):
            raise TilecError(f"--{what} {key}={value}: not a finite number")
    return out


def cmd_compile(args: argparse.Namespace) -> int:
    import tilec
    from tilec.ir import dtypes as dt
    from tilec.runtime.examples import example_values

    module = tilec.compile(args.spec)
    if not module.kernels:
        raise TilecError(f"{args.spec} defines no kernel")
    name = args.kernel or next(iter(module.kernels))
    if name not in module.kernels:
        raise TilecError(f"{args.spec} has no kernel '{name}'", hint="kernels: " + ", ".join(module.kernels))
    kernel = module.kernels[name]
    dims: dict[str, int] = {}
    dtypes: dict[str, dt.DType] = {}
    scalars: dict[str, object] = {}
    example = next((e for e in module.examples if e.kernel == name), None)
    if example is not None:
        dims, dtypes, scalars = example_values(kernel, example)
    dims.update(_ints(args.shape, "shape"))
    declared = [p.name for p in kernel.signature.params if p.kind == "scalar"]
    for key, number in _numbers(args.scalar, "scalar").items():  # group sizes, signs of scales specialise the code
        if key not in declared:
            raise TilecError(f"--scalar {key}: {name} has no scalar parameter '{key}'",
                             hint="scalars: " + (", ".join(declared) or "none"))
        scalars[key] = number
    for key, value in _pairs(args.dtype, "dtype").items():
        if value not in dt.DTYPES:
            raise TilecError(f"--dtype {key}={value}: unknown dtype", hint="dtypes: " + ", ".join(dt.DTYPES))
        dtypes[key] = dt.DTYPES[value]
    target = args.target or ("cpu" if args.emit == "triton" else "sm_90")
    from tilec.codegen.aot import TARGETS

    arch = TARGETS.get(target)  # the Triton shown for sm_100 is its lowering (tl.dot_scaled for MX products)
    compiled = kernel.specialize(dims or None, dtypes, target="cpu" if target == "cpu" else "cuda",
                                 schedule=_ints(args.schedule, "schedule") or None, arch=arch, scalars=scalars)
    if args.emit == "triton":
        text = compiled.source
    else:
        if target == "cpu":
            raise TilecError(f"--emit {args.emit} needs a GPU target", hint="add --target sm_90 (or sm_80, sm_100)")
        from tilec.codegen.aot import compile_for_gpu

        text = str(compile_for_gpu(compiled, target, dims or None).asm[args.emit])
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import tilec
    from tilec.ir import dtypes as dt
    from tilec.runtime.examples import run_example

    override = {k: dt.DTYPES[v] for k, v in _pairs(args.dtype, "dtype").items() if v in dt.DTYPES}
    device = args.device or _default_device()
    rows = []
    for spec in args.specs:
        module = tilec.compile(spec)
        if not module.examples:
            print(f"{spec}: no example to run (add an `example kernel(...):` block)", file=sys.stderr)
        for example in module.examples:
            known = {k: v for k, v in override.items() if k in module.kernels[example.kernel].signature.dtype_vars}
            rows.extend(run_example(module, example, device, dtypes_override=known))
    print(f"{'kernel':<28} {'sizes':<28} {'output':<7} {'max rel err':>12} {'tolerance':>10} {'warm time':>10}  result")
    for r in rows:
        print(f"{r.kernel:<28} {r.sizes:<28} {r.output:<7} {r.max_rel_err:>12.3e} {r.tolerance:>10.1e} "
              f"{r.seconds * 1e3:>8.1f}ms  {'ok' if r.ok else 'FAIL'}")
    print(f"device: {device}" + (" (Triton interpreter)" if device == "cpu" else ""))
    return 0 if rows and all(r.ok for r in rows) else 1


def cmd_formats(args: argparse.Namespace) -> int:
    from tilec import formats

    print(f"{'name':<12} {'bits':>4}  {'kind':<16} {'range':<24} description")
    for name in formats.names():
        fmt = formats.get(name)
        low, high = getattr(fmt, "min", None), getattr(fmt, "max", None)
        span = f"[{low:g}, {high:g}]" if isinstance(low, float) and isinstance(high, float) else ""
        print(f"{name:<12} {getattr(fmt, 'bits', ''):>4}  {type(fmt).__name__:<16} {span:<26} {_describe(fmt)}")
    return 0


def _describe(fmt: object) -> str:
    from tilec import formats

    if isinstance(fmt, formats.IntFormat):
        return "two's complement" if fmt.signed else "unsigned"
    if isinstance(fmt, formats.MinifloatFormat):
        c = fmt.convention
        return f"e{fmt.e}m{fmt.m}, bias {c.bias}, {c.style} (inf: {c.inf}, NaN: {c.nan})"
    if isinstance(fmt, formats.MXFormat):
        return f"OCP MX: {fmt.element.name} elements, blocks of {fmt.block_size}, e8m0 scales"
    if isinstance(fmt, formats.NVFP4Format):
        return "fp4_e2m1 elements, blocks of 16, fp8_e4m3 scales, fp32 tensor scale"
    if isinstance(fmt, formats.Codebook):
        return f"codebook of {len(fmt.values())} values"
    return (type(fmt).__doc__ or "").strip().splitlines()[0]


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilec", description="compile and run tile-language kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile", help="print the generated Triton, or Triton's IR/PTX for a GPU target")
    p.add_argument("spec")
    p.add_argument("--kernel")
    p.add_argument("--emit", choices=["triton", "ttir", "ttgir", "llir", "ptx"], default="triton")
    p.add_argument("--target", choices=["cpu", "sm_80", "sm_90", "sm_100"])
    p.add_argument("--shape", help="dimension sizes, e.g. M=37,N=65,K=70 (default: the spec's example)")
    p.add_argument("--dtype", help="dtype variables, e.g. T=bf16")
    p.add_argument("--schedule", help="block sizes and launch options, e.g. m=64,n=64,k=32,num_warps=4,split_k=4")
    p.add_argument("--scalar", help="scalar arguments the code may specialise on, e.g. group=128 (its power-of-two "
                                    "factor), scale=0.125 (its sign) (default: the spec's example)")
    p.add_argument("-o", "--output")
    p.set_defaults(func=cmd_compile)
    r = sub.add_parser("run", help="run each example of the specs on random inputs and check it")
    r.add_argument("specs", nargs="+")
    r.add_argument("--device", choices=["cpu", "cuda"])
    r.add_argument("--dtype", help="override dtype variables, e.g. T=bf16")
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("demo", help="run every shipped example")
    d.add_argument("--device", choices=["cpu", "cuda"])
    d.set_defaults(func=lambda a: cmd_run(argparse.Namespace(
        specs=sorted(str(p) for p in EXAMPLES.glob("*.tile")), device=a.device, dtype=None)))
    f = sub.add_parser("formats", help="list the element and block formats")
    f.set_defaults(func=cmd_formats)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except TilecError as err:
        print(str(err), file=sys.stderr)
        return 2
    except OSError as err:
        print(f"tilec: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    sys.exit(main())
