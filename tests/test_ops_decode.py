"""tilec.ops.decode_attention over dense, paged and quantised KV caches, against float64 references.

Reference (computed here): for sequence b of length L, the keys/values at positions 0..L-1, GQA by
``repeat_interleave``, query token i at position L - Q + i seeing keys up to its own position, float64
softmax.  Tolerances, as in tests/test_ops_attention.py: ``eps(dtype) * (max|ref| + max|v|)`` for a 16-bit
cache (P is rounded to the input dtype before P @ V: at most u * max|v|, u = eps / 2; the output is rounded
once: u * |o|).  The quantised cache's bound is argued at ``quant_tolerance``.  Assertions are ``err <= tol``
so NaN fails.
"""

from __future__ import annotations

import math

import pytest
import torch

import tilec
from tilec.errors import ArgumentError
from tilec.kv import QuantKVCache

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
SIGMAS = 4.0
FORMATS = ["int8", "int4", "int2", "fp8_e4m3", "fp8_e5m2"]


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: list[int], softcap: float | None = None,
              scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, lse) in float64 for q [B, H, Q, D] over a dense cache k, v [B, Nmax, HK, D] (any float dtype)."""
    B, H, Q, D = q.shape
    HK = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    outs, lses = [], []
    for b in range(B):
        L = lens[b]
        kk = k[b, :L].double().transpose(0, 1).repeat_interleave(H // HK, dim=0)  # [H, L, D]
        vv = v[b, :L].double().transpose(0, 1).repeat_interleave(H // HK, dim=0)
        s = q[b].double() @ kk.transpose(-1, -2) * scale  # [H, Q, L]
        if softcap is not None:
            s = softcap * torch.tanh(s / softcap)
        pos = torch.arange(Q)[:, None] + (L - Q)
        s = s.masked_fill(torch.arange(L)[None, :] > pos, -math.inf)
        lse = torch.logsumexp(s, dim=-1)
        outs.append(torch.softmax(s, dim=-1) @ vv)
        lses.append(lse)
    return torch.stack(outs), torch.stack(lses)


def rand(*shape: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen).to(dtype)


def max_err(o: torch.Tensor, ref: torch.Tensor) -> float:
    assert not torch.isnan(o).any() and torch.isfinite(o).all()
    return (o.double() - ref).abs().max().item()


def dense_tolerance(ref: torch.Tensor, v: torch.Tensor, lens: list[int], dtype: torch.dtype) -> float:
    vmax = max(v[b, :n].double().abs().max().item() for b, n in enumerate(lens))
    return EPS[dtype] * (ref.abs().max().item() + vmax)


def check_lse(lse: torch.Tensor, ref_lse: torch.Tensor, q: torch.Tensor, k: torch.Tensor, lens: list[int],
              scale: float, extra: float = 0.0) -> float:
    """float32 log-sum-exp: 8 float32 rounding units on |lse| and on the largest |scores| (see the prefill tests)."""
    assert lse.shape == ref_lse.shape and lse.dtype == torch.float32
    qk = max((q[b].double().abs().flatten(0, 1) @ k[b, :n].double().abs().amax(dim=1).T).max().item()
             for b, n in enumerate(lens)) * scale  # over-estimates (the largest |k| over the KV heads)
    tol = 2.0**-21 * (1.0 + ref_lse.abs().max().item() + qk) + extra
    err = (lse.double() - ref_lse).abs().max().item()
    assert err <= tol, (err, tol)
    return err / tol


def make_cache(B: int, N: int, HK: int, D: int, dtype: torch.dtype, gen: torch.Generator,
               lens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A dense cache whose positions past each length hold garbage, NaN included (as torch.empty may)."""
    k, v = rand(B, N, HK, D, dtype=dtype, gen=gen), rand(B, N, HK, D, dtype=dtype, gen=gen)
    for b, n in enumerate(lens):
        k[b, n:], v[b, n:] = math.nan, math.nan
    return k, v


