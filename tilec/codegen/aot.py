"""Ahead-of-time compilation for a GPU on a machine without one.

Triton's compiler runs without a device: ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", 90, 32))`` produces TTIR, TTGIR, LLVM IR, PTX and a
cubin.  The wheel also ships ``cuobjdump`` and ``nvdisasm``: :meth:`Artifacts.resources`
reads registers, stack and spills from that very cubin (not from a second ptxas run,
whose flags would differ from Triton's); tests use both to prove each shipped kernel
uses tensor cores and spills nothing, and ``tilec compile --emit ptx`` uses this module.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tilec.codegen.sass import bundled_tool, disassemble, local_memory_bytes, parse_sass
from tilec.errors import BackendError
from tilec.ir import nodes as ir
from tilec.passes.block_scaled_dot import NATIVE_SCALED_DOT_ARCH

TARGETS = {"sm_80": 80, "sm_90": 90, "sm_100": 100}
STAGES = ("ttir", "ttgir", "llir", "ptx", "cubin")


@dataclass(frozen=True)
class Resources:
    """What one thread of the compiled kernel uses, read from the cubin Triton built."""

    registers: int
    stack_bytes: int  # per-thread stack frame: nonzero when ptxas spilled
    spill_stores: int  # bytes stored to local memory by the kernel's STL instructions (ptxas's "spill stores")
    spill_loads: int  # bytes loaded by its LDL instructions
    shared_bytes: int  # static shared memory (Triton's dynamic shared memory is Artifacts.shared_bytes)
    text: str  # cuobjdump's resource line, for messages


@dataclass(frozen=True)
class Artifacts:
    target: str
    asm: Mapping[str, Any]  # stage -> text (cubin: bytes)
    shared_bytes: int

    def resources(self) -> Resources:
        """Registers and spills of the cubin itself.  Triton runs ptxas with flags of its own (3.9 adds
        ``--regAllocOptLevel=2``), so assembling the PTX again with plain flags can allocate differently
        (measured: 168 registers and 8 spilled bytes where Triton's cubin has 183 and none)."""
        return cubin_resources(self.asm["cubin"])


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


def cubin_resources(cubin: bytes) -> Resources:
    """Registers, stack and static shared memory from ``cuobjdump -res-usage``; spill bytes from the SASS's
    local-memory instructions (the quantity ptxas -v reports as spill stores / loads)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        proc = subprocess.run([bundled_tool("cuobjdump"), "-res-usage", path], capture_output=True, text=True,
                              check=False)
    usage = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", proc.stdout)
    if proc.returncode != 0 or usage is None:
        raise BackendError(f"cuobjdump could not read the cubin: {(proc.stdout + proc.stderr).strip()[:2000]}")
    registers, stack, shared, local = (int(g) for g in usage.groups())
    stores, loads = local_memory_bytes(parse_sass(disassemble(cubin)))
    return Resources(registers=registers, stack_bytes=stack + local, spill_stores=stores, spill_loads=loads,
                     shared_bytes=shared, text=usage.group(0))

