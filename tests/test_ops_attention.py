"""tilec.ops.attention (prefill) and the torch op tilec::attention, against float64 references.

The reference is computed here, independently of the kernel: float64 scores from the same fp16/bf16 inputs,
GQA by ``repeat_interleave`` of the KV heads, explicit masks (FlashAttention's bottom-right alignment: query i
sits at position i + N - M), soft-cap, bias and ALiBi, then a softmax whose fully masked rows give 0 and a
log-sum-exp of -inf.

Tolerances.  Output: ``eps(dtype) * (max|ref| + max|v|)``.  The kernel computes scores, the online softmax and
the accumulator in float32 (errors ~2^-24 relative, negligible next to 16-bit rounding) but rounds P (the
probabilities, in [0, 1]) to the input dtype before ``P @ V``, as FlashAttention does: each p_j moves by at
most u * p_j (u = eps / 2, the unit roundoff), so the output moves by at most u * sum_j p_j |v_j| <= u * max|v|;
rounding the output once adds u * |o|.  Taking eps = 2u covers both with a factor 2 spare for the float32
parts.  Log-sum-exp (float32 throughout): it is 1-Lipschitz in the max-norm of the scores, whose float32
error is a few units of 2^-24 times scale * max_ij sum_d |q_id k_jd|, and the final log and sum add a few
units of 2^-24 * |lse|; the bound used is ``2^-21 * (1 + max|lse| + scale * max(|q| @ |k|^T))``, 8 float32
rounding units on each term (measured: at most ~0.2 of it; the output errors measure 0.06 to 0.16 of theirs,
the bound being the worst case of P's rounding, all p_j rounded the same way).
All assertions are written ``err <= tol`` so that NaN fails.
"""

from __future__ import annotations

import math

import pytest
import torch

