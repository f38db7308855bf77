"""The GPU benchmark scripts run their correctness half anywhere (--dry-run: tiny sizes, interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_linear_benchmark_dry_run_checks_every_kernel() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "linear.py"), "--dry-run"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    kernels = {row.split("|")[1].strip() for row in rows}
    assert kernels == {"W4A16 g128", "W4A8 g128 two-level", "W8A8 int8", "FP8 e4m3 x e4m3"}
    assert len(rows) == 12 and "dry run" in proc.stdout