# (dtype, B, H, HK, Q, Nmax, D, lens, num_splits)
DENSE = [
    (torch.float16, 3, 4, 4, 1, 70, 64, [70, 1, 41], None),
    (torch.float16, 3, 8, 2, 3, 150, 64, [150, 3, 97], 3),
    (torch.bfloat16, 2, 8, 1, 3, 70, 64, [3, 69], 1),
    (torch.bfloat16, 2, 8, 1, 1, 150, 128, [149, 33], 3),
    (torch.float16, 2, 4, 1, 3, 70, 80, [70, 45], None),
]


@pytest.mark.parametrize("case", DENSE, ids=lambda c: "-".join(str(x).replace("torch.", "") for x in c))
def test_dense_cache(case: tuple) -> None:  # type: ignore[type-arg]
    dtype, B, H, HK, Q, N, D, lens, splits = case
    gen = torch.Generator().manual_seed(N * 100 + H * 10 + Q)
    q = rand(B, H, Q, D, dtype=dtype, gen=gen)
    k, v = make_cache(B, N, HK, D, dtype, gen, lens)
    seqlens = torch.tensor(lens, dtype=torch.int32)
    o, lse = tilec.ops.decode_attention(q, k, v, seqlens, num_splits=splits, return_lse=True)
    assert o.shape == q.shape and o.dtype == dtype
    ref, ref_lse = reference(q, k, v, lens)
    err, tol = max_err(o, ref), dense_tolerance(ref, v, lens, dtype)
    print(f"dense {case}: err {err:.3g} tol {tol:.3g} ({err / tol:.2f})")
    assert err <= tol, (err, tol)
    check_lse(lse, ref_lse, q, k, lens, 1.0 / math.sqrt(D))
    assert torch.equal(tilec.ops.decode_attention(q, k, v, seqlens, num_splits=splits), o)


def test_dense_softcap_scale_and_split_counts() -> None:
    gen = torch.Generator().manual_seed(21)
    B, H, HK, Q, N, D, lens = 2, 4, 1, 3, 150, 64, [150, 61]
    q = rand(B, H, Q, D, dtype=torch.float16, gen=gen)
    k, v = make_cache(B, N, HK, D, torch.float16, gen, lens)
    seqlens = torch.tensor(lens, dtype=torch.int32)
    ref, ref_lse = reference(q, k, v, lens, softcap=3.0, scale=0.4)
    tol = dense_tolerance(ref, v, lens, torch.float16)
    for splits in (1, 3, 64, None):
        o, lse = tilec.ops.decode_attention(q, k, v, seqlens, softcap=3.0, scale=0.4, return_lse=True,
                                            num_splits=splits)
        err = max_err(o, ref)
        assert err <= tol, (splits, err, tol)
        check_lse(lse, ref_lse, q, k, lens, 0.4)


