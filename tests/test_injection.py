"""Nothing from a spec reaches generated Python without validation: injection attempts are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

import tilec
from tilec.codegen.names import Namer, safe_identifier


def _attempts(marker: Path) -> list[str]:
    payload = f"__import__('os').system('touch {marker}')"
    return [
        f"def k(x: Tensor[M, f16]):\n    for m in tiles(M):\n        y = {payload}\n",
        f"def {payload}(x: Tensor[M, f16]):\n    for m in tiles(M):\n        pass\n",
        f"def k(x: Tensor[M, f16], y: Tensor[M, f16]):\n    for m in tiles(M):\n        y[m] = x[m].to({payload})\n",
        "def k(x: Tensor[M, f16], y: Tensor[M, f16]):\n    for m in tiles(M):\n        __builtins__ = x[m]\n",
        "def k(x: Tensor[M, f16], y: Tensor[M, f16]):\n    for m in tiles(M):\n        y[m] = x[m].__class__\n",
        "def k(x: Tensor[M, __import__], y: Tensor[M, f16]):\n    for m in tiles(M):\n        pass\n",
        "def k(x: Tensor[M, f16], y: Tensor[M, f16]):\n    for m in tiles(M):\n        y[m] = x[m] * exec\n",
        "def k(x: Tensor[M, f16], tl: Tensor[M, f16]):\n    for m in tiles(M):\n        tl[m] = x[m]\n",
    ]


def test_injection_attempts_are_rejected_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for text in _attempts(marker):
        with pytest.raises(tilec.TilecError):
            module = tilec.compile(text)
            for kernel in module.kernels.values():  # even if it checked, generating code must not run it
                kernel.triton_code(M=16)
        assert not marker.exists(), text


def test_codegen_refuses_unsafe_identifiers() -> None:
    with pytest.raises(ValueError):
        safe_identifier("a; import os")
    with pytest.raises(ValueError):
        safe_identifier("__class__")
    namer = Namer({"offs_m"})
    assert namer.fresh("offs_m") == "offs_m_1"


def test_user_names_that_look_like_generated_ones_do_not_collide() -> None:
    module = tilec.compile(
        "def k(x: Tensor[M, f32], y: Tensor[M, f32]):\n"
        "    for m in tiles(M):\n"
        "        offs_m = x[m] * 2.0\n"
        "        pid = offs_m + 1.0\n"
        "        y[m] = pid\n")
    code = module.k.triton_code(M=50)
    assert "offs_m_1 = tile_m * BLOCK_M" in code and "pid_1 = tl.program_id" in code
    import torch

    x, y = torch.randn(50), torch.full((50,), float("nan"))
    module.k(x, y)
    assert torch.allclose(y, x * 2 + 1)
