"""Ahead-of-time: the W4A8 (two-level uint4, group 128, int8 activations) main loop, counted from the cubin.

Locks in what the lean W4A8 loop reached (benchmarks/sass_count.py --w4a8 prints the same figures): the
group scale s2 after each K tile's int32 product (passes/defer_group_scale.py) and ``code - zero`` four
bytes per 32-bit operation in the int8 mma operand's K order (codegen/quant_int8.py).  SASS instructions
in the main loop per packed 32-bit weight word one thread consumes per iteration, no spills, int8
tensor-core instructions (mma.sync s8 / wgmma s8), every weight word loaded once, and (mma.sync tiles) no
dequantised tile written to shared memory.  Bounds are the worst of Triton 3.9 and 3.6 (``make compat``),
each measured value in a comment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tilec
from tilec.codegen.aot import compile_for_gpu
from tilec.codegen.sass import main_loop_stats
from tilec.ir import dtypes as dt

pytestmark = pytest.mark.aot
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "w4a8.tile"
MMA_S8 = "mma.sync.aligned.m16n8k32.row.col.satfinite.s32.s8.s8.s32"
WGMMA_S8 = "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8"

# (target, BLOCK_M, BLOCK_N, BLOCK_K, warps) -> (bound on instructions per word, the int8 tensor-core PTX);
# measured (3.9 / 3.6):
CASES = {
    ("sm_90", 16, 128, 128, 4): (17, MMA_S8),  # decode: 16.1 / 16.3 (baseline 168.3 / 408.7, 8304 / 1524 B spilled)
    ("sm_80", 16, 128, 128, 4): (17, MMA_S8),  # decode: 15.8 (3.9); 17.1 / 17.4 before the ABI's int64 flag
    #                                            replaced the offline compile's i64 sizes
    ("sm_90", 64, 64, 64, 4): (64, WGMMA_S8),  # the default prefill tile: 51.8 / 62.8 (baseline 213.0 / 256.2)
}


@pytest.mark.parametrize("case", list(CASES), ids=[f"{c[0]}-{c[1]}x{c[2]}x{c[3]}-{c[4]}w" for c in CASES])
def test_w4a8_main_loop(case: tuple[str, int, int, int, int]) -> None:
    target, bm, bn, bk, warps = case
    bound, mma = CASES[case]
    dims = {"M": 4 * bm, "N": 8192, "K": 8192, "G": 64}
    kernel = tilec.compile(EXAMPLE).w4a8_linear
    compiled = kernel.specialize(dims, {"T": dt.f16, "S": dt.f16}, target="cuda", scalars={"group": 128},
                                 schedule={"m": bm, "n": bn, "k": bk, "num_warps": warps})
    art = compile_for_gpu(compiled, target, dims)
    report = art.resources()
    assert report.spill_stores == 0 and report.spill_loads == 0, report.text
    stats = main_loop_stats(art.asm["cubin"])
    words = bn * bk // 8 / (32 * warps)  # packed words one thread consumes per iteration
    assert stats.instructions / words <= bound, stats.opcodes
    assert stats.tensor_core > 0 and stats.local_accesses == 0
    assert mma in art.asm["ptx"]
    # Each weight word and activation (int8) loaded once, plus the per-row zero point and s2 (u8 each):
    # measured 2 bytes at the decode tile; 17 at 64 x 64, where each thread loads the zero point of each of
    # the 16 rows its words belong to (LDG.U8, in the words' layout) instead of converting one load.
    tiles_bytes = (bn * bk // 8 * 4 + bm * bk) // (32 * warps)
    assert 0 <= stats.global_load_bytes - tiles_bytes <= (8 if bm == 16 else 24), stats.global_load_bytes
    if mma == MMA_S8:  # the unpacked weights are mma operand registers: only the per-row zero point and s2
        assert stats.shared_store_bytes <= 8, stats.opcodes  # vectors pass through shared memory (5 measured)
