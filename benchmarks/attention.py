"""Attention on a GPU, prefill and decode, side by side with torch's SDPA, in one run (design.md section 7).

    python benchmarks/attention.py                      # on a CUDA machine: the sizes below
    python benchmarks/attention.py --dry-run            # anywhere: tiny sizes through the interpreter, no timing
    python benchmarks/attention.py --list               # the rows and their targets; runs nothing
    python benchmarks/attention.py --rows decode --results

Every kernel is checked against a float64 reference on the same inputs before it is timed (a wrong kernel
is never timed); timings are the median of 5 triton.testing.do_bench runs (warm-up, L2 flushed), ratios are
to peers measured in the same run, and bandwidth fractions are over a device-to-device copy measured in the
same run.  With --results a dated table goes to the end of benchmarks/RESULTS.md.

Prefill rows (bf16, q [B, H, S, D], k/v [B, HK, S, D]): tilec.ops.attention vs torch SDPA with the flash
backend forced (sdpa_kernel(SDPBackend.FLASH_ATTENTION), enable_gqa=True for GQA).  FLOPs are
4 * B * H * D * (visible (i, j) pairs) (attention_flops), reported as TFLOP/s and as a fraction of the dense
bf16 peak (790 TFLOP/s on an H200).  Check: the kernel runs the whole problem; its output for batch 0, heads
0 and H - 1 is compared with a float64 attention over the same bf16 inputs (relative max error <= 2e-2),
and the whole output must be finite.

Decode rows (Mq = 1, H = 32, HK = 8, D = 128, context 32768): tilec.ops.decode_attention over a dense bf16
cache [B, N, HK, D], over an int4 cache (tilec.kv.QuantKVCache.from_dense(k, v, "int4", key_mode="channel",
group=32)), and torch SDPA (bf16, enable_gqa=True) on q [B, H, 1, D] with k/v transposed once, outside the
timing, to [B, HK, N, D].  Bytes (decode_bytes) = cache bytes read (for int4: codes + scales + zeros, the
nbytes of the QuantKVCache's tensors) + q + o.  Checks: bf16 cache and SDPA against float64 attention over
the bf16 cache; int4 against float64 attention over cache.dequantized().
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

PEAK_FLOPS = 790e12  # dense bf16, H200 (design.md section 7)
ROOT = Path(__file__).resolve().parent
TOL = 2e-2  # relative max error of a bf16 attention output against the float64 reference


# ---------------------------------------------------------------- pure accounting (unit-tested)


def visible_pairs(m: int, n: int, causal: bool) -> int:
    """(query i, key j) pairs a query attends to; causal is aligned to the end (j <= i + n - m), as in decode.

    Equals sum over i < m of min(n, max(0, i + n - m + 1)), in closed form.
    """
    if not causal:
        return m * n
    if m <= n:  # every query sees at least n - m + 1 keys: n - m + 1, ..., n
        return m * (2 * n - m + 1) // 2
    return n * (n + 1) // 2  # the first m - n queries see nothing


def attention_flops(b: int, h: int, m: int, n: int, d: int, causal: bool) -> int:
    """FLOPs of attention: 2 * D for QK^T plus 2 * D for PV per visible pair, per batch and head."""
    return 4 * b * h * d * visible_pairs(m, n, causal)


def dense_cache_bytes(b: int, n: int, hk: int, d: int, elem_bytes: int = 2) -> int:
    """Bytes of a dense key + value cache [B, N, HK, D] read in full."""
    return 2 * b * n * hk * d * elem_bytes


def decode_bytes(b: int, h: int, mq: int, d: int, cache_bytes: int, elem_bytes: int = 2) -> int:
    """Bytes a decode step moves: the cache read, q [B, H, Mq, D] read and o [B, H, Mq, D] written."""
    return cache_bytes + 2 * b * h * mq * d * elem_bytes


def quant_cache_nbytes(cache: Any) -> int:
    """Bytes of a QuantKVCache: its own ``nbytes`` when it has one, else the sum over its tensor attributes
    (codes, scales, zeros, seqlens, ...)."""
    nbytes = getattr(cache, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    tensors = [v for v in vars(cache).values() if isinstance(v, torch.Tensor)]
    if not tensors:
        raise SystemExit("cannot count the bytes of this QuantKVCache: no nbytes and no tensor attributes")
    return sum(t.nbytes for t in tensors)


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class Prefill:
    name: str
    b: int
    h: int
    hk: int
    s: int
    d: int
    causal: bool
    goal: float | None = None  # design.md: tilec / SDPA flash speed-up at least this


@dataclass(frozen=True)
class Decode:
    b: int
    h: int
    hk: int
    d: int
    context: int
    mq: int = 1


PREFILL = (
    Prefill("causal", 4, 32, 32, 4096, 128, True, goal=1.0),
    Prefill("non-causal", 4, 32, 32, 4096, 128, False),
    Prefill("causal GQA", 4, 32, 8, 4096, 128, True),
    Prefill("causal D=64", 4, 16, 16, 4096, 64, True),
    Prefill("causal D=256", 4, 16, 16, 4096, 256, True),
)
DECODE = tuple(Decode(b, 32, 8, 128, 32768) for b in (1, 8, 32))  # dense bf16 cache at B = 32: 4 GiB
DECODE_INT4_GOAL = 3.0  # int4 cache / bf16 cache speed-up
DECODE_BW_GOAL = 0.8  # int4 cache: fraction of copy bandwidth
NOT_TIMED = " (not timed)"


def dry_rows() -> tuple[tuple[Prefill, ...], tuple[Decode, ...]]:
    """The same rows at interpreter sizes: B = 1, H = 2, HK = 1 (GQA) or 2, S = 40; context 70."""
    prefill = tuple(Prefill(r.name, 1, 2, 1 if r.hk < r.h else 2, 40, r.d, r.causal, r.goal) for r in PREFILL)
    decode = tuple(Decode(b, 2, 1, 64, 70) for b in (1, 2))
    return prefill, decode


def prefill_target(row: Prefill, speed: float, timed: bool) -> str:
    if row.goal is None:
        return "-"
    goal = f">= {row.goal:.1f}x SDPA flash"
    if not timed:
        return goal + NOT_TIMED
    return f"{goal}: {'met' if speed >= row.goal else 'MISSED'}"


def decode_target(speed_vs_bf16: float, frac_bw: float, timed: bool) -> str:
    goals = [(f">= {DECODE_INT4_GOAL:.0f}x tilec bf16 cache", speed_vs_bf16 >= DECODE_INT4_GOAL),
             (f">= {DECODE_BW_GOAL:.0%} copy bandwidth", frac_bw >= DECODE_BW_GOAL)]
    if not timed:
        return "; ".join(g for g, _ in goals) + NOT_TIMED
    return "; ".join(f"{g}: {'met' if ok else 'MISSED'}" for g, ok in goals)


def list_rows(prefill: tuple[Prefill, ...], decode: tuple[Decode, ...], families: set[str]) -> str:
    lines = []
    if "prefill" in families:
        lines.append("prefill: tilec.ops.attention vs torch SDPA (flash backend forced), bf16")
        for r in prefill:
            flops = attention_flops(r.b, r.h, r.s, r.s, r.d, r.causal)
            goal = prefill_target(r, 0.0, False).removesuffix(NOT_TIMED)
            lines.append(f"  {r.name}: B={r.b} H={r.h} HK={r.hk} S={r.s} D={r.d} causal={r.causal} "
                         f"GFLOP={flops / 1e9:.1f} target: {goal}")
    if "decode" in families:
        lines.append("decode: tilec.ops.decode_attention bf16 cache vs int4 cache (channel keys, group 32) "
                     "vs torch SDPA bf16")
        for r in decode:
            cache = dense_cache_bytes(r.b, r.context, r.hk, r.d)
            goal = decode_target(0.0, 0.0, False).removesuffix(NOT_TIMED)
            lines.append(f"  B={r.b} H={r.h} HK={r.hk} D={r.d} context={r.context} Mq={r.mq} "
                         f"bf16 cache MB={cache / 1e6:.1f} target (int4): {goal}")
    return "\n".join(lines)


# ---------------------------------------------------------------- measuring


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


def check(out: torch.Tensor, ref: torch.Tensor, what: str, tol: float = TOL) -> None:
    err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    if not err <= tol:  # NaN fails too
        raise SystemExit(f"{what}: relative error {err:.3e} > {tol:.1e}; not timing a wrong kernel")


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """float64 attention; q [B, H, M, D], k/v [B, HK, N, D], head h reads kv head h // (H // HK);
    causal aligned to the end (key j visible to query i when j <= i + N - M)."""
    b, h, m, d = q.shape
    hk, n = k.shape[1], k.shape[2]
    q64 = q.double().reshape(b, hk, h // hk, m, d)
    s = torch.einsum("bkgmd,bknd->bkgmn", q64, k.double()) * d**-0.5
    if causal:
        i = torch.arange(m, device=q.device)[:, None]
        j = torch.arange(n, device=q.device)[None, :]
        s = s.masked_fill(j > i + n - m, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bkgmn,bknd->bkgmd", p, v.double()).reshape(b, h, m, d)


def sdpa_peer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
              ref: Callable[[torch.Tensor], None]) -> tuple[Callable[[], torch.Tensor] | None, str]:
    """torch SDPA with the flash backend forced (GQA through enable_gqa), checked by ``ref``; when the flash
    backend refuses, SDPA's own dispatch, then nothing.  Returns the call and what it is."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gqa = k.shape[1] != q.shape[1]
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def flash() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return sdpa(q, k, v, is_causal=causal, enable_gqa=gqa)

    def default() -> torch.Tensor:
        return sdpa(q, k, v, is_causal=causal, enable_gqa=gqa)

    for fn, label in ((flash, "SDPA flash"), (default, "SDPA default dispatch")):
        try:
            ref(fn())
            return fn, label
        except (RuntimeError, SystemExit) as exc:
            print(f"{label} {tuple(q.shape)} x {tuple(k.shape)}: {str(exc).splitlines()[0]}")
    return None, "SDPA (failed)"


