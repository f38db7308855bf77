"""Static W4A16 main-loop figures, counted from the sm_90 cubin (design.md §7, last row; no GPU needed).

    python benchmarks/sass_count.py

For examples/w4a16.tile (uint4, group 128, f16) at the decode tile (16 x 128 x 128, 4 warps) and the
prefill tile (128 x 128 x 128, 4 and 8 warps), and for a plain f16 GEMM with the same [N, K] weight layout
as the yardstick: SASS instructions in the main loop per packed 32-bit weight word one thread consumes per
iteration (the f16 GEMM is counted per 8 weights, the same denominator), registers, spill bytes, STS
(registers written to shared memory in the loop: a round trip of dequantised data; a plain GEMM has none),
tensor-core instructions and global-load bytes per thread per iteration.

Then examples/w4a8.tile (two-level uint4, group 128, int8 activations, int32 accumulation) at the decode
tiles (16 x 128 x 128 / 4 warps, the default; 16 x 64 x 64 / 8 warps at group 96, the default where the
group scale cannot follow the product) and the prefill tiles (64 x 64 x 64 / 4 warps, the default rule's; 128 x 128 x
128 / 8 warps), with the same columns (``--w4a8`` prints only these).

``--attention`` prints the attention prefill key loops instead (bf16, D = 128, B=4, H=32, HK=8, the default
128 x 64 / 8-warp schedule, the default positive scale): SASS instructions per score one thread issues in each
key loop (passes/interior_tiles.py: masked head, mask-free interior, masked tail), registers and spills.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tilec
from tilec.codegen.aot import compile_for_gpu
from tilec.codegen.sass import main_loop_stats
from tilec.ir import dtypes as dt

ROOT = Path(__file__).resolve().parent.parent
F16_GEMM = """
def gemm(x: Tensor[M, K, T], w: Tensor[N, K, T], out: Tensor[M, N, T]):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += x[m, k] @ w[n, k].T
        out[m, n] = acc.to(T)
"""
TILES = {  # name -> (BLOCK_M, BLOCK_N, BLOCK_K, warps)
    "decode": (16, 128, 128, 4),
    "prefill-4w": (128, 128, 128, 4),
    "prefill-8w": (128, 128, 128, 8),
}

W4A8_TILES = {  # name -> (tile, group)
    "decode": ((16, 128, 128, 4), 128),
    "decode-g96": ((16, 64, 64, 8), 96),  # 96 = 3 * 32: no 64-wide K tile lies in one group
    "prefill-64": ((64, 64, 64, 4), 128),
    "prefill-8w": ((128, 128, 128, 8), 128),
}


def measure(kernel: tilec.Kernel, tile: tuple[int, int, int, int], bits: int, target: str = "sm_90",
            dtypes: dict[str, dt.DType] | None = None, group: int = 128) -> dict:
    bm, bn, bk, warps = tile
    dims = {"M": 4 * bm, "N": 8192, "K": 8192, "G": -(-8192 // group)}
    compiled = kernel.specialize(dims, dtypes or {"T": dt.f16}, target="cuda",
                                 schedule={"m": bm, "n": bn, "k": bk, "num_warps": warps}, scalars={"group": group})
    art = compile_for_gpu(compiled, target, dims)
    stats = main_loop_stats(art.asm["cubin"])
    report = art.resources()
    words = bn * bk * 4 / 32 / (32 * warps)  # words of 8 weights (4-bit) one thread consumes per iteration
    return {
        "instr/word": stats.instructions / words,
        "loop instrs": stats.instructions,
        "regs": report.registers,
        "spill B": report.spill_stores + report.spill_loads,
        "STS": stats.shared_stores,
        "STS B/thr": stats.shared_store_bytes,
        "LDS": stats.shared_loads,
        "LDL/STL": stats.local_accesses,
        "MMA": stats.tensor_core,
        "LDG B/thr": stats.global_load_bytes,
        "smem KB": art.shared_bytes // 1024,
    }


ATTENTION = {  # name -> (variant features, M = N)
    "causal": ({"causal": True, "lse": True}, 4096),
    "non-causal": ({"lse": True}, 4096),
    "non-causal ragged": ({"lse": True}, 4000),
    "causal window 256": ({"causal": True, "window": True}, 4096),
}


def attention_rows(target: str) -> None:
    import torch

    from tilec.codegen.sass import disassemble, innermost_loops, loop_stats, parse_sass
    from tilec.ops_attention import Variant, kernel_for, prefill_schedule

    print(f"{'attention':<20} {'instr/score per key loop':<28} {'regs':>5} {'spill B':>8}")
    for name, (features, n) in ATTENTION.items():
        dims = {"B": 4, "H": 32, "HK": 8, "M": n, "N": n, "D": 128}
        schedule = prefill_schedule(n, 128, torch.device("cuda"))
        compiled = kernel_for(Variant(**features)).specialize(dims, {"T": dt.bf16}, target="cuda", schedule=schedule,
                                                              scalars={"scale": 128 ** -0.5, "window": 256})
        art = compile_for_gpu(compiled, target, dims)
        scores = schedule["m"] * schedule["n"] / (32 * schedule["num_warps"])  # per thread per iteration
        stats = [loop_stats(body) for body in innermost_loops(parse_sass(disassemble(art.asm["cubin"])))]
        per = " / ".join(f"{s.instructions / scores:.1f}" for s in stats if s.tensor_core)
        report = art.resources()
        print(f"{name:<20} {per:<28} {report.registers:>5} {report.spill_stores + report.spill_loads:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="sm_90")
    parser.add_argument("--w4a8", action="store_true", help="only the W4A8 rows")
    parser.add_argument("--attention", action="store_true", help="only the attention prefill key loops")
    args = parser.parse_args()
    if args.attention:
        attention_rows(args.target)
        return
    kernels = {
        "w4a16 g128": (tilec.compile(ROOT / "examples" / "w4a16.tile").kernels["w4a16_linear"], 4),
        "f16 gemm": (tilec.compile(F16_GEMM, name="f16_gemm.tile").gemm, 16),
    }
    rows = [] if args.w4a8 else [(name, tile, measure(k, TILES[tile], bits, args.target))
                                 for name, (k, bits) in kernels.items() for tile in TILES]
    w4a8 = tilec.compile(ROOT / "examples" / "w4a8.tile").kernels["w4a8_linear"]
    rows += [(f"w4a8 g{group}", name, measure(w4a8, tile, 4, args.target, {"T": dt.f16, "S": dt.f16}, group))
             for name, (tile, group) in W4A8_TILES.items()]
    cols = list(rows[0][2])
    print(f"{'kernel':<12} {'tile':<11} " + " ".join(f"{c:>11}" for c in cols))
    for name, tile, row in rows:
        cells = [f"{v:11.1f}" if isinstance(v, float) else f"{v:>11}" for v in row.values()]
        print(f"{name:<12} {tile:<11} " + " ".join(cells))


if __name__ == "__main__":
    main()
