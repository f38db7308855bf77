"""Each builtin and indexing form of the language, run in the interpreter, against torch in float64.

Sizes are odd (N = 45, M = 7) so every tile is partial.  Half-precision results
must be within one rounding (2 eps) of the float64 value of the same inputs;
f32 results within 8 ulp, or within the error of torch's own f32 implementation
on the same inputs where that is larger (GELU's negative tail cancels in
1 + erf(x/sqrt 2): torch's f32 GELU errs by 2e-4 relative there, tilec's by 7e-5).
Relative errors are taken against max(|ref|, 1e-3).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import tilec

N, M = 45, 7
DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
TOL = {"f16": 2 * 2.0**-10, "bf16": 2 * 2.0**-7, "f32": 8 * 2.0**-23}

UNARY = {
    "exp": torch.exp, "exp2": torch.exp2, "log": torch.log, "log2": torch.log2, "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt, "abs": torch.abs, "silu": F.silu, "gelu": F.gelu, "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}
POSITIVE = {"log", "log2", "sqrt", "rsqrt"}


def _unary_kernel(fn: str) -> tilec.Kernel:
    return tilec.compile(f"def k(x: Tensor[N, T], y: Tensor[N, T]):\n"
                         f"    for n in tiles(N):\n        y[n] = {fn}(x[n])\n").k


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref).abs() / ref.abs().clamp_min(1e-3)).max().item()


def _close(got: torch.Tensor, ref: torch.Tensor, dtype: str, bound: float | None = None) -> None:
    assert torch.isfinite(got.double()).all()
    tol = max(TOL[dtype], bound or 0.0)
    err = _rel_err(got, ref)
    assert err <= tol, f"relative error {err:.3e} > {tol:.1e}"


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("fn", list(UNARY))
def test_unary_math(fn: str, dtype: str) -> None:
    gen = torch.Generator().manual_seed(len(fn))
    x = torch.randn(N, generator=gen, dtype=torch.float64) * 3
    if fn in POSITIVE:
        x = x.abs() + 0.1
    x = torch.cat([x[:-4], torch.tensor([0.0, 1e-3, -1e-3, 0.04])]) if fn not in POSITIVE else x
    x = x.to(DTYPES[dtype])
    y = torch.full_like(x, float("nan"))
    _unary_kernel(fn)(x, y)
    ref = UNARY[fn](x.double())
    torch_f32 = _rel_err(UNARY[fn](x), ref) if dtype == "f32" else None
    _close(y, ref, dtype, torch_f32)


def test_maximum_minimum_propagate_nan_and_broadcast() -> None:
    k = tilec.compile("def k(a: Tensor[M, N, f32], b: Tensor[N, f32], hi: Tensor[M, N, f32], lo: Tensor[M, N, f32]):\n"
                      "    for m, n in tiles(M, N):\n"
                      "        hi[m, n] = maximum(a[m, n], b[n])\n"
                      "        lo[m, n] = minimum(a[m, n], 0.5)\n").k
    a, b = torch.randn(M, N), torch.randn(N)
    a[2, 3] = float("nan")
    hi, lo = torch.empty(M, N), torch.empty(M, N)
    k(a, b, hi, lo)
    assert torch.equal(hi.isnan(), torch.maximum(a, b).isnan())
    assert torch.allclose(hi.nan_to_num(), torch.maximum(a, b).nan_to_num())
    assert torch.allclose(lo.nan_to_num(), torch.minimum(a, torch.tensor(0.5)).nan_to_num())
    assert lo[2, 3].isnan()


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_reductions_over_ragged_axes(dtype: str) -> None:
    k = tilec.compile("def k(x: Tensor[M, N, T], s: Tensor[M, f32], hi: Tensor[M, T], lo: Tensor[M, T],\n"
                      "      mu: Tensor[M, f32]):\n"
                      "    for m in tiles(M):\n"
                      "        row = x[m, :]\n"
                      "        s[m] = sum(row, axis=1)\n"
                      "        hi[m] = max(row, axis=1)\n"
                      "        lo[m] = min(row, axis=1)\n"
                      "        mu[m] = mean(row, axis=-1)\n").k
    x = (torch.rand(M, N, dtype=torch.float64) + 0.5).to(DTYPES[dtype])  # all positive: max > the padding's 0
    x[1] = -x[1]  # all negative: min < 0 is wrong if padding leaks, max too
    s, mu = torch.empty(M), torch.empty(M)
    hi, lo = torch.empty(M, dtype=x.dtype), torch.empty(M, dtype=x.dtype)
    k(x, s, hi, lo, mu, schedule={"m": 4})
    xd = x.double()
    assert torch.equal(hi, x.amax(dim=1)) and torch.equal(lo, x.amin(dim=1))
    assert torch.allclose(s.double(), xd.sum(dim=1), rtol=1e-6)
    assert torch.allclose(mu.double(), xd.mean(dim=1), rtol=1e-6)


@pytest.mark.parametrize("target", ["f16", "bf16"])
def test_casts_round_to_nearest_even_like_torch(target: str) -> None:
    k = tilec.compile(f"def k(x: Tensor[N, f32], y: Tensor[N, {target}]):\n"
                      f"    for n in tiles(N):\n        y[n] = x[n].to({target})\n").k
    bits = torch.randint(-(2**31), 2**31 - 1, (4096,), dtype=torch.int64).to(torch.int32)
    x = torch.cat([bits.view(torch.float32), torch.tensor([1.00390625, 1.005, 65520.0, 3.4e38, -0.0, math.inf])])
    x = x[torch.isfinite(x) | x.isinf()]
    y = torch.empty(x.shape, dtype=DTYPES[target])
    k(x, y)
    ref = x.to(DTYPES[target])
    same = (y.view(torch.int16) == ref.view(torch.int16)) | (y.isnan() & ref.isnan())
    assert same.all(), f"{(~same).sum().item()} of {x.numel()} casts differ from torch"


def test_integer_ops_comparisons_where_and_positions() -> None:
    k = tilec.compile(
        "def k(a: Tensor[N, i32], b: Tensor[N, i32], q: Tensor[N, i32], r: Tensor[N, i32], bits: Tensor[N, i32],\n"
        "      pos: Tensor[N, i32], sel: Tensor[N, f32]):\n"
        "    for n in tiles(N):\n"
        "        x = a[n]\n"
        "        y = b[n]\n"
        "        q[n] = x // y\n"
        "        r[n] = x % y\n"
        "        bits[n] = ((x & 12) | (y << 2)) ^ (x >> 1)\n"
        "        pos[n] = index(n) * 2 + 1\n"
        "        sel[n] = where((x > y) & (x != 3), x / y, -1.0)\n").k
    a = torch.randint(0, 100, (N,), dtype=torch.int32)
    b = torch.randint(1, 9, (N,), dtype=torch.int32)
    q, r, bits, pos = (torch.empty(N, dtype=torch.int32) for _ in range(4))
    sel = torch.empty(N)
    k(a, b, q, r, bits, pos, sel)
    assert torch.equal(q, a // b) and torch.equal(r, a % b)  # non-negative operands: C and Python division agree
    assert torch.equal(bits, ((a & 12) | (b << 2)) ^ (a >> 1))
    assert torch.equal(pos, torch.arange(N, dtype=torch.int32) * 2 + 1)
    assert torch.allclose(sel, torch.where((a > b) & (a != 3), a / b, torch.tensor(-1.0)))


def test_offsets_points_transpose_full_and_broadcast() -> None:
    k = tilec.compile(
        "def k(x: Tensor[M, N, f32], d: Tensor[M, N, f32], first: Tensor[N, f32], t: Tensor[N, M, f32], s: i32):\n"
        "    for m, n in tiles(M, N):\n"
        "        d[m, n] = x[m, n + s] - x[m, n - 1] + full([m, 1], 0.25, f32)\n"
        "        first[n] = x[0, n]\n"
        "        t[n, m] = x[m, n].T\n").k
    x = torch.randn(M, N)
    d, first, t = torch.empty(M, N), torch.empty(N), torch.empty(N, M)
    k(x, d, first, t, 2, schedule={"m": 4, "n": 16})
    pad = torch.nn.functional.pad
    ahead = pad(x, (0, 2))[:, 2:]  # x[m, n + 2], 0 past the end
    behind = pad(x, (1, 0))[:, :-1]  # x[m, n - 1], 0 before the start
    assert torch.allclose(d, ahead - behind + 0.25)
    assert torch.equal(first, x[0]) and torch.equal(t, x.T)


def test_matmul_of_f32_tiles_is_true_f32() -> None:
    k = tilec.compile("def k(a: Tensor[M, K, f32], b: Tensor[K, N, f32], c: Tensor[M, N, f32]):\n"
                      "    for m, n in tiles(M, N):\n"
                      "        acc = zeros([m, n], f32)\n"
                      "        for k in tiles(K):\n"
                      "            acc += a[m, k] @ b[k, n]\n"
                      "        c[m, n] = acc\n").k
    a, b = torch.randn(33, 70), torch.randn(70, 18)
    c = torch.full((33, 18), float("nan"))
    k(a, b, c)
    ref = a.double() @ b.double()
    assert ((c.double() - ref).abs().max() / ref.abs().max()).item() < 1e-6
    assert 'input_precision="ieee"' in k.triton_code(M=33, N=18, K=70)


def test_int8_matmul_accumulates_in_int32() -> None:
    k = tilec.compile("def k(a: Tensor[M, K, i8], b: Tensor[K, N, i8], c: Tensor[M, N, i32]):\n"
                      "    for m, n in tiles(M, N):\n"
                      "        acc = zeros([m, n], i32)\n"
                      "        for k in tiles(K):\n"
                      "            acc += a[m, k] @ b[k, n]\n"
                      "        c[m, n] = acc\n").k
    a = torch.randint(-128, 128, (19, 100), dtype=torch.int8)
    b = torch.randint(-128, 128, (100, 21), dtype=torch.int8)
    c = torch.full((19, 21), -1, dtype=torch.int32)
    k(a, b, c)
    assert torch.equal(c, (a.int() @ b.int()))


ALL_DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "f64": torch.float64,
              "i8": torch.int8, "i16": torch.int16, "i32": torch.int32, "i64": torch.int64, "u8": torch.uint8,
              "bool": torch.bool}


@pytest.mark.parametrize("name", list(ALL_DTYPES))
def test_every_tensor_dtype_loads_computes_and_stores(name: str) -> None:
    body = "y[n] = x[n] | (x[n] & x[n])" if name == "bool" else "y[n] = x[n] * 3 + x[n]"
    k = tilec.compile(f"def k(x: Tensor[N, {name}], y: Tensor[N, {name}]):\n    for n in tiles(N):\n        {body}\n").k
    td = ALL_DTYPES[name]
    if name == "bool":
        x = torch.rand(N) > 0.5
    elif name == "u8":
        x = torch.randint(0, 60, (N,), dtype=td)
    else:
        x = (torch.randn(N) * 20).to(td)
    y = torch.zeros_like(x) if name in ("bool", "u8") else torch.full_like(x, -1)
    k(x, y)
    ref = (x | (x & x)) if name == "bool" else x * 3 + x
    assert torch.equal(y, ref)


@pytest.mark.parametrize("fp8", ["f8e4m3", "f8e5m2"])
def test_fp8_products_arithmetic_and_cast_limits(fp8: str) -> None:
    torch_fp8 = {"f8e4m3": torch.float8_e4m3fn, "f8e5m2": torch.float8_e5m2}[fp8]
    k = tilec.compile(f"def k(a: Tensor[M, K, {fp8}], b: Tensor[N, K, {fp8}], c: Tensor[M, N, f32],\n"
                      f"      d: Tensor[M, K, f32]):\n"
                      "    for m, n in tiles(M, N):\n"
                      "        acc = zeros([m, n], f32)\n"
                      "        for k in tiles(K):\n"
                      "            acc += a[m, k] @ b[n, k].T\n"
                      "            d[m, k] = a[m, k] * 2.0 + exp(a[m, k])\n"  # fp8 arithmetic happens in f32
                      "        c[m, n] = acc\n").k
    gen = torch.Generator().manual_seed(8)
    a = torch.randn(9, 70, generator=gen).to(torch_fp8)  # encoded on the host, exactly as torch rounds
    b = torch.randn(21, 70, generator=gen).to(torch_fp8)
    c, d = torch.full((9, 21), float("nan")), torch.full((9, 70), float("nan"))
    k(a, b, c, d, schedule={"m": 16, "n": 16, "k": 32})
    ref = a.double() @ b.double().T
    assert ((c.double() - ref).abs().max() / ref.abs().max()).item() < 1e-6
    expected = a.double() * 2 + torch.exp(a.double())
    assert ((d.double() - expected).abs() <= 4 * 2.0**-23 * expected.abs().clamp_min(1.0)).all()  # f32 rounding
    store = tilec.compile(f"def s(x: Tensor[N, f32], y: Tensor[N, {fp8}]):\n"
                          "    for n in tiles(N):\n        y[n] = x[n]\n").s
    with pytest.raises(tilec.BackendError, match="not exact in Triton's CPU interpreter") as info:
        store(torch.randn(8), torch.zeros(8).to(torch_fp8))
    assert info.value.span is not None and info.value.span.line == 3


@pytest.mark.parametrize("split", [1, 3])
def test_an_empty_reduction_still_runs_the_epilogue(split: int) -> None:
    """K = 0: the product is a zero sum, and the output is the epilogue of zeros (it used to be left
    unwritten, because an empty input tensor skipped the launch)."""
    from pathlib import Path

    g = tilec.compile(Path(__file__).resolve().parents[2] / "examples" / "gemm_epilogue.tile").gemm_bias_gelu_residual
    gen = torch.Generator().manual_seed(2)
    a, b = torch.zeros(3, 0, dtype=torch.float16), torch.zeros(0, 40, dtype=torch.float16)
    bias = torch.randn(40, generator=gen).half()
    res = torch.randn(3, 40, generator=gen).half()
    out = torch.full((3, 40), float("nan"), dtype=torch.float16)
    g(a, b, bias, res, out, schedule={"m": 16, "n": 16, "k": 16, "split_k": split})
    expected = torch.nn.functional.gelu(bias.double()).expand(3, 40) + res.double()
    assert ((out.double() - expected).abs().max() / expected.abs().max()).item() <= 2 * 2.0**-10