def paged(k: torch.Tensor, v: torch.Tensor, lens: list[int], bs: int,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dense cache laid out in shuffled pages of ``bs`` tokens; -1 past each sequence's pages; a spare page
    of garbage (NaN) that no table names."""
    B, N, HK, D = k.shape
    max_blocks = -(-N // bs)
    need = [-(-n // bs) for n in lens]
    total = sum(need) + 1
    perm = torch.randperm(total, generator=gen)
    k_pool = torch.full((total, bs, HK, D), math.nan, dtype=k.dtype)
    v_pool = torch.full((total, bs, HK, D), math.nan, dtype=k.dtype)
    table = torch.full((B, max_blocks), -1, dtype=torch.int32)
    i = 0
    for b, n in enumerate(lens):
        for j in range(need[b]):
            page = int(perm[i])
            i += 1
            table[b, j] = page
            rows = slice(j * bs, min(n, (j + 1) * bs))
            width = rows.stop - rows.start
            k_pool[page, :width], v_pool[page, :width] = k[b, rows], v[b, rows]
    return k_pool, v_pool, table


@pytest.mark.parametrize("bs", [16, 32, 64, 256])
def test_paged_cache_matches_dense(bs: int) -> None:
    gen = torch.Generator().manual_seed(bs)
    B, H, HK, Q, N, D = 3, 8, 2, 3, 150, 64
    lens = [150, 3, 77]
    q = rand(B, H, Q, D, dtype=torch.bfloat16, gen=gen)
    k, v = make_cache(B, N, HK, D, torch.bfloat16, gen, lens)
    k_pool, v_pool, table = paged(k, v, lens, bs, gen)
    seqlens = torch.tensor(lens, dtype=torch.int32)
    o, lse = tilec.ops.decode_attention(q, k_pool, v_pool, seqlens, block_table=table, return_lse=True,
                                        num_splits=3 if bs == 16 else None)
    ref, ref_lse = reference(q, k, v, lens)
    err, tol = max_err(o, ref), dense_tolerance(ref, v, lens, torch.bfloat16)
    print(f"paged {bs}: err {err:.3g} tol {tol:.3g} ({err / tol:.2f})")
    assert err <= tol, (err, tol)
    check_lse(lse, ref_lse, q, k, lens, 1.0 / math.sqrt(D))
    dense = tilec.ops.decode_attention(q, k, v, seqlens, num_splits=3 if bs == 16 else None)
    assert max_err(o, dense.double()) <= tol


# ------------------------------------------------------------------------------------------ quantised


def quant_tolerance(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: list[int], dtype: torch.dtype,
                    sigmas: float = SIGMAS) -> tuple[float, float]:
    """(output, lse) bounds against float64 attention on ``cache.dequantized()`` (k, v here).

    With u = eps / 2 the kernel differs from that reference by
    - the output's rounding to the input dtype: at most u * max|o| (a worst case, often nearly attained);
    - P rounded to the input dtype before P @ V: p_j (1 + e_j), |e_j| <= u: sum_j p_j e_j v_jd;
    - dequantised V rounded to the input dtype: sum_j p_j e'_jd v_jd;
    - dequantised K rounded to the input dtype: a score moves by delta_j = scale * sum_c q_c e''_jc k_jc, which
      moves the output by sum_j p_j delta_j (v_jd - o_d) and the log-sum-exp by sum_j p_j delta_j.
    The e are roundings of unrelated values, so the last three are sums of independent terms of variance
    (u^2 / 3) * (coefficient)^2: sigma^2 = u^2 / 3 * sum_j p_j^2 [2 v_jd^2 + scale^2 sum_c q_c^2 k_jc^2 (v_jd - o_d)^2]
    per output element (the worst cases, e.g. sum_c |q_c k_jc| for the scores, are ~sqrt(D) larger and never
    reached).  Bounds: ``u * max|o| + SIGMAS * max sigma`` for the output, and for the log-sum-exp the float32
    bound of the 16-bit tests plus ``SIGMAS * max sigma_lse``.  SIGMAS = 4: the terms are bounded (a uniform
    rounding is within sqrt(3) of its sigma), so the sums are sub-Gaussian, and the largest of the ~3000 errors
    a case checks sits near 3.5 sigma; where one key dominates a row the error is one rounding, under sqrt(3)
    sigma.  Measured (pytest -s): 0.15 to 0.45 of the output bound, 0.13 to 0.46 of the lse bound."""
    B, H, Q, D = q.shape
    HK = k.shape[2]
    u, scale = EPS[dtype] / 2, 1.0 / math.sqrt(D)
    omax = sig_o = sig_l = 0.0
    for b in range(B):
        L = lens[b]
        kk = k[b, :L].double().transpose(0, 1).repeat_interleave(H // HK, dim=0)  # [H, L, D]
        vv = v[b, :L].double().transpose(0, 1).repeat_interleave(H // HK, dim=0)
        qq = q[b].double()
        s = (qq @ kk.transpose(-1, -2) * scale).masked_fill(
            torch.arange(L)[None, :] > torch.arange(Q)[:, None] + (L - Q), -math.inf)
        p = torch.softmax(s, dim=-1)  # [H, Q, L]
        o = p @ vv  # [H, Q, D]
        delta2 = scale**2 * (qq**2 @ (kk**2).transpose(-1, -2))  # [H, Q, L]: the score roundings' variance / (u^2/3)
        p2 = p**2
        var_o = 2 * p2 @ vv**2 + (p2 * delta2)[..., None].mul((vv[:, None] - o[:, :, None]) ** 2).sum(2)
        var_l = (p2 * delta2).sum(-1)
        omax = max(omax, o.abs().max().item())
        sig_o = max(sig_o, math.sqrt(u * u / 3 * var_o.max().item()))
        sig_l = max(sig_l, math.sqrt(u * u / 3 * var_l.max().item()))
    return u * omax + sigmas * sig_o, sigmas * sig_l


def sqnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    noise = (out.double() - ref).pow(2).sum().item()
    return 10 * math.log10(ref.pow(2).sum().item() / noise) if noise > 0 else math.inf


# Output SQNR (dB) of decode attention over the quantised cache against attention over the original float16
# cache (Gaussian q, k, v; see docs/kv_cache.md).  Lower bounds ~1.5 dB under the measurement (in comments:
# measured token, channel; the minimum over the contiguous and paged caches and both decode steps).
SQNR_BOUNDS = {
    "int8": (40.8, 42.4),  # 42.28, 43.97
    "int4": (16.2, 17.4),  # 17.70, 18.89
    "int2": (1.45, 2.7),  # 2.96, 4.22
    "fp8_e4m3": (27.2, 28.1),  # 28.70, 29.64
    "fp8_e5m2": (21.0, 21.7),  # 22.46, 23.19
}


@pytest.mark.parametrize("key_mode", ["token", "channel"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantised_cache(fmt: str, key_mode: str) -> None:
    """Contiguous (group 16) and paged (block 16) caches with KIVI residuals (lengths % 16 != 0), decode with
    Q = 1, then append 3 tokens and decode those (Q = 3)."""
    gen = torch.Generator().manual_seed(FORMATS.index(fmt) * 2 + (key_mode == "channel"))
    dtype = torch.float16
    B, H, HK, N, D = 2, 8, 2, 150, 64
    lens = [117, 70]  # residuals of 5 and 6 keys with G = 16
    k, v = rand(B, N, HK, D, dtype=dtype, gen=gen), rand(B, N, HK, D, dtype=dtype, gen=gen)
    seqlens = torch.tensor(lens, dtype=torch.int32)
    caches = [QuantKVCache.from_dense(k, v, fmt, key_mode, group=16, seqlens=seqlens),
              QuantKVCache.paged_from_dense(k, v, fmt, key_mode, block_size=16, seqlens=seqlens)]
    worst = math.inf
    for cache in caches:
        for step, Q in enumerate((1, 3)):
            now = [n + 3 * step for n in lens]
            if step:  # append the 3 query tokens' keys and values (positions lens[b] .. lens[b] + 2)
                cache.append(torch.stack([k[b, n : n + 3] for b, n in enumerate(lens)]),
                             torch.stack([v[b, n : n + 3] for b, n in enumerate(lens)]))
                assert cache.seqlens.tolist() == now
            q = rand(B, H, Q, D, dtype=dtype, gen=gen)
            o, lse = tilec.ops.decode_attention(q, cache, return_lse=True)
            assert o.shape == q.shape and o.dtype == dtype
            kd, vd = cache.dequantized()
            ref, ref_lse = reference(q, kd, vd, now)
            err = max_err(o, ref)
            tol, lse_extra = quant_tolerance(q, kd, vd, now, dtype)
            # the original data, laid out as the cache holds it (the appended tokens are the originals' next ones)
            exact, _ = reference(q, k, v, now)
            db = sqnr_db(o, exact)
            worst = min(worst, db)
            print(f"quant {fmt} {key_mode} paged={cache.paged} Q={Q}: err {err:.3g} tol {tol:.3g} "
                  f"({err / tol:.2f}) sqnr {db:.2f} dB")
            assert err <= tol, (err, tol)
            ratio = check_lse(lse, ref_lse, q, kd, now, 1.0 / math.sqrt(D), lse_extra)
            print(f"  lse {ratio:.2f} of its bound")
    bound = SQNR_BOUNDS[fmt][key_mode == "channel"]
    assert worst >= bound, (worst, bound)


# ------------------------------------------------------------------------------------------ errors, compile


def test_argument_errors() -> None:
    q = torch.randn(2, 4, 3, 64).half()
    k = torch.randn(2, 40, 2, 64).half()
    lens = torch.tensor([40, 17], dtype=torch.int32)
    dec = tilec.ops.decode_attention
    cache = QuantKVCache.from_dense(k, k, "int8", "token", seqlens=lens)
    pool = torch.randn(6, 16, 2, 64).half()
    table = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    bad: list[tuple[tuple, dict, str]] = [  # type: ignore[type-arg]
        ((q, cache, k), {}, "carries"),
        ((q, cache), {"cache_seqlens": lens}, "carries"),
        ((q, k, k, lens.long()), {}, "int32"),
        ((q, k, k, lens[:1]), {}, r"\[B = 2\]"),
        ((q, k, k, None), {}, r"\[B = 2\]"),
        ((q, k, k, torch.tensor([40, 2], dtype=torch.int32)), {}, "must lie in"),
        ((q, k, k, torch.tensor([41, 17], dtype=torch.int32)), {}, "must lie in"),
        ((q, pool, pool, lens), {"block_table": table.long()}, "block_table must be int32"),
        ((q, pool, pool, lens), {"block_table": table[:1]}, "block_table must be int32"),
        ((q, torch.randn(6, 8, 2, 64).half(), torch.randn(6, 8, 2, 64).half(), lens),
         {"block_table": table}, "16..256"),
        ((q, torch.randn(2, 512, 2, 64).half(), torch.randn(2, 512, 2, 64).half(), lens),
         {"block_table": table[:, :1]}, "16..256"),
        ((q, pool, pool, torch.tensor([49, 17], dtype=torch.int32)), {"block_table": table}, "must lie in"),
        ((q, k, k, lens), {"num_splits": 0}, "num_splits"),
        ((q, k, k, lens), {"num_splits": 65}, "num_splits"),
        ((q, k, k, lens), {"num_splits": True}, "num_splits"),
        ((q, k, k.float(), lens), {}, "cache must be"),
        ((q.float(), k, k, lens), {}, "float16 or bfloat16"),
        ((q[0], k, k, lens), {}, "4-D"),
        ((q[:, :3], k, k, lens), {}, "multiple"),
        ((q, k[:1], k[:1], lens), {}, "dense cache"),
        ((q, k, k, lens), {"softcap": 0.0}, "softcap"),
        ((q, k, k, lens), {"scale": math.nan}, "scale"),
        ((q[:, :, :, :32], cache), {}, "head_dim"),
    ]
    for args, kw, match in bad:
        with pytest.raises(ArgumentError, match=match):
            dec(*args, **kw)


def test_torch_compile_fullgraph_dense() -> None:
    gen = torch.Generator().manual_seed(31)
    B, H, HK, Q, N, D, lens = 2, 8, 2, 3, 70, 64, [70, 29]
    q = rand(B, H, Q, D, dtype=torch.float16, gen=gen)
    k, v = make_cache(B, N, HK, D, torch.float16, gen, lens)
    seqlens = torch.tensor(lens, dtype=torch.int32)

    def f(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o, lse = tilec.ops.decode_attention(q * 1.0, k, v, lens, return_lse=True, num_splits=3)
        return o + 0, lse

    o, lse = torch.compile(f, fullgraph=True, backend="aot_eager")(q, k, v, seqlens)
    eo, el = f(q, k, v, seqlens)
    assert torch.equal(o, eo) and torch.equal(lse, el)
    ref, _ = reference(q, k, v, lens)
    err, tol = max_err(o, ref), dense_tolerance(ref, v, lens, torch.float16)
    assert err <= tol, (err, tol)


def test_merge_attention_of_two_key_sets_is_attention_over_both() -> None:
    gen = torch.Generator().manual_seed(21)
    q = torch.randn(2, 3, 5, 16, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(2, 3, 29, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    s = q @ k.transpose(-1, -2) / 4
    s[0, 0, 1, :11] = -math.inf  # row sees nothing of the first set
    s[1, 2, 3, 11:] = -math.inf  # ... nothing of the second
    s[0, 1, 4, :] = -math.inf  # ... nothing at all

    def part(cols: slice) -> tuple[torch.Tensor, torch.Tensor]:
        lse = torch.logsumexp(s[..., cols], -1)
        return torch.softmax(s[..., cols], -1).nan_to_num(0.0) @ v[..., cols, :], lse

    o, lse = tilec.ops.merge_attention(*part(slice(0, 11)), *part(slice(11, 29)))
    ref_o, ref_lse = part(slice(0, 29))
    assert not o.isnan().any() and not lse.isnan().any()
    assert torch.allclose(o, ref_o, atol=1e-12, rtol=0) and torch.equal(o[0, 1, 4], torch.zeros(16, dtype=o.dtype))
    assert torch.allclose(lse, ref_lse, atol=1e-12, rtol=0) and lse[0, 1, 4] == -math.inf


# ------------------------------------------------------------------------------------------ on a GPU


def quantised_decode_case(fmt: str, key_mode: str, device: str, B: int, H: int, HK: int, N: int, D: int,
                          lens: list[int], group: int, block: int, seed: int) -> list[float]:
    """Contiguous and paged caches on ``device`` against float64 attention on their dequantised values (the
    tolerance of test_quantised_cache); returns each error's fraction of its bound."""
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.bfloat16
    k, v = rand(B, N, HK, D, dtype=dtype, gen=gen).to(device), rand(B, N, HK, D, dtype=dtype, gen=gen).to(device)
    seqlens = torch.tensor(lens, dtype=torch.int32, device=device)
    q = rand(B, H, 1, D, dtype=dtype, gen=gen).to(device)
    ratios = []
    for cache in (QuantKVCache.from_dense(k, v, fmt, key_mode, group=group, seqlens=seqlens),
                  QuantKVCache.paged_from_dense(k, v, fmt, key_mode, block_size=block, seqlens=seqlens)):
        o, lse = tilec.ops.decode_attention(q, cache, return_lse=True)
        assert o.device == q.device and o.shape == q.shape and o.dtype == dtype
        kd, vd = (t.cpu() for t in cache.dequantized())
        ref, ref_lse = reference(q.cpu(), kd, vd, lens)
        tol, lse_extra = quant_tolerance(q.cpu(), kd, vd, lens, dtype)
        err = max_err(o.cpu(), ref)
        assert err <= tol, (fmt, key_mode, cache.paged, err, tol)
        ratios.append(err / tol)
        ratios.append(check_lse(lse.cpu(), ref_lse, q.cpu(), kd, lens, 1.0 / math.sqrt(D), lse_extra))
    return ratios


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("key_mode", ["token", "channel"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantised_cache_on_gpu(fmt: str, key_mode: str) -> None:
    """What only a GPU runs: the compiled lowering of the cache's codes (u8 fields unpacked by inline PTX four at a
    time, codegen/lowering._byte_field_asm), the default split-KV schedule and its merge, at a production head
    dimension and thousands of keys."""
    ratios = quantised_decode_case(fmt, key_mode, "cuda", B=3, H=32, HK=8, N=4100, D=128, lens=[4100, 1, 2077],
                                   group=32, block=64, seed=FORMATS.index(fmt))
    print(f"{fmt} {key_mode}: error / bound {max(ratios):.2f}")
