"""The decorator form and the .tile form of one kernel produce the same Triton."""

from __future__ import annotations

import re
from pathlib import Path

import tilec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@tilec.kernel
def gemm_bias_gelu_residual(a: Tensor[M, K, T], b: Tensor[K, N, T], bias: Tensor[N, T],  # noqa: F821
                            res: Tensor[M, N, T], out: Tensor[M, N, T]):  # noqa: F821
    for m, n in tiles(M, N):  # noqa: F821
        acc = zeros([m, n], f32)  # noqa: F821
        for k in tiles(K):  # noqa: F821
            acc += a[m, k] @ b[k, n]
        y = gelu(acc + bias[n]) + res[m, n]  # noqa: F821
        out[m, n] = y.to(T)  # noqa: F821


def _code_only(text: str) -> list[str]:
    """Generated lines without comments (they name the spec's file and line, which differ)."""
    lines = [re.sub(r"\s*#.*$", "", line) for line in text.splitlines()]
    return [line for line in lines if line.strip()]


def test_decorator_and_tile_file_generate_identical_triton() -> None:
    from_file = tilec.compile(EXAMPLES / "gemm_epilogue.tile").gemm_bias_gelu_residual
    for dtype in ("f16", "bf16"):
        a = gemm_bias_gelu_residual.triton_code(M=37, N=65, K=70, T=dtype)
        b = from_file.triton_code(M=37, N=65, K=70, T=dtype)
        assert _code_only(a) == _code_only(b)


def test_decorator_comments_point_at_this_file() -> None:
    code = gemm_bias_gelu_residual.triton_code(M=37, N=65, K=70, T="f16")
    lines = Path(__file__).read_text().splitlines()
    line = lines.index("            acc += a[m, k] @ b[k, n]") + 1
    assert f"# test_decorator_form.py:{line}  acc += a[m, k] @ b[k, n]" in code