def load_ops(families: set[str]) -> dict[str, Any]:
    """The tilec entry points the rows call; a clear exit where this checkout lacks one."""
    import tilec

    ops = tilec.ops
    found: dict[str, Any] = {}
    if "prefill" in families:
        if not hasattr(ops, "attention"):
            raise SystemExit("tilec.ops.attention is not available in this checkout")
        found["attention"] = ops.attention
    if "decode" in families:
        if not hasattr(ops, "decode_attention"):
            raise SystemExit("tilec.ops.decode_attention is not available in this checkout")
        try:
            from tilec.kv import QuantKVCache  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit("tilec.kv.QuantKVCache is not available in this checkout") from None
        found["decode_attention"] = ops.decode_attention
        found["QuantKVCache"] = QuantKVCache
    return found


PrefillResult = tuple[Prefill, float, str, float]  # row, tilec ms, peer label, peer ms


def run_prefill(rows: tuple[Prefill, ...], attention: Callable[..., torch.Tensor], device: str, dry: bool,
                gen: torch.Generator) -> list[PrefillResult]:
    return [prefill_row(r, attention, device, dry, gen) for r in rows]  # one row's tensors at a time


def prefill_row(r: Prefill, attention: Callable[..., torch.Tensor], device: str, dry: bool,
                gen: torch.Generator) -> PrefillResult:
    shape = f"B={r.b} H={r.h} HK={r.hk} S={r.s} D={r.d} causal={r.causal}"
    q = torch.randn(r.b, r.h, r.s, r.d, generator=gen, device=device, dtype=torch.bfloat16)
    k = torch.randn(r.b, r.hk, r.s, r.d, generator=gen, device=device, dtype=torch.bfloat16)
    v = torch.randn(r.b, r.hk, r.s, r.d, generator=gen, device=device, dtype=torch.bfloat16)
    heads = [0, r.h - 1]  # the check's slice: batch 0, first and last head (with their kv heads)
    kv_heads = [h // (r.h // r.hk) for h in heads]
    ref = reference(q[:1, heads], k[:1, kv_heads], v[:1, kv_heads], r.causal)

    def check_out(o: torch.Tensor, what: str, heads: list[int] = heads, ref: torch.Tensor = ref) -> None:
        if tuple(o.shape) != tuple(q.shape) or not bool(torch.isfinite(o).all()):
            raise SystemExit(f"{what}: shape {tuple(o.shape)} or non-finite values; not timing it")
        check(o[:1, heads], ref, what)

    fn = lambda q=q, k=k, v=v, c=r.causal: attention(q, k, v, causal=c)
    check_out(fn(), f"tilec.ops.attention {r.name} {shape}")
    t = bench(fn, dry)
    peer, label = sdpa_peer(q, k, v, r.causal, lambda o, s=shape: check_out(o, f"SDPA {s}"))
    t_peer = bench(peer, dry) if peer is not None else float("nan")
    return r, t, label, t_peer


DecodeResult = tuple[Decode, float, float, str, float, int, int]  # row, bf16 ms, int4 ms, peer, peer ms, bytes


def run_decode(rows: tuple[Decode, ...], decode_attention: Callable[..., torch.Tensor], quant_kv_cache: Any,
               device: str, dry: bool, gen: torch.Generator) -> list[DecodeResult]:
    return [decode_row(r, decode_attention, quant_kv_cache, device, dry, gen) for r in rows]


def decode_row(r: Decode, decode_attention: Callable[..., torch.Tensor], quant_kv_cache: Any, device: str,
               dry: bool, gen: torch.Generator) -> DecodeResult:
    shape = f"B={r.b} H={r.h} HK={r.hk} D={r.d} context={r.context}"
    q = torch.randn(r.b, r.h, r.mq, r.d, generator=gen, device=device, dtype=torch.bfloat16)
    k_cache = torch.randn(r.b, r.context, r.hk, r.d, generator=gen, device=device, dtype=torch.bfloat16)
    v_cache = torch.randn(r.b, r.context, r.hk, r.d, generator=gen, device=device, dtype=torch.bfloat16)
    seqlens = torch.full((r.b,), r.context, dtype=torch.int32, device=device)

    def reference_by_batch(k: torch.Tensor, v: torch.Tensor, q: torch.Tensor = q) -> torch.Tensor:
        # one batch row at a time: float64 k/v of the whole batch would be 16 GiB at B = 32
        return torch.cat([reference(q[i:i + 1], k[i:i + 1].transpose(1, 2), v[i:i + 1].transpose(1, 2),
                                    causal=False) for i in range(r.b)])

    ref = reference_by_batch(k_cache, v_cache)

    fn_bf16 = lambda q=q, k=k_cache, v=v_cache, s=seqlens: decode_attention(q, k, v, s)
    check(fn_bf16(), ref, f"tilec.ops.decode_attention bf16 cache {shape}")
    t_bf16 = bench(fn_bf16, dry)

    cache = quant_kv_cache.from_dense(k_cache, v_cache, "int4", key_mode="channel", group=32)
    k_deq, v_deq = cache.dequantized()  # [B, capacity, ...]: capacity rounds the context up to whole groups
    ref_int4 = reference_by_batch(k_deq[:, :r.context], v_deq[:, :r.context])
    del k_deq, v_deq
    fn_int4 = lambda q=q, c=cache: decode_attention(q, c, None, None)
    check(fn_int4(), ref_int4, f"tilec.ops.decode_attention int4 cache {shape}")
    t_int4 = bench(fn_int4, dry)
    del ref_int4

    k_t = k_cache.transpose(1, 2).contiguous()  # [B, HK, N, D], outside the timing
    v_t = v_cache.transpose(1, 2).contiguous()
    peer, label = sdpa_peer(q, k_t, v_t, False, lambda o, ref=ref, s=shape: check(o, ref, f"SDPA {s}"))
    t_peer = bench(peer, dry) if peer is not None else float("nan")

    bytes_bf16 = decode_bytes(r.b, r.h, r.mq, r.d, dense_cache_bytes(r.b, r.context, r.hk, r.d))
    bytes_int4 = decode_bytes(r.b, r.h, r.mq, r.d, quant_cache_nbytes(cache))
    return r, t_bf16, t_int4, label, t_peer, bytes_bf16, bytes_int4


# ---------------------------------------------------------------- tables


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def prefill_table(results: list[PrefillResult]) -> str:
    lines = ["| prefill | B | H | HK | S | D | tilec ms | peer | peer ms | tilec / peer speed-up | tilec TFLOP/s | "
             "fraction of bf16 peak | design.md target |", "| --- " * 13 + "|"]
    for r, t, label, tp in results:
        speed = ratio(tp, t)
        tflops = ratio(attention_flops(r.b, r.h, r.s, r.s, r.d, r.causal), t * 1e-3) / 1e12
        lines.append(f"| {r.name} | {r.b} | {r.h} | {r.hk} | {r.s} | {r.d} | {t:.4f} | {label} | {tp:.4f} | "
                     f"{speed:.2f}x | {tflops:.1f} | {tflops * 1e12 / PEAK_FLOPS:.3f} | "
                     f"{prefill_target(r, speed, t > 0)} |")
    return "\n".join(lines)


def decode_table(results: list[DecodeResult], bandwidth: float) -> str:
    lines = ["| decode | B | H | HK | D | context | bf16 cache ms | int4 cache ms | peer | peer ms | "
             "int4 / bf16 cache speed-up | int4 / peer speed-up | bf16 cache fraction of copy bandwidth | "
             "int4 fraction of copy bandwidth | design.md target (int4) |", "| --- " * 15 + "|"]
    for r, t_bf16, t_int4, label, tp, bytes_bf16, bytes_int4 in results:
        speed = ratio(t_bf16, t_int4)
        frac_bf16 = ratio(bytes_bf16 / bandwidth, t_bf16 * 1e-3)
        frac_int4 = ratio(bytes_int4 / bandwidth, t_int4 * 1e-3)
        lines.append(f"| Mq={r.mq} | {r.b} | {r.h} | {r.hk} | {r.d} | {r.context} | {t_bf16:.4f} | {t_int4:.4f} | "
                     f"{label} | {tp:.4f} | {speed:.2f}x | {ratio(tp, t_int4):.2f}x | {frac_bf16:.2f} | "
                     f"{frac_int4:.2f} | {decode_target(speed, frac_int4, t_int4 > 0)} |")
    return "\n".join(lines)


def environment(dry: bool) -> str:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    gpu = "cpu (dry run)" if dry else torch.cuda.get_device_name()
    return (f"{gpu}; torch {torch.__version__}, triton {triton_version}, python {platform.python_version()}; "
            f"{datetime.date.today().isoformat()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU interpreter, no timing")
    parser.add_argument("--list", action="store_true", help="print the rows and their targets; run nothing")
    parser.add_argument("--results", action="store_true", help="append a dated table to benchmarks/RESULTS.md")
    parser.add_argument("--rows", default="prefill,decode", help="comma-separated: prefill, decode")
    args = parser.parse_args(argv)
    families = {f.strip() for f in args.rows.split(",") if f.strip()}
    if not families or families - {"prefill", "decode"}:
        parser.error(f"--rows takes prefill and/or decode, not {args.rows!r}")
    if args.list:  # the full sizes unless --dry-run is asked for, GPU or not
        print(list_rows(*(dry_rows() if args.dry_run else (PREFILL, DECODE)), families))
        return
    dry = args.dry_run or not torch.cuda.is_available()
    prefill_rows, decode_rows = dry_rows() if dry else (PREFILL, DECODE)
    ops = load_ops(families)
    device = "cpu" if dry else "cuda"
    env = environment(dry)
    print(env)
    gen = torch.Generator(device=device).manual_seed(0)
    tables = []
    bandwidth = 1.0
    if "prefill" in families:
        tables.append(prefill_table(run_prefill(prefill_rows, ops["attention"], device, dry, gen)))
        print(tables[-1])
    if "decode" in families:
        bandwidth = copy_bandwidth(device, dry)
        results = run_decode(decode_rows, ops["decode_attention"], ops["QuantKVCache"], device, dry, gen)
        tables.append(decode_table(results, bandwidth))
        print(tables[-1])
    if args.results and not dry:
        stamp = datetime.date.today().isoformat()
        command = "python benchmarks/attention.py --results" + ("" if args.rows == "prefill,decode"
                                                                 else f" --rows {args.rows}")
        bw = f"; measured copy bandwidth {bandwidth / 1e12:.2f} TB/s" if "decode" in families else ""
        body = "\n\n".join(tables)
        note = (f"\n## {stamp}: attention ({', '.join(sorted(families))})\n\n{env}{bw}. Command: `{command}`. "
                f"Median of 5 do_bench runs; prefill checked on batch 0, heads 0 and H - 1 against float64.\n\n"
                f"{body}\n")
        with open(ROOT / "RESULTS.md", "a") as f:
            f.write(note)
    print(f"device: {device}{' (dry run: correctness only, no timing)' if dry else ''}")


if __name__ == "__main__":
    main()
