"""Quantised linear layers on a GPU, side by side with their peers, in one run (design.md section 7).

    python benchmarks/linear.py                 # on a CUDA machine: K = N = 8192, M = 1, 16, 4096
    python benchmarks/linear.py --dry-run       # anywhere: tiny sizes through the interpreter, no timing

For each M it checks every kernel against a float64 reference on fresh inputs first (a wrong kernel is
never timed), then reports the median of repeated timings (triton.testing.do_bench: warm-up, L2 flushed),
the ratio to the peer measured in the same run, and the fraction of the roofline: bytes moved over the
copy bandwidth measured in the same run, and FLOPs over the dense bf16 peak (790 TFLOP/s on an H200).
With --results it appends a dated table to benchmarks/RESULTS.md.

Rows: W4A16 (uint4, group 128, tilec.ops.linear) vs torch fp16 matmul and gemlite (when importable);
W4A8 (two-level uint4, group 128, activations quantised per token inside the op) vs torch fp16 matmul;
W8A8 (examples/w8a8.tile: int8 x int8, per-token x per-channel scales, bf16 out) vs torch fp16 matmul;
FP8 x FP8 (examples/fp8_gemm.tile: e4m3, per-row scales, bf16 out) vs torch._scaled_mm with the same
row-wise scales, also at M = 8192 (design.md's 8192^3 target).  A peer that cannot run a shape (torch's
scaled_mm at M = 1, say) is shown as nan, with the reason printed.
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
from tilec.ops_act_quant import quantize_per_token

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


Row = tuple[str, int, float, str, float, float, int, int]
EXAMPLES = ROOT.parent / "examples"


def w4a16_rows(ms: tuple[int, ...], n_dim: int, k_dim: int, device: str, dry: bool,
               gen: torch.Generator) -> list[Row]:
    weight = (torch.randn(n_dim, k_dim, generator=gen) * 0.02).to(device, torch.float16)
    qweight = tilec.quantize(weight, "uint4", group_size=128).to(device)
    w_deq = qweight.dequantize().to(device, torch.float64)
    gem = None if dry else gemlite_linear(weight, 128)
    rows = []
    for m in ms:
        x = torch.randn(m, k_dim, generator=gen).to(device, torch.float16)
        ref = x.double() @ w_deq.T
        check(tilec.ops.linear(x, qweight), ref, f"W4A16 M={m}", 2 * 2.0**-10)
        t_tilec = bench(lambda x=x: tilec.ops.linear(x, qweight), dry)
        t_torch = bench(lambda x=x: x @ weight.T, dry)
        t_gem = bench(lambda x=x: gem(x), dry) if gem is not None else float("nan")
        bytes_moved = qweight.nbytes + x.numel() * 2 + m * n_dim * 2
        rows.append(("W4A16 g128", m, t_tilec, "torch fp16", t_torch, t_gem, bytes_moved, 2 * m * n_dim * k_dim))
    return rows


def w4a8_rows(ms: tuple[int, ...], n_dim: int, k_dim: int, device: str, dry: bool,
              gen: torch.Generator) -> list[Row]:
    weight = (torch.randn(n_dim, k_dim, generator=gen) * 0.02).to(torch.float16)
    q8 = tilec.quantize(weight, "uint4", group_size=128, two_level=True)  # references built on the host
    assert q8.zeros is not None and q8.channel_scales is not None
    w_levels = second_level(q8.codes(), q8.scales, q8.zeros, 128).to(device, torch.float64)
    w_channel = q8.channel_scales.to(device, torch.float64)
    qweight8, weight = q8.to(device), weight.to(device)
    rows = []
    for m in ms:
        x = torch.randn(m, k_dim, generator=gen).to(device, torch.float16)
        # checked against the float64 product of the int8 activations and the two-level weight
        xq, x_scale = quantize_per_token(x)
        ref = (xq.double() @ w_levels.T) * x_scale.double()[:, None] * w_channel[None, :]
        check(tilec.ops.linear(x, qweight8), ref, f"W4A8 M={m}", 2 * 2.0**-10)
        t_w4a8 = bench(lambda x=x: tilec.ops.linear(x, qweight8), dry)
        t_torch = bench(lambda x=x: x @ weight.T, dry)
        rows.append(("W4A8 g128 two-level", m, t_w4a8, "torch fp16", t_torch, float("nan"),
                     qweight8.nbytes + x.numel() * 2 + m * n_dim * 2, 2 * m * n_dim * k_dim))
    return rows


def w8a8_rows(ms: tuple[int, ...], n_dim: int, k_dim: int, device: str, dry: bool,
              gen: torch.Generator) -> list[Row]:
    kernel = tilec.compile(EXAMPLES / "w8a8.tile").w8a8_linear
    w = torch.randint(-127, 128, (n_dim, k_dim), generator=gen, dtype=torch.int8).to(device)
    w_scale = (torch.rand(n_dim, generator=gen) * 1e-3 + 1e-4).to(device)
    w_half = w.half()
    rows = []
    for m in ms:
        x = torch.randint(-127, 128, (m, k_dim), generator=gen, dtype=torch.int8).to(device)
        x_scale = (torch.rand(m, generator=gen) * 1e-2 + 1e-3).to(device)
        out = torch.full((m, n_dim), float("nan"), dtype=torch.bfloat16, device=device)
        kernel(x, w, x_scale, w_scale, out)
        ref = (x.double() @ w.double().T) * x_scale.double()[:, None] * w_scale.double()
        check(out, ref, f"W8A8 M={m}", 2 * 2.0**-8)
        x_half = x.half()
        t_tilec = bench(lambda x=x, xs=x_scale, o=out: kernel(x, w, xs, w_scale, o), dry)
        t_torch = bench(lambda xh=x_half: xh @ w_half.T, dry)
        bytes_moved = w.numel() + x.numel() + m * n_dim * 2 + 4 * (m + n_dim)
        rows.append(("W8A8 int8", m, t_tilec, "torch fp16", t_torch, float("nan"), bytes_moved,
                     2 * m * n_dim * k_dim))
    return rows


def fp8_rows(ms: tuple[int, ...], n_dim: int, k_dim: int, device: str, dry: bool,
             gen: torch.Generator) -> list[Row]:
    kernel = tilec.compile(EXAMPLES / "fp8_gemm.tile").fp8_gemm
    b = torch.randn(n_dim, k_dim, generator=gen).to(device).to(torch.float8_e4m3fn)
    b_scale = (torch.rand(n_dim, generator=gen) + 0.5).to(device)
    rows = []
    for m in ms:
        a = torch.randn(m, k_dim, generator=gen).to(device).to(torch.float8_e4m3fn)
        a_scale = (torch.rand(m, generator=gen) + 0.5).to(device)
        out = torch.full((m, n_dim), float("nan"), dtype=torch.bfloat16, device=device)
        kernel(a, b, a_scale, b_scale, out)
        ref = (a.double() @ b.double().T) * a_scale.double()[:, None] * b_scale.double()
        check(out, ref, f"FP8 M={m}", 2 * 2.0**-8)
        t_tilec = bench(lambda a=a, s=a_scale, o=out: kernel(a, b, s, b_scale, o), dry)
        t_peer = float("nan")
        if not dry:
            def peer(a: torch.Tensor = a, s: torch.Tensor = a_scale) -> torch.Tensor:
                return torch._scaled_mm(a, b.t(), scale_a=s[:, None], scale_b=b_scale[None, :],
                                        out_dtype=torch.bfloat16)
            try:
                check(peer(), ref, f"torch._scaled_mm M={m}", 2 * 2.0**-8)
                t_peer = bench(peer, dry)
            except (RuntimeError, SystemExit) as exc:
                print(f"torch._scaled_mm at M={m}: {str(exc).splitlines()[0]}")
        bytes_moved = a.numel() + b.numel() + m * n_dim * 2 + 4 * (m + n_dim)
        rows.append(("FP8 e4m3 x e4m3", m, t_tilec, "torch._scaled_mm", t_peer, float("nan"), bytes_moved,
                     2 * m * n_dim * k_dim))
    return rows


def target(name: str, m: int, speed: float, frac_bw: float, t: float, t_gem: float) -> str:
    """design.md section 7's target for this row, and whether this run met it (a miss is reported as one)."""
    goals: list[tuple[str, bool]] = []
    if name.startswith("W4A16") and m == 1:
        goals = [(">= 3.5x torch fp16", speed >= 3.5), (">= 85% copy bandwidth", frac_bw >= 0.85),
                 ("faster than gemlite", t_gem != t_gem or t < t_gem)]  # no gemlite row: that goal is not judged
    elif name.startswith("W4A16") and m == 16:
        goals = [(">= 3x torch fp16", speed >= 3.0)]
    elif name.startswith("W4A16") and m >= 4096:
        goals = [(">= 0.9x torch fp16", speed >= 0.9)]
    elif name.startswith("FP8") and m == 8192:
        goals = [(">= 0.9x torch._scaled_mm", speed >= 0.9)]
    if not goals:
        return "-"
    if t == 0:
        return "; ".join(g for g, _ in goals) + " (not timed)"
    return "; ".join(f"{g}: {'met' if ok else 'MISSED'}" for g, ok in goals)


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
    bandwidth = copy_bandwidth(device, dry)
    rows = w4a16_rows(ms_list, n_dim, k_dim, device, dry, gen)
    rows += w4a8_rows(ms_list, n_dim, k_dim, device, dry, gen)
    rows += w8a8_rows(ms_list, n_dim, k_dim, device, dry, gen)
    rows += fp8_rows(ms_list + ((8192,) if not dry else ()), n_dim, k_dim, device, dry, gen)
    header = ("| kernel | M | tilec ms | peer | peer ms | tilec / peer speed-up | gemlite ms | "
              "fraction of copy bandwidth | fraction of bf16 peak | design.md target |")
    lines = [header, "| --- " * 10 + "|"]
    for name, m, t, peer, tp, tg, nbytes, flops in rows:
        speed = tp / t if t else float("nan")
        frac_bw = nbytes / bandwidth / (t * 1e-3) if t else float("nan")
        frac_fl = flops / PEAK_FLOPS / (t * 1e-3) if t else float("nan")
        lines.append(f"| {name} | {m} | {t:.4f} | {peer} | {tp:.4f} | {speed:.2f}x | {tg:.4f} | {frac_bw:.2f} | "
                     f"{frac_fl:.3f} | {target(name, m, speed, frac_bw, t, tg)} |")
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
