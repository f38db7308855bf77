"""The GPU benchmark scripts run their correctness half anywhere (--dry-run: tiny sizes, interpreter)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch

import tilec

ROOT = Path(__file__).resolve().parents[1]


def test_linear_benchmark_dry_run_checks_every_kernel() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "linear.py"), "--dry-run"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    kernels = {row.split("|")[1].strip() for row in rows}
    assert kernels == {"W4A16 g128", "W4A8 g128 two-level", "W8A8 int8", "FP8 e4m3 x e4m3"}
    assert len(rows) == 12 and "dry run" in proc.stdout


# ---------------------------------------------------------------- benchmarks/attention.py

ATTENTION = ROOT / "benchmarks" / "attention.py"


def attention_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_attention", ATTENTION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_attention", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_attention(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ATTENTION), *args], capture_output=True, text=True, timeout=600,
                          check=False)


def test_attention_flops_counts_visible_pairs_exactly() -> None:
    bench = attention_bench()
    # non-causal: every pair
    assert bench.attention_flops(4, 32, 4096, 4096, 128, causal=False) == 4 * 4 * 32 * 128 * 4096 * 4096
    # causal, M = N: the diagonal counts, 1 + 2 + ... + N
    assert bench.visible_pairs(4, 4, causal=True) == 10
    assert bench.attention_flops(4, 32, 4096, 4096, 128, causal=True) == 4 * 4 * 32 * 128 * (4096 * 4097 // 2)
    assert bench.attention_flops(4, 32, 4096, 4096, 128, causal=True) == 549890031616
    # causal, M < N, aligned to the end: queries see N - M + 1, ..., N keys
    assert bench.visible_pairs(3, 5, causal=True) == 3 + 4 + 5
    assert bench.visible_pairs(1, 32768, causal=True) == 32768  # a decode step sees the whole context
    # causal, M > N: the first M - N queries see nothing
    assert bench.visible_pairs(5, 3, causal=True) == 0 + 0 + 1 + 2 + 3
    for m in range(1, 12):
        for n in range(1, 12):
            pairs = sum(min(n, max(0, i + n - m + 1)) for i in range(m))
            assert bench.visible_pairs(m, n, causal=True) == pairs, (m, n)
            assert bench.attention_flops(2, 3, m, n, 8, causal=True) == 4 * 2 * 3 * 8 * pairs


def test_decode_bytes_is_the_cache_plus_q_and_o() -> None:
    bench = attention_bench()
    cache = bench.dense_cache_bytes(32, 32768, 8, 128)
    assert cache == 4 * 2**30  # k + v, bf16: 4 GiB
    assert bench.decode_bytes(32, 32, 1, 128, cache) == 4 * 2**30 + 2 * 32 * 32 * 128 * 2
    assert bench.decode_bytes(1, 32, 1, 128, 1000) == 1000 + 16384
    assert bench.decode_bytes(1, 2, 3, 4, 0, elem_bytes=4) == 2 * 2 * 3 * 4 * 4
    held = SimpleNamespace(codes=torch.zeros(10, dtype=torch.uint8), scales=torch.zeros(3, dtype=torch.float16),
                           group=32)
    assert bench.quant_cache_nbytes(held) == 10 + 6
    assert bench.quant_cache_nbytes(SimpleNamespace(nbytes=123, codes=torch.zeros(10))) == 123


def test_attention_benchmark_lists_its_rows_without_running() -> None:
    proc = run_attention("--list")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ">= 1.0x SDPA flash" in proc.stdout and ">= 3x tilec bf16 cache" in proc.stdout
    assert "B=4 H=32 HK=8 S=4096 D=128" in proc.stdout and "context=32768" in proc.stdout
    proc = run_attention("--list", "--dry-run", "--rows", "decode")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "prefill" not in proc.stdout and "context=70" in proc.stdout


def test_attention_benchmark_dry_run() -> None:
    """The full dry run once tilec.ops.attention exists; until then, --list and the clear refusal."""
    if not hasattr(tilec.ops, "attention"):
        proc = run_attention("--list")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = run_attention("--dry-run")
        assert proc.returncode != 0 and "tilec.ops.attention is not available in this checkout" in proc.stderr
        return
    proc = run_attention("--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert sum(row.startswith("| prefill") or row.startswith("| decode") for row in rows) == 2  # two headers
    assert len(rows) == 2 + 5 + 2 and "dry run" in proc.stdout


class _StandInCache:
    """A QuantKVCache stand-in: per-token asymmetric int4 codes, enough to drive the benchmark's plumbing."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.codes, self.scales, self.zeros = [], [], []
        for x in (k, v):
            lo, hi = x.float().amin(-1, keepdim=True), x.float().amax(-1, keepdim=True)
            scale = (hi - lo).clamp_min(1e-6) / 15
            self.codes.append(((x.float() - lo) / scale).round().clamp(0, 15).to(torch.uint8))
            self.scales.append(scale.half())
            self.zeros.append(lo.half())
        self.seqlens = torch.full((k.shape[0],), k.shape[1], dtype=torch.int32)

    @classmethod
    def from_dense(cls, k: torch.Tensor, v: torch.Tensor, fmt: str, key_mode: str, group: int) -> _StandInCache:
        assert (fmt, key_mode, group) == ("int4", "channel", 32)
        return cls(k, v)

    def dequantized(self) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = (c.float() * s.float() + z.float() for c, s, z in zip(self.codes, self.scales, self.zeros))
        return k.bfloat16(), v.bfloat16()


def _stand_in_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                        **_: object) -> torch.Tensor:
    g = q.shape[1] // k.shape[1]
    k, v = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)
    return torch.nn.functional.scaled_dot_product_attention(q.float(), k, v, is_causal=causal).to(q.dtype)


def _stand_in_decode(q: torch.Tensor, k_cache: object, v_cache: torch.Tensor | None,
                     cache_seqlens: torch.Tensor | None, **_: object) -> torch.Tensor:
    if isinstance(k_cache, _StandInCache):
        assert v_cache is None and cache_seqlens is None
        k_cache, v_cache = k_cache.dequantized()
    assert isinstance(k_cache, torch.Tensor) and v_cache is not None
    return _stand_in_attention(q, k_cache.transpose(1, 2), v_cache.transpose(1, 2))


def test_attention_benchmark_dry_run_with_stand_in_ops(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The benchmark's own plumbing (shapes, checks, tables) with reference stand-ins for the ops."""
    bench = attention_bench()
    ops = {"attention": _stand_in_attention, "decode_attention": _stand_in_decode, "QuantKVCache": _StandInCache}
    monkeypatch.setattr(bench, "load_ops", lambda families: ops)
    bench.main(["--dry-run"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 2 + 5 + 2, out
    assert "SDPA flash" in out and "(not timed)" in out and "dry run" in out

    def wrong(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
        return _stand_in_attention(q, k, v, causal=not causal)  # the other mask: never timed

    monkeypatch.setattr(bench, "load_ops", lambda families: {**ops, "attention": wrong})
    try:
        bench.main(["--dry-run", "--rows", "prefill"])
    except SystemExit as exc:
        assert "not timing a wrong kernel" in str(exc)
    else:
        raise AssertionError("a wrong attention passed the check")
