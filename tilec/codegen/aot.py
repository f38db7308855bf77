"""Ahead-of-time compilation for a GPU on a machine without one.

Triton's compiler runs without a device: ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", 90, 32))`` produces TTIR, TTGIR, LLVM IR, PTX and a
cubin.  The wheel ships ``ptxas``, whose ``-v`` report gives registers, spills
and shared memory; tests use both to prove each shipped kernel uses tensor
cores and spills nothing, and ``tilec compile --emit ptx`` uses this module.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tilec.errors import BackendError
from tilec.ir import nodes as ir
from tilec.passes.block_scaled_dot import NATIVE_SCALED_DOT_ARCH

TARGETS = {"sm_80": 80, "sm_90": 90, "sm_100": 100}
STAGES = ("ttir", "ttgir", "llir", "ptx", "cubin")


@dataclass(frozen=True)
class PtxasReport:
    registers: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int
    text: str


@dataclass(frozen=True)
class Artifacts:
    target: str
    asm: Mapping[str, Any]  # stage -> text (cubin: bytes)
    shared_bytes: int

    def ptxas(self) -> PtxasReport:
        return ptxas_report(self.asm["ptx"], self.target)


def compile_for_gpu(compiled: Any, target: str, dims: Mapping[str, int] | None = None) -> Artifacts:
    """Compile a :class:`tilec.runtime.kernel.Compiled` (target "cuda") for ``target`` (sm_80, sm_90, sm_100).

    The specialisation is first lowered again for ``target``'s arch when it was lowered for another
    (``Compiled.for_arch``): on sm_100 block-scaled products become ``tl.dot_scaled``.

    Pointers are assumed 16-byte aligned (torch's allocations are); with ``dims``
    given, contiguous strides and sizes that are multiples of 16 are declared so too,
    as Triton's launcher would specialise them at run time.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tilec.runtime.loader import load

    if target not in TARGETS:
        raise BackendError(f"unknown target '{target}'", hint="targets: " + ", ".join(TARGETS))
    compiled = compiled.for_arch(TARGETS[target])
    gen = compiled.generated
    kernel: ir.Kernel = compiled.lowered.kernel
    _check_target(kernel, target)
    fn = load(gen.source, gen.abi.fn_name)
    strides = _contiguous_strides(kernel, dims) if dims else {}
    signature: dict[str, str] = {}
    constexprs: dict[str, int] = {}
    attrs: dict[tuple[int, ...], list[list[Any]]] = {}
    # Sizes and strides are 64-bit only in an int64 specialisation, as Triton's launcher would pass them
    # (split-K's workspace offsets are int64 in any specialisation, but its sizes are not).
    index_type = "i64" if gen.abi.int64 else "i32"
    for i, arg in enumerate(gen.abi.args):
        if arg.kind == "tensor":
            param = kernel.param(arg.source)
            signature[arg.name] = "*" + param.dtype.signature
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif arg.kind == "table":
            signature[arg.name] = "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif arg.kind in ("workspace", "arrivals"):  # split-K partial sums (f32 / i32) and i32 counters
            signature[arg.name] = "*fp32" if arg.dtype == "float32" else "*i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif arg.kind == "scalar":
            signature[arg.name] = kernel.param(arg.source).dtype.signature  # type: ignore[union-attr]
        elif arg.kind in ("dim", "stride", "trip_count"):
            signature[arg.name] = index_type
            value = dims.get(arg.source) if (dims and arg.kind == "dim") else strides.get((arg.source, arg.axis))
            if value is not None and value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[arg.name] = "constexpr"
            constexprs[arg.name] = arg.value
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": compiled.schedule.num_warps, "num_stages": compiled.schedule.num_stages}
    try:
        result = triton.compile(source, target=GPUTarget("cuda", TARGETS[target], 32), options=options)
    except Exception as exc:  # Triton's errors are not ours to format; keep the message
        raise BackendError(f"Triton could not compile {gen.abi.fn_name} for {target}: {exc}") from None
    asm = {stage: result.asm[stage] for stage in STAGES if stage in result.asm}
    return Artifacts(target, asm, int(getattr(result.metadata, "shared", 0)))


def _check_target(kernel: ir.Kernel, target: str) -> None:
    """Limits tilec knows before Triton does: e4m3 fp8 exists from sm_89 (Ada, Hopper) on; tilec lowers
    block-scaled products to ``tl.dot_scaled`` only for sm_100 and newer."""
    scaled = [s for s in ir.walk_stmts(kernel.body.body) if isinstance(s, (ir.Assign, ir.Store))
              and any(isinstance(e, ir.ScaledDot) for e in ir.walk_exprs(s.value))]
    if scaled and TARGETS[target] < NATIVE_SCALED_DOT_ARCH:
        raise BackendError(f"{kernel.name} was lowered with tl.dot_scaled, which tilec emits only for sm_100 or "
                           f"newer, not {target}", scaled[0].span,
                           hint="specialise without arch (or with this target's), which dequantises instead")
    fp8 = [p.name for p in kernel.tensors if p.dtype.name == "f8e4m3"]
    if fp8 and TARGETS[target] < 89:
        raise BackendError(f"{kernel.name} uses f8e4m3 ({', '.join(fp8)}), which needs sm_89 or newer, not {target}",
                           kernel.span, hint="compile for sm_90 (or use f8e5m2, which sm_80 lacks too for products)")


def _contiguous_strides(kernel: ir.Kernel, dims: Mapping[str, int]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for p in kernel.tensors:
        sizes = [int(d.subs({s: dims[s.name] for s in d.free_symbols})) for d in p.dims]
        stride = 1
        for axis in range(len(sizes) - 1, -1, -1):
            out[(p.name, axis)] = stride
            stride *= sizes[axis]
    return out


def ptxas_path(target: str = "sm_90") -> str:
    """The ptxas Triton itself uses for ``target`` (3.9 ships two: an older one for sm_8x)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return str(get_ptxas(TARGETS[target]).path)
    except (ImportError, AttributeError):  # older Triton: one bundled ptxas
        import triton.backends.nvidia as nvidia

        return os.path.join(os.path.dirname(nvidia.__file__), "bin", "ptxas")


def ptxas_report(ptx: str, target: str) -> PtxasReport:
    """Assemble ``ptx`` with the bundled ptxas -v and read its resource report."""
    arch = {"sm_80": "sm_80", "sm_90": "sm_90a", "sm_100": "sm_100a"}[target]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run([ptxas_path(target), f"-arch={arch}", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BackendError(f"ptxas failed for {target}: {text.strip()[:2000]}")

    def number(pattern: str) -> int:
        match = re.search(pattern, text)
        return int(match.group(1)) if match else 0

    return PtxasReport(
        registers=number(r"Used (\d+) registers"),
        spill_stores=number(r"(\d+) bytes spill stores"),
        spill_loads=number(r"(\d+) bytes spill loads"),
        shared_bytes=number(r"(\d+) bytes smem"),
        text=text,
    )
