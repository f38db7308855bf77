"""Static measurement of a kernel's main loop from its cubin (no GPU needed).

``nvdisasm`` (shipped in Triton's wheel beside ptxas) turns a cubin into SASS text; :func:`parse_sass`
reads it into instructions with addresses, :func:`main_loop` finds the main loop (the body of the
innermost backward branch; with several innermost loops, the longest) and :func:`loop_stats` counts
what a thread issues there.  design.md §7 states the W4A16 target as SASS instructions per packed 32-bit
weight word a thread consumes per iteration; ``benchmarks/sass_count.py`` prints it.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass

from tilec.errors import BackendError

_INSTR = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(?:(@!?U?P[0-9T]+)\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_LABEL = re.compile(r"^\s*(\.?[A-Za-z_$][\w.$]*):\s*$")
_TARGET = re.compile(r"`\(([^)]+)\)")

# Opcodes (before the first '.') that read or write shared memory from registers, and local memory.
_SHARED_STORES = {"STS", "STSM"}  # STSM: Hopper's stmatrix
_SHARED_LOADS = {"LDS", "LDSM"}
_LOCAL = {"LDL", "STL"}
_GLOBAL_LOADS = {"LDG", "LDGSTS"}
# tensor-core opcodes: mma.sync, wgmma, tcgen05 (sm_100; UTCIMMA is kind::i8)
_TENSOR_CORE = {"HMMA", "HGMMA", "IMMA", "IGMMA", "QGMMA", "UTCHMMA", "UTCIMMA", "UTCQMMA", "UTCOMMA"}


@dataclass(frozen=True)
class Instr:
    address: int
    opcode: str  # with modifiers, e.g. "LDG.E.128"
    operands: str
    predicate: str = ""

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]

    def target(self) -> str | None:
        """The label a branch jumps to (None for other instructions)."""
        if self.base not in ("BRA", "BRX"):
            return None
        match = _TARGET.search(self.operands)
        return match.group(1) if match else None


@dataclass(frozen=True)
class Sass:
    instrs: tuple[Instr, ...]
    labels: dict[str, int]  # label -> address of the instruction after it


@dataclass(frozen=True)
class LoopStats:
    instructions: int
    opcodes: dict[str, int]  # base opcode -> count
    tensor_core: int  # HMMA / HGMMA ... instructions
    shared_stores: int  # STS: registers written to shared memory inside the loop (a round trip)
    shared_store_bytes: int  # bytes one thread writes with them per iteration
    shared_loads: int  # LDS / LDSM
    local_accesses: int  # LDL / STL: spills touched inside the loop
    global_load_bytes: int  # bytes one thread requests per iteration (LDG and LDGSTS)


def parse_sass(text: str) -> Sass:
    instrs: list[Instr] = []
    labels: dict[str, int] = {}
    pending: list[str] = []
    for line in text.splitlines():
        label = _LABEL.match(line)
        if label:
            pending.append(label.group(1))
            continue
        match = _INSTR.match(line)
        if not match:
            continue
        address = int(match.group(1), 16)
        for name in pending:
            labels[name] = address
        pending = []
        instrs.append(Instr(address, match.group(3), match.group(4).strip(), match.group(2) or ""))
    return Sass(tuple(instrs), labels)


def loops(sass: Sass) -> list[tuple[int, int]]:
    """Index ranges [first, last] (inclusive) of every backward branch's body, self-loops excluded."""
    index = {ins.address: i for i, ins in enumerate(sass.instrs)}
    out = []
    for i, ins in enumerate(sass.instrs):
        label = ins.target()
        if label is None or label not in sass.labels:
            continue
        first = index.get(sass.labels[label])
        if first is not None and first < i:
            out.append((first, i))
    return out


def innermost_loops(sass: Sass) -> list[tuple[Instr, ...]]:
    """The instructions of every loop that contains no other (branch included), in code order."""
    spans = loops(sass)
    inner = sorted(s for s in spans if not any(o != s and s[0] <= o[0] and o[1] <= s[1] for o in spans))
    return [sass.instrs[first:last + 1] for first, last in inner]


def main_loop(sass: Sass) -> tuple[Instr, ...]:
    """The innermost loop's instructions (branch included); with several innermost loops, the longest."""
    inner = innermost_loops(sass)
    if not inner:
        raise BackendError("no loop found in the SASS (no backward branch)")
    return max(inner, key=len)


def _access_bytes(ins: Instr) -> int:
    """Bytes one LDG / LDGSTS / STS moves per thread: its width suffix (.U8, .U16, .64, .128), else 4;
    STSM.16.M88.N stores N registers."""
    if ins.base == "STSM":
        match = re.search(r"\.M88\.(\d)", ins.opcode)
        return 4 * (int(match.group(1)) if match else 1)
    widths = [int(w) for w in re.findall(r"\.(\d+)\b", ins.opcode) if w in ("8", "16", "32", "64", "128")]
    bits = widths[-1] if widths else 32
    if ins.opcode.endswith((".U8", ".S8")) or ".U8." in ins.opcode or ".S8." in ins.opcode:
        bits = 8
    if ".U16" in ins.opcode or ".S16" in ins.opcode:
        bits = 16
    return bits // 8


def local_memory_bytes(sass: Sass) -> tuple[int, int]:
    """(bytes stored, bytes loaded) by the kernel's STL / LDL instructions: ptxas's spill stores / loads."""
    stores = sum(_access_bytes(ins) for ins in sass.instrs if ins.base == "STL")
    loads = sum(_access_bytes(ins) for ins in sass.instrs if ins.base == "LDL")
    return stores, loads


def loop_stats(body: tuple[Instr, ...]) -> LoopStats:
    counts = Counter(ins.base for ins in body)
    return LoopStats(
        instructions=len(body),
        opcodes=dict(counts.most_common()),
        tensor_core=sum(counts[o] for o in _TENSOR_CORE),
        shared_stores=sum(counts[o] for o in _SHARED_STORES),
        shared_loads=sum(counts[o] for o in _SHARED_LOADS),
        local_accesses=sum(counts[o] for o in _LOCAL),
        shared_store_bytes=sum(_access_bytes(ins) for ins in body if ins.base in _SHARED_STORES),
        global_load_bytes=sum(_access_bytes(ins) for ins in body if ins.base in _GLOBAL_LOADS),
    )


def bundled_tool(name: str) -> str:
    """A CUDA binary utility shipped in Triton's wheel (``nvdisasm``, ``cuobjdump``, ``ptxas``)."""
    import triton.backends.nvidia as nvidia

    return os.path.join(os.path.dirname(nvidia.__file__), "bin", name)


def disassemble(cubin: bytes) -> str:
    """SASS text of a cubin, through the nvdisasm bundled with Triton."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        proc = subprocess.run([bundled_tool("nvdisasm"), "-c", path], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackendError(f"nvdisasm failed: {proc.stderr.strip()[:2000]}")
    return proc.stdout


def main_loop_stats(cubin: bytes) -> LoopStats:
    return loop_stats(main_loop(parse_sass(disassemble(cubin))))
