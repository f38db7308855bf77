"""Ahead-of-time: attention prefill and decode compile for sm_90 and sm_80 at production sizes.

The schedules are the GPU ones tilec.ops picks (``prefill_schedule``, ``decode_schedule`` for a CUDA
device).  Products reach the tensor cores (prefill on sm_90: wgmma, ``ttng.warp_group_dot`` in TTGIR; the
16-row decode tile may take ``mma.sync`` there; sm_80: ``mma.sync``), and ptxas reports no spills, at most
255 registers and shared memory within the target's limit.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tilec.codegen.aot import Artifacts, compile_for_gpu
from tilec.ir import dtypes as dt
from tilec.ops_attention import Variant, prefill_schedule
from tilec.ops_attention import kernel_for as prefill_kernel
from tilec.ops_decode import decode_schedule
from tilec.ops_decode import kernel_for as decode_kernel
from tilec.ops_decode_spec import DecodeVariant

pytestmark = pytest.mark.aot
CUDA = torch.device("cuda")
SHARED_LIMIT = {"sm_90": 227 * 1024, "sm_80": 163 * 1024}
FULL = Variant(causal=True, window=True, bias=True, alibi=True, softcap=True, lse=True)
CAUSAL = Variant(causal=True, lse=True)
WINDOW = Variant(causal=True, window=True, lse=True)

# (variant, head dim, dtype, target): every head dim on both targets for the causal kernel, the full-feature
# kernel at 64/128/256, the padded head dims (80, 96) once each.
PREFILL = [(CAUSAL, d, dtype, target) for d in (64, 128, 256) for target in ("sm_90", "sm_80")
           for dtype in (("bf16", "f16") if d == 128 else ("bf16",))]
PREFILL += [(FULL, d, "bf16", target) for d in (64, 128, 256) for target in ("sm_90", "sm_80")]
PREFILL += [(FULL, 128, "f16", "sm_90"), (CAUSAL, 80, "bf16", "sm_90"), (CAUSAL, 96, "f16", "sm_80")]
# a sliding window alone: three key loops (passes/interior_tiles.py), the most registers (255 on sm_90 under 3.9)
PREFILL += [(WINDOW, 128, "bf16", target) for target in ("sm_90", "sm_80")]


def prefill_dims(d: int) -> dict[str, int]:
    return {"B": 4, "H": 32, "HK": 8, "M": 4096, "N": 4096, "D": d}


def compile_prefill(variant: Variant, d: int, dtype: str, target: str,
                    scalars: dict[str, float] | None = None) -> tuple[Artifacts, Any]:
    dims = prefill_dims(d)
    schedule = prefill_schedule(dims["M"], d, CUDA)
    dtypes = {"T": dt.DTYPES[dtype]} | ({"BT": dt.DTYPES[dtype]} if variant.bias else {})
    if scalars is None:  # what tilec.ops.attention launches with by default: the scale 1 / sqrt(D) is positive
        scalars = {"scale": d ** -0.5, "softcap": 30.0}
    compiled = prefill_kernel(variant).specialize(dims, dtypes, target="cuda", schedule=schedule, scalars=scalars)
    return compile_for_gpu(compiled, target, dims), compiled


# Decode: Q = 1, H = 32, HK = 8 (4 query rows per KV head, one 16-row tile), D = 128, Nmax = 32768.
H, HK, D, NMAX, BATCH, PAGE, GROUP = 32, 8, 128, 32768, 8, 64, 32
DECODE = [(DecodeVariant(), 1, "sm_90"), (DecodeVariant(), 16, "sm_90"), (DecodeVariant(), 16, "sm_80"),
          (DecodeVariant(paged=True), 16, "sm_90"),
          (DecodeVariant("int4", key_mode="channel"), 16, "sm_90"),
          (DecodeVariant("int4", key_mode="channel"), 1, "sm_80"),
          (DecodeVariant("int4", paged=True, key_mode="channel"), 16, "sm_90"),
          (DecodeVariant("int4"), 16, "sm_80"),
          (DecodeVariant("int8"), 16, "sm_90"),
          (DecodeVariant("int8", paged=True, key_mode="channel"), 1, "sm_80"),
          (DecodeVariant("int2", key_mode="channel"), 16, "sm_90"),
          (DecodeVariant("int2", paged=True), 16, "sm_80"),
          (DecodeVariant("fp8_e4m3"), 16, "sm_90"),
          (DecodeVariant("fp8_e4m3", paged=True, key_mode="channel", lse=True), 1, "sm_90")]


def decode_dims(variant: DecodeVariant) -> dict[str, int]:
    dims = {"B": BATCH, "HK": HK, "R": H // HK, "DP": D // variant.planes}
    if variant.paged:
        blocks = NMAX // PAGE
        return dims | {"N": blocks * PAGE, "MB": blocks, "S": PAGE, "NB": BATCH * blocks}
    dims["N"] = NMAX
    if variant.fmt != "dense" and variant.key_mode == "channel":
        dims["NG"] = NMAX // GROUP
    return dims


def compile_decode(variant: DecodeVariant, splits: int, target: str, dtype: str = "bf16") -> tuple[Artifacts, Any]:
    dims = decode_dims(variant)
    schedule = decode_schedule(dims["R"], CUDA, splits)
    compiled = decode_kernel(variant).specialize(dims, {"T": dt.DTYPES[dtype]}, target="cuda", schedule=schedule)
    return compile_for_gpu(compiled, target, dims), compiled


def check_resources(art: Artifacts, target: str) -> None:
    report = art.resources()
    assert report.spill_stores == 0 and report.spill_loads == 0, report.text
    assert 0 < report.registers <= 255, report.text
    assert art.shared_bytes <= SHARED_LIMIT[target], art.shared_bytes
    assert isinstance(art.asm["cubin"], bytes) and len(art.asm["cubin"]) > 0


def prefill_id(case: tuple[Variant, int, str, str]) -> str:
    variant, d, dtype, target = case
    name = {FULL: "full", WINDOW: "window"}.get(variant, "causal")
    return f"{name}-d{d}-{dtype}-{target}"


@pytest.mark.parametrize("case", PREFILL, ids=[prefill_id(c) for c in PREFILL])
def test_prefill_uses_tensor_cores_without_spills(case: tuple[Variant, int, str, str]) -> None:
    variant, d, dtype, target = case
    art, compiled = compile_prefill(variant, d, dtype, target)
    assert "tl.dot(" in compiled.source
    if target == "sm_90":
        assert "ttng.warp_group_dot" in art.asm["ttgir"]
    else:
        assert "mma.sync" in art.asm["ptx"]
    check_resources(art, target)


def decode_id(case: tuple[DecodeVariant, int, str]) -> str:
    v, splits, target = case
    layout = "paged" if v.paged else "dense"
    keys = f"-{v.key_mode}" if v.fmt != "dense" else ""
    return f"{v.fmt}{keys}-{layout}{'-lse' if v.lse else ''}-split{splits}-{target}"


@pytest.mark.parametrize("case", DECODE, ids=[decode_id(c) for c in DECODE])
def test_decode_uses_tensor_cores_without_spills(case: tuple[DecodeVariant, int, str]) -> None:
    variant, splits, target = case
    art, compiled = compile_decode(variant, splits, target)
    assert "tl.dot(" in compiled.source
    assert "mma" in art.asm["ptx"]  # mma.sync, or wgmma on sm_90
    if target == "sm_80":
        assert "mma.sync" in art.asm["ptx"]
    check_resources(art, target)


# Instructions a thread issues per byte of KV cache its program reads, in the key loop (sm_90, bf16, 64-key
# tiles of D = 128, 4 warps), counted from the cubin: the budget that keeps decode at memory speed on an
# H200 is about 7 (33 T thread-instructions/s against 4.8 TB/s).  Measured under Triton 3.9 / 3.6 and
# locked a little above: the per-token scales folded out of the tiles and the codes converted by the 2**p
# magic (codegen/lowering.magic_cast) took int4 from 21.6 to 13.9 (3.6: 14.3), int8 from 9.7 to 7.0 (7.2);
# fp8_e4m3 6.3 (6.6), 16-bit 1.8.  Four codes per inline-asm group (lowering._byte_field_asm) and the keys'
# 128 folded into their zero: int4 14.2 -> 11.8 (3.6: 14.2 -> 11.6).  Per-channel int4 keys (KIVI), c - z in
# f16: 19.5 -> 17.7 (3.6: 19.8 -> 18.2).  The softmax scale after the per-token key scale (online_softmax's fma):
# int4 11.6 (3.6: 11.55), int8 7.0 (7.2), fp8_e4m3 6.5 (6.4).
PER_BYTE = [(DecodeVariant(), 2.0), (DecodeVariant("int8"), 7.5), (DecodeVariant("int4"), 12.0),
            (DecodeVariant("int4", key_mode="channel"), 18.6), (DecodeVariant("fp8_e4m3"), 6.8)]


@pytest.mark.parametrize("case", PER_BYTE, ids=[f"{v.fmt}-{v.key_mode}-{limit}" for v, limit in PER_BYTE])
def test_decode_key_loop_instructions_per_cache_byte(case: tuple[DecodeVariant, float]) -> None:
    from tilec.codegen.sass import main_loop_stats

    variant, limit = case
    art, compiled = compile_decode(variant, 16, "sm_90")
    stats = main_loop_stats(art.asm["cubin"])
    bits = {"dense": 16, "int8": 8, "int4": 4, "fp8_e4m3": 8}[variant.fmt]
    keys = decode_schedule(H // HK, CUDA, 16)["n"]
    cache_bytes = keys * D * 2 * bits / 8  # one KV head's key and value codes per iteration
    per_byte = stats.instructions * 32 * compiled.schedule.num_warps / cache_bytes
    assert per_byte <= limit, (per_byte, sorted(stats.opcodes.items(), key=lambda kv: -kv[1])[:8])
    assert stats.local_accesses == 0 and stats.tensor_core > 0


# Instructions a thread issues per score in each key loop of the causal prefill (sm_90, bf16, D = 128, 128 x 64
# tiles, 8 warps: 32 scores per thread per iteration), counted from the cubin.  passes/interior_tiles.py gives
# the tiles every row sees whole a loop without the causal select and the key-axis masks: measured 12.7 (Triton
# 3.9) / 11.9 (3.6) per score there, the non-causal loop's figure, against 15.3 / 16.7 in the masked tail (the
# single loop they replace measured 15.2 / 16.5).  With the launch's scale known positive, the scale goes after
# the row max and into one fma per score (passes/online_softmax.py): 11.8 / 11.0 (tail 14.3 / 15.8).
def test_causal_prefill_interior_loop_is_as_lean_as_non_causal() -> None:
    from tilec.codegen.sass import disassemble, innermost_loops, loop_stats, parse_sass

    art, compiled = compile_prefill(CAUSAL, 128, "bf16", "sm_90")
    assert "tl.fma(" in compiled.source
    assert "# interior: key tiles every row sees whole" in compiled.source
    key_loops = [loop_stats(body) for body in innermost_loops(parse_sass(disassemble(art.asm["cubin"])))]
    key_loops = [s for s in key_loops if s.tensor_core]
    assert len(key_loops) == 2  # interior, then the masked tail
    blocks = prefill_schedule(4096, 128, CUDA)
    scores_per_thread = blocks["m"] * blocks["n"] / (32 * blocks["num_warps"])
    interior, tail = (s.instructions / scores_per_thread for s in key_loops)
    assert interior <= 12.5 and interior < tail, (interior, tail)
    assert all(s.local_accesses == 0 for s in key_loops)
