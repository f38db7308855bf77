"""Quantised linear layers on a GPU, side by side with their peers, in one run (design.md section 7).

    python benchmarks/linear.py                 # on a CUDA machine: K = N = 8192, M = 1, 16, 4096
    python benchmarks/linear.py --dry-run       # anywhere: tiny sizes through the interpreter, no timing

For each M it checks every kernel against a float64 reference on fresh inputs first (a wrong kernel is
never timed), then reports the median of repeated timings (triton.testing.do_bench: warm-up, L2 flushed),
the ratio to the peer measured in the same run, and the fraction of the roofline: bytes moved over the
copy bandwidth measured in the same run, and FLOPs over the dense bf16 peak (790 TFLOP/s on an H200).
With --results it appends a dated table to benchmarks/RESULTS.md.

Rows so far: W4A16 (uint4, group 128) vs torch fp16 matmul and gemlite (when importable); W4A8 (two-level
uint4, group 128, activations quantised per token inside the op) vs torch fp16 matmul. W8A8 vs torch
and FP8 x FP8 vs torch._scaled_mm are still to be added here.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

import tilec
from tilec.formats.two_level import second_level
from tilec.ops_w4a8 import quantize_per_token

PEAK_FLOPS = 790e12  # dense bf16, H200 (design.md section 7)
ROOT = Path(__file__).resolve().parent


def bench(fn: Callable[[], object], dry: bool) -> float:
    """Median milliseconds of ``fn``; 0 in a dry run."""
    if dry:
        fn()
        return 0.0
    import triton.testing

    runs = [triton.testing.do_bench(fn, warmup=25, rep=100) for _ in range(5)]
    return statistics.median(runs)


def copy_bandwidth(device: str, dry: bool) -> float:
    """Bytes per second of a device-to-device copy of 1 GiB, measured now."""
    if dry:
        return 1.0
    src = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src), dry)
    return 2 * src.numel() / (ms * 1e-3)


def check(out: torch.Tensor, ref: torch.Tensor, what: str, tol: float) -> None:
    err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    if not err <= tol:  # NaN fails too
        raise SystemExit(f"{what}: relative error {err:.3e} > {tol:.1e}; not timing a wrong kernel")


def gemlite_linear(weight: torch.Tensor, group: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        import gemlite  # noqa: F401
        from gemlite.helper import A16W4  # type: ignore[import-not-found]
    except Exception:
        return None
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=torch.float16, device=weight.device)
    layer.weight.data.copy_(weight)
    try:
        module = A16W4(device=str(weight.device)).from_linear(layer)
    except Exception:
        return None
    return module  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU interpreter, no timing")
    parser.add_argument("--results", action="store_true", help="append a dated table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    dry = args.dry_run or not torch.cuda.is_available()
    device = "cpu" if dry else "cuda"
    k_dim = n_dim = 256 if dry else 8192
    ms_list = (1, 16, 64) if dry else (1, 16, 4096)
    gen = torch.Generator(device="cpu").manual_seed(0)
    weight = (torch.randn(n_dim, k_dim, generator=gen) * 0.02).to(device, torch.float16)
    qweight = tilec.quantize(weight, "uint4", group_size=128).to(device)
    w_deq = qweight.dequantize().to(device, torch.float64)
    q8 = tilec.quantize(weight.cpu(), "uint4", group_size=128, two_level=True)  # references built on the host
    assert q8.zeros is not None and q8.channel_scales is not None
    w_levels = second_level(q8.codes(), q8.scales, q8.zeros, 128).to(device, torch.float64)
    w_channel = q8.channel_scales.to(device, torch.float64)
    qweight8 = q8.to(device)
    bandwidth = copy_bandwidth(device, dry)
    gem = None if dry else gemlite_linear(weight, 128)
    rows = []
    for m in ms_list:
        x = torch.randn(m, k_dim, generator=gen).to(device, torch.float16)
        ref = x.double() @ w_deq.T
        check(tilec.ops.linear(x, qweight), ref, f"W4A16 M={m}", 2 * 2.0**-10)
        t_tilec = bench(lambda x=x: tilec.ops.linear(x, qweight), dry)
        t_torch = bench(lambda x=x: x @ weight.T, dry)
        t_gem = bench(lambda x=x: gem(x), dry) if gem is not None else float("nan")
        bytes_moved = qweight.nbytes + x.numel() * 2 + m * n_dim * 2
        flops = 2 * m * n_dim * k_dim
        rows.append(("W4A16 g128", m, t_tilec, "torch fp16", t_torch, t_gem, bytes_moved, flops))
        # W4A8: the same weight, two-level; checked against the float64 product of the int8 activations
        xq, x_scale = quantize_per_token(x)
        ref8 = (xq.double() @ w_levels.T) * x_scale.double()[:, None] * w_channel[None, :]
        check(tilec.ops.linear(x, qweight8), ref8, f"W4A8 M={m}", 2 * 2.0**-10)
        t_w4a8 = bench(lambda x=x: tilec.ops.linear(x, qweight8), dry)
        rows.append(("W4A8 g128 two-level", m, t_w4a8, "torch fp16", t_torch, float("nan"),
                     qweight8.nbytes + x.numel() * 2 + m * n_dim * 2, flops))
    header = ("| kernel | M | tilec ms | peer | peer ms | tilec / peer speed-up | gemlite ms | "
              "fraction of copy bandwidth | fraction of bf16 peak |")
    lines = [header, "| --- " * 9 + "|"]
    for name, m, t, peer, tp, tg, nbytes, flops in rows:
        speed = tp / t if t else float("nan")
        frac_bw = nbytes / bandwidth / (t * 1e-3) if t else float("nan")
        frac_fl = flops / PEAK_FLOPS / (t * 1e-3) if t else float("nan")
        lines.append(f"| {name} | {m} | {t:.4f} | {peer} | {tp:.4f} | {speed:.2f}x | {tg:.4f} | {frac_bw:.2f} | "
                     f"{frac_fl:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.results and not dry:
        import triton

        gpu = torch.cuda.get_device_name()
        stamp = datetime.date.today().isoformat()
        note = (f"\n## {stamp}: quantised linear, K = N = {k_dim}\n\n{gpu}; torch {torch.__version__}, triton "
                f"{triton.__version__}, python {platform.python_version()}; measured copy bandwidth "
                f"{bandwidth / 1e12:.2f} TB/s. Command: `python benchmarks/linear.py --results`. Median of 5 "
                f"do_bench runs.\n\n{table}\n")
        with open(ROOT / "RESULTS.md", "a") as f:
            f.write(note)
    print(f"device: {device}{' (dry run: correctness only, no timing)' if dry else ''}")


if __name__ == "__main__":
    main()
