"""tilec.ops.attention and tilec.ops.decode_attention in Triton's interpreter (tiny CPU tensors), against
float64 references: the quick check that the generated code runs under each Triton version (make compat)."""

from __future__ import annotations

import math

import pytest
import torch

import tilec.ops as ops
from tilec.kv import QuantKVCache


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal GQA attention in float64: q [B, H, M, D], k and v [B, HK, N, D]; the last query sees the last key."""
    q, k, v = q.double(), k.double(), v.double()
    M, N = q.shape[2], k.shape[2]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    hidden = torch.arange(N)[None, :] > torch.arange(M)[:, None] + (N - M)
    s = s.masked_fill(hidden, -math.inf)
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def decode_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """q [B, H, Q, D] over caches [B, Nmax, HK, D] holding lens[b] tokens each."""
    rows = [reference(q[b:b + 1], k[b:b + 1, :n].transpose(1, 2), v[b:b + 1, :n].transpose(1, 2))[0]
            for b, n in enumerate(lens.tolist())]
    return torch.cat(rows)


def test_causal_gqa_prefill_with_lse() -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 4, 24, 32, dtype=torch.float16)
    k, v = (torch.randn(2, 2, 40, 32, dtype=torch.float16) for _ in range(2))
    o, lse = ops.attention(q, k, v, causal=True, return_lse=True)
    ro, rl = reference(q, k, v)
    assert (o.double() - ro).abs().max() < 2e-3
    assert (lse.double() - rl).abs().max() < 1e-4


LENS = torch.tensor([70, 96], dtype=torch.int32)  # 70: a per-channel cache keeps 6 keys in its residual


def decode_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    q = torch.randn(2, 4, 1, 32, dtype=torch.float16)
    k, v = (torch.randn(2, 96, 2, 32, dtype=torch.float16) for _ in range(2))
    return q, k, v


def test_dense_decode_split_in_two() -> None:
    q, k, v = decode_inputs()
    o = ops.decode_attention(q, k, v, LENS, num_splits=2)
    assert (o.double() - decode_reference(q, k, v, LENS)).abs().max() < 2e-3


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")  # a row with no residual key: lse -inf
@pytest.mark.parametrize("key_mode", ["channel", "token"])
def test_int4_cache_decode(key_mode: str) -> None:
    q, k, v = decode_inputs()
    cache = QuantKVCache.from_dense(k, v, "int4", key_mode=key_mode, seqlens=LENS)
    kd, vd = cache.dequantized()
    o = ops.decode_attention(q, cache)
    assert (o.double() - decode_reference(q, kd, vd, LENS)).abs().max() < 2e-3
