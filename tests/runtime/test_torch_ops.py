"""Kernels as torch ops: functional form, fake functions, torch.compile(fullgraph=True)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tilec
from tilec.errors import ArgumentError, TilecError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def rmsnorm_op():  # type: ignore[no-untyped-def]
    kernel = tilec.compile(EXAMPLES / "rmsnorm.tile").rmsnorm
    return kernel.as_torch_op("rmsnorm_test")


def _reference(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.double()
    return xf * torch.rsqrt((xf * xf).mean(dim=1, keepdim=True) + eps) * w.double()


def test_op_allocates_and_returns_outputs(rmsnorm_op) -> None:  # type: ignore[no-untyped-def]
    x, w = torch.randn(7, 40, dtype=torch.bfloat16), torch.randn(40, dtype=torch.bfloat16)
    y = torch.ops.tilec.rmsnorm_test(x, w, 1e-6)
    assert y.shape == (7, 40) and y.dtype == torch.bfloat16
    ref = _reference(x, w, 1e-6)
    assert (y.double() - ref).abs().max() / ref.abs().max() < 2 * 2.0**-7
    assert rmsnorm_op is torch.ops.tilec.rmsnorm_test


def test_fake_function_gives_shapes_without_running(rmsnorm_op) -> None:  # type: ignore[no-untyped-def]
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x, w = torch.empty(3, 16, dtype=torch.float16), torch.empty(16, dtype=torch.float16)
        y = torch.ops.tilec.rmsnorm_test(x, w, 1e-6)
    assert y.shape == (3, 16) and y.dtype == torch.float16


def test_works_under_torch_compile_fullgraph(rmsnorm_op) -> None:  # type: ignore[no-untyped-def]
    def model(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.ops.tilec.rmsnorm_test(x * 2.0, w, 1e-6) + 1.0

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x, w = torch.randn(5, 24, dtype=torch.float16), torch.randn(24, dtype=torch.float16)
    out = compiled(x, w)
    ref = _reference((x * 2.0), w, 1e-6) + 1.0
    assert (out.double() - ref).abs().max() / ref.abs().max() < 4 * 2.0**-10


def test_registration_checks() -> None:
    module = tilec.compile(
        "def widen(x: Tensor[M, f16], y: Tensor[M, Q, f16]):\n"
        "    for m in tiles(M):\n"
        "        y[m, :] = x[m][:, None]\n")
    with pytest.raises(ArgumentError, match="dimension Q, which no input tensor determines"):
        module.widen.as_torch_op()
    kernel = tilec.compile(EXAMPLES / "softmax.tile").softmax
    kernel.as_torch_op("softmax_test")
    assert kernel.as_torch_op("softmax_test") is torch.ops.tilec.softmax_test  # idempotent
    other = tilec.compile(EXAMPLES / "softmax.tile").softmax
    with pytest.raises(TilecError, match="already registered"):
        other.as_torch_op("softmax_test")