import tilec
from tilec.errors import ArgumentError

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, window: int | None = None,
              bias: torch.Tensor | None = None, slopes: torch.Tensor | None = None, softcap: float | None = None,
              scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, lse) in float64."""
    B, H, M, D = q.shape
    HK, N = k.shape[1], k.shape[2]
    kk = k.double().repeat_interleave(H // HK, dim=1)
    vv = v.double().repeat_interleave(H // HK, dim=1)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    s = q.double() @ kk.transpose(-1, -2) * scale
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    if bias is not None:
        s = s + bias.double()
    pos = torch.arange(M, dtype=torch.float64)[:, None] + (N - M)  # query positions
    key = torch.arange(N, dtype=torch.float64)[None, :]
    if slopes is not None:
        sl = slopes.double().expand(B, H)[:, :, None, None]
        s = s - sl * (pos - key).abs()
    visible = torch.ones(M, N, dtype=torch.bool)
    if causal or window is not None:
        visible &= key <= pos
    if window is not None:
        visible &= key > pos - window
    s = s.masked_fill(~visible, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.where(lse[..., None] == -math.inf, 0.0, torch.exp(s - lse[..., None]))
    return p @ vv, lse


def rand(*shape: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen).to(dtype)


def check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
          **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Compare ``out`` (o, or (o, lse)) with the reference; returns the reference."""
    ref, ref_lse = reference(q, k, v, **kw)  # type: ignore[arg-type]
    o, lse = out if isinstance(out, tuple) else (out, None)
    assert o.shape == q.shape and o.dtype == q.dtype
    assert not torch.isnan(o).any() and torch.isfinite(o).all()
    tol = EPS[q.dtype] * (ref.abs().max().item() + v.double().abs().max().item())
    err = (o.double() - ref).abs().max().item()
    print(f"attention {tuple(q.shape)} {q.dtype}: err {err:.3g} tol {tol:.3g} ({err / tol:.2f})")
    assert err <= tol, (err, tol)
    if lse is not None:
        assert lse.shape == q.shape[:3] and lse.dtype == torch.float32
        assert not torch.isnan(lse).any()
        dead = ref_lse == -math.inf
        assert torch.equal(lse == -math.inf, dead)
        assert torch.equal(o[dead], torch.zeros_like(o[dead]))
        live = ref_lse[~dead]
        if live.numel():
            H, HK = q.shape[1], k.shape[1]
            kk = k.double().abs().repeat_interleave(H // HK, dim=1)
            scale = abs(kw["scale"]) if kw.get("scale") is not None else 1.0 / math.sqrt(q.shape[-1])  # type: ignore[arg-type]
            qk = (q.double().abs() @ kk.transpose(-1, -2)).max().item() * float(scale)  # type: ignore[arg-type]
            lse_tol = 2.0**-21 * (1.0 + live.abs().max().item() + qk)
            lse_err = (lse.double()[~dead] - live).abs().max().item()
            print(f"  lse err {lse_err:.3g} tol {lse_tol:.3g} ({lse_err / lse_tol:.2f})")
            assert lse_err <= lse_tol, (lse_err, lse_tol)
    return ref, ref_lse


# (dtype, B, H, HK, M, N, D, causal, window)
SHAPES = [
    (torch.float16, 2, 4, 4, 37, 45, 64, False, None),  # MHA, M < N
    (torch.bfloat16, 1, 4, 1, 37, 45, 64, True, None),  # MQA, causal, M < N
    (torch.float16, 1, 8, 1, 45, 37, 64, True, None),  # GQA 8, causal M > N: 8 rows see no key
    (torch.float16, 1, 8, 2, 20, 70, 128, True, None),  # GQA 4, head dim 128
    (torch.bfloat16, 1, 2, 2, 37, 45, 80, False, None),  # head dim 80 (padded)
    (torch.float16, 1, 4, 1, 33, 45, 96, False, 7),  # head dim 96, window alone
    (torch.bfloat16, 1, 2, 1, 17, 33, 256, True, None),  # head dim 256
    (torch.float16, 1, 2, 1, 45, 37, 40, False, None),  # M > N, non-causal, head dim 40
    (torch.bfloat16, 2, 4, 2, 45, 70, 24, True, 7),  # causal flag and window
    # long enough for passes/interior_tiles.py's three loops to all run (32 x 32 tiles on the CPU): a masked
    # head, interior tiles with no masks, and a masked tail (N = 150: the last key tile is partial)
    (torch.float16, 1, 2, 1, 150, 150, 64, False, 70),
    (torch.bfloat16, 1, 2, 2, 40, 150, 64, False, None),  # non-causal, ragged N: interior tiles + the last
]


@pytest.mark.parametrize("case", SHAPES, ids=lambda c: "-".join(str(x).replace("torch.", "") for x in c))
def test_shapes_dtypes_gqa_masks(case: tuple) -> None:  # type: ignore[type-arg]
    dtype, B, H, HK, M, N, D, causal, window = case
    gen = torch.Generator().manual_seed(B * 100000 + H * 10000 + M * 100 + N + D)
    q, k, v = rand(B, H, M, D, dtype=dtype, gen=gen), rand(B, HK, N, D, dtype=dtype, gen=gen), \
        rand(B, HK, N, D, dtype=dtype, gen=gen)
    out = tilec.ops.attention(q, k, v, causal=causal, window=window, return_lse=True)
    check(q, k, v, out, causal=causal, window=window)
    if causal and M > N:  # the first M - N rows see no key: exactly 0, lse -inf (documented)
        o, lse = out
        assert torch.equal(o[:, :, : M - N], torch.zeros_like(o[:, :, : M - N]))
        assert bool((lse[:, :, : M - N] == -math.inf).all()) and bool(torch.isfinite(lse[:, :, M - N:]).all())


def test_window_implies_the_causal_band() -> None:
    gen = torch.Generator().manual_seed(3)
    q, k, v = rand(1, 2, 37, 64, dtype=torch.float16, gen=gen), rand(1, 2, 45, 64, dtype=torch.float16, gen=gen), \
        rand(1, 2, 45, 64, dtype=torch.float16, gen=gen)
    alone = tilec.ops.attention(q, k, v, window=7)
    both = tilec.ops.attention(q, k, v, window=7, causal=True)
    assert torch.equal(alone, both)
    check(q, k, v, alone, window=7)


def test_bias_full_f32_and_broadcast_bf16() -> None:
    gen = torch.Generator().manual_seed(4)
    B, H, HK, M, N, D = 2, 4, 2, 37, 45, 64
    q, k, v = rand(B, H, M, D, dtype=torch.float16, gen=gen), rand(B, HK, N, D, dtype=torch.float16, gen=gen), \
        rand(B, HK, N, D, dtype=torch.float16, gen=gen)
    full = torch.randn(B, H, M, N, generator=gen)
    check(q, k, v, tilec.ops.attention(q, k, v, bias=full, return_lse=True), bias=full)
    small = torch.randn(M, N, generator=gen).to(torch.bfloat16)
    check(q, k, v, tilec.ops.attention(q, k, v, bias=small, causal=True, return_lse=True), bias=small, causal=True)


def test_bias_of_minus_inf_on_a_row() -> None:
    gen = torch.Generator().manual_seed(5)
    B, H, M, N, D = 1, 2, 37, 45, 64
    q, k, v = rand(B, H, M, D, dtype=torch.bfloat16, gen=gen), rand(B, H, N, D, dtype=torch.bfloat16, gen=gen), \
        rand(B, H, N, D, dtype=torch.bfloat16, gen=gen)
    bias = torch.randn(B, H, M, N, generator=gen)
    bias[0, 1, 5] = -math.inf
    bias[0, 0, 36] = -math.inf
    bias[0, 0, 20, :40] = -math.inf  # partly masked row: sees keys 40..44
    o, lse = tilec.ops.attention(q, k, v, bias=bias, return_lse=True)
    check(q, k, v, (o, lse), bias=bias)
    assert bool((o[0, 1, 5] == 0).all()) and bool((o[0, 0, 36] == 0).all())
    assert lse[0, 1, 5].item() == -math.inf and lse[0, 0, 36].item() == -math.inf
    assert math.isfinite(lse[0, 0, 20].item())


def test_alibi_slopes() -> None:
    gen = torch.Generator().manual_seed(6)
    B, H, HK, M, N, D = 2, 8, 2, 37, 45, 64
    q, k, v = rand(B, H, M, D, dtype=torch.float16, gen=gen), rand(B, HK, N, D, dtype=torch.float16, gen=gen), \
        rand(B, HK, N, D, dtype=torch.float16, gen=gen)
    per_head = torch.tensor([2.0 ** (-(i + 1)) for i in range(H)])
    check(q, k, v, tilec.ops.attention(q, k, v, alibi_slopes=per_head, return_lse=True), slopes=per_head)
    per_batch = torch.rand(B, H, generator=gen) * 0.5
    check(q, k, v, tilec.ops.attention(q, k, v, alibi_slopes=per_batch, causal=True, return_lse=True),
          slopes=per_batch, causal=True)


def test_softcap_and_scale() -> None:
    gen = torch.Generator().manual_seed(7)
    B, H, M, N, D = 1, 4, 37, 45, 64
    q, k, v = rand(B, H, M, D, dtype=torch.bfloat16, gen=gen), rand(B, 1, N, D, dtype=torch.bfloat16, gen=gen), \
        rand(B, 1, N, D, dtype=torch.bfloat16, gen=gen)
    # scale 0.5 makes the raw scores large (std ~4), so the cap of 5 bends them visibly
    check(q, k, v, tilec.ops.attention(q, k, v, softcap=5.0, scale=0.5, return_lse=True), softcap=5.0, scale=0.5)
    check(q, k, v, tilec.ops.attention(q, k, v, scale=0.3, causal=True, return_lse=True), scale=0.3, causal=True)
    # a scale that is not positive is not folded after the row max (passes/online_softmax.py): both forms
    for scale in (-0.3, 0.0):
        check(q, k, v, tilec.ops.attention(q, k, v, scale=scale, causal=True, return_lse=True), scale=scale,
              causal=True)
    capped = tilec.ops.attention(q, k, v, softcap=5.0, scale=0.5)
    assert not torch.equal(capped, tilec.ops.attention(q, k, v, scale=0.5))


def test_combined_features() -> None:
    gen = torch.Generator().manual_seed(8)
    B, H, HK, M, N, D = 1, 4, 1, 45, 37, 64
    q, k, v = rand(B, H, M, D, dtype=torch.float16, gen=gen), rand(B, HK, N, D, dtype=torch.float16, gen=gen), \
        rand(B, HK, N, D, dtype=torch.float16, gen=gen)
    bias = torch.randn(H, M, N, generator=gen).half()
    slopes = torch.rand(H, generator=gen) * 0.2
    kw = dict(causal=True, bias=bias, alibi_slopes=slopes, softcap=4.0, return_lse=True)
    check(q, k, v, tilec.ops.attention(q, k, v, **kw), causal=True, bias=bias, slopes=slopes,  # type: ignore[arg-type]
          softcap=4.0)
    check(q, k, v, tilec.ops.attention(q, k, v, window=7, bias=bias, return_lse=True), window=7, bias=bias)


def test_strided_views() -> None:
    gen = torch.Generator().manual_seed(9)
    B, H, HK, M, N, D = 2, 4, 2, 37, 45, 64
    x = rand(B, M, H, D, dtype=torch.float16, gen=gen)  # [B, M, H, D], the layout of many models
    q = x.transpose(1, 2)
    big = rand(2, B, HK, N + 9, D + 16, dtype=torch.float16, gen=gen)
    k, v = big[0, :, :, 4 : 4 + N, 8 : 8 + D], big[1, :, :, 5 : 5 + N, :D]
    assert not q.is_contiguous() and not k.is_contiguous() and not v.is_contiguous()
    out = tilec.ops.attention(q, k, v, causal=True, return_lse=True)
    check(q, k, v, out, causal=True)
    dense = tilec.ops.attention(q.contiguous(), k.contiguous(), v.contiguous(), causal=True)
    assert torch.equal(out[0], dense)


def test_argument_errors() -> None:
    q, k = torch.randn(1, 4, 8, 64).half(), torch.randn(1, 2, 9, 64).half()
    att = tilec.ops.attention
    bad: list[tuple[tuple, dict, str]] = [  # type: ignore[type-arg]
        ((q[0], k, k), {}, "4-D"),
        ((q, k[0], k), {}, "4-D"),
        ((q.float(), k.float(), k.float()), {}, "float16 or bfloat16"),
        ((q, k.bfloat16(), k.bfloat16()), {}, "one dtype"),
        ((q, k, k.bfloat16()), {}, "one dtype"),
        ((q[:, :3], k, k), {}, "multiple"),
        ((q, k, k[:, :, :5]), {}, "one shape"),
        ((torch.randn(1, 4, 8, 264).half(), torch.randn(1, 2, 9, 264).half(),
          torch.randn(1, 2, 9, 264).half()), {}, "head_dim"),
        ((q, k, k), {"bias": torch.randn(8, 7)}, "broadcast"),
        ((q, k, k), {"bias": torch.randn(3, 8, 9)}, "broadcast"),
        ((q, k, k), {"bias": torch.randn(8, 9).double()}, "float16, bfloat16 or float32"),
        ((q, k, k), {"bias": torch.ones(8, 9, dtype=torch.int32)}, "float tensor"),
        ((q, k, k), {"alibi_slopes": torch.ones(3)}, r"\[H\] or \[B, H\]"),
        ((q, k, k), {"alibi_slopes": torch.ones(2, 4)}, r"\[H\] or \[B, H\]"),
        ((q, k, k), {"alibi_slopes": torch.ones(4).half()}, "float32"),
        ((q, k, k), {"window": 0}, "window"),
        ((q, k, k), {"window": -3}, "window"),
        ((q, k, k), {"window": True}, "window"),
        ((q, k, k), {"window": 2.0}, "window"),
        ((q, k, k), {"softcap": 0.0}, "softcap"),
        ((q, k, k), {"softcap": -1.0}, "softcap"),
        ((q, k, k), {"softcap": math.nan}, "softcap"),
        ((q, k, k), {"softcap": math.inf}, "softcap"),
        ((q, k, k), {"scale": math.nan}, "scale"),
        ((q, k, k), {"scale": math.inf}, "scale"),
    ]
    for args, kw, match in bad:
        with pytest.raises(ArgumentError, match=match):
            att(*args, **kw)


def test_torch_compile_fullgraph_matches_eager() -> None:
    gen = torch.Generator().manual_seed(10)
    q, k, v = rand(1, 4, 37, 64, dtype=torch.float16, gen=gen), rand(1, 2, 45, 64, dtype=torch.float16, gen=gen), \
        rand(1, 2, 45, 64, dtype=torch.float16, gen=gen)
    slopes = torch.rand(4, generator=gen) * 0.1

    def f(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o, lse = tilec.ops.attention(q * 1.0, k, v, causal=True, alibi_slopes=slopes, return_lse=True)
        return o + 0, lse

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    o, lse = compiled(q, k, v)
    eo, else_ = f(q, k, v)
    assert torch.equal(o, eo) and torch.equal(lse, else_)
    check(q, k, v, (o, lse), causal=True, slopes=slopes)


def test_torch_op_and_fake() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert hasattr(torch.ops.tilec, "attention")
    with FakeTensorMode():
        q, k = torch.empty(2, 8, 37, 80, dtype=torch.bfloat16), torch.empty(2, 2, 45, 80, dtype=torch.bfloat16)
        o, lse = torch.ops.tilec.attention(q, k, k, None, None, True, 0, 0.0, 0.1, True)
        o2, lse2 = torch.ops.tilec.attention(q, k, k, None, None, False, 0, 0.0, 0.1, False)
    assert o.shape == (2, 8, 37, 80) and o.dtype == torch.bfloat16
    assert lse.shape == (2, 8, 37) and lse.dtype == torch.float32
    assert o2.shape == (2, 8, 37, 80) and lse2.shape == (0,)
    gen = torch.Generator().manual_seed(11)
    q, k, v = rand(1, 2, 17, 64, dtype=torch.float16, gen=gen), rand(1, 1, 19, 64, dtype=torch.float16, gen=gen), \
        rand(1, 1, 19, 64, dtype=torch.float16, gen=gen)
    torch.library.opcheck(torch.ops.tilec.attention.default, (q, k, v, None, None, True, 0, 0.0, 0.125, True),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
