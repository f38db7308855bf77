"""QuantKVCache: appending in uneven chunks equals building from the whole sequence; paged equals
contiguous; the key residual; capacity and page overflow."""

from __future__ import annotations

import pytest
import torch

import tilec
from tilec.errors import ArgumentError
from tilec.kv import KV_FORMATS, QuantKVCache
from tilec.kv.quant import Mode

B, HK, D, N = 3, 2, 32, 160
CHUNKS = [1, 3, 17, 5, 30, 1, 7, 16]  # 80 tokens
START = [0, 5, 33]  # lengths differ per sequence
G = 16  # key group; also the page size, so that paged and contiguous group the same tokens


def dense(dtype: torch.dtype = torch.float16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(B, N, HK, D, generator=g)
    k[..., 5] *= 10  # an outlier channel
    return k.to(dtype), torch.randn(B, N, HK, D, generator=g).to(dtype)


def permuted_table(max_blocks: int, seed: int = 1) -> tuple[torch.Tensor, int]:
    g = torch.Generator().manual_seed(seed)
    num_blocks = B * max_blocks + 3  # a few pages no sequence uses
    return torch.randperm(num_blocks, generator=g)[: B * max_blocks].reshape(B, max_blocks).int(), num_blocks


def build(fmt: str, key_mode: Mode, paged: bool, k: torch.Tensor, v: torch.Tensor, seqlens: list[int]) -> QuantKVCache:
    if paged:
        table, nb = permuted_table(N // G)
        return QuantKVCache.paged_from_dense(k, v, fmt, key_mode, G, num_blocks=nb, block_table=table, seqlens=seqlens)
    return QuantKVCache.from_dense(k, v, fmt, key_mode, group=G, capacity=N, seqlens=seqlens)


def by_appending(fmt: str, key_mode: Mode, paged: bool, k: torch.Tensor, v: torch.Tensor) -> QuantKVCache:
    cache = build(fmt, key_mode, paged, k, v, START)
    offset = 0
    for t in CHUNKS:
        rows = [torch.arange(s + offset, s + offset + t) for s in START]
        k_new = torch.stack([k[b, r] for b, r in enumerate(rows)])
        cache.append(k_new, torch.stack([v[b, r] for b, r in enumerate(rows)]))
        offset += t
    return cache


TENSORS = ["k_codes", "k_scale", "k_zero", "v_codes", "v_scale", "v_zero", "seqlens", "k_residual"]


def same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        a, b = a.view(torch.uint8), b.view(torch.uint8)
    return a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("key_mode", ["token", "channel"])
@pytest.mark.parametrize("fmt", KV_FORMATS)
def test_append_equals_from_dense(fmt: str, key_mode: Mode, paged: bool) -> None:
    k, v = dense()
    final = [s + sum(CHUNKS) for s in START]
    appended = by_appending(fmt, key_mode, paged, k, v)
    whole = build(fmt, key_mode, paged, k, v, final)
    # Bit-identical storage: per-token codes everywhere; per-channel keys in complete groups (incomplete ones
    # are unwritten zeros in both) and the residual.
    for name in TENSORS:
        assert same(getattr(appended, name), getattr(whole, name)), name
    assert appended.seqlens.tolist() == final
    ka, va = appended.dequantized()
    kw, vw = whole.dequantized()
    assert torch.equal(ka, kw) and torch.equal(va, vw)


@pytest.mark.parametrize("key_mode", ["token", "channel"])
@pytest.mark.parametrize("fmt", KV_FORMATS)
def test_paged_equals_contiguous(fmt: str, key_mode: Mode) -> None:
    k, v = dense(seed=2)
    lens = [N, 37, 64]
    kc, vc = build(fmt, key_mode, False, k, v, lens).dequantized()
    kp, vp = build(fmt, key_mode, True, k, v, lens).dequantized()
    assert kc.shape == kp.shape == (B, N, HK, D) and kc.dtype == torch.float32
    assert torch.equal(kc, kp) and torch.equal(vc, vp)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_residual_is_exact_and_past_seqlens_is_zero(dtype: torch.dtype) -> None:
    k, v = dense(dtype, seed=3)
    lens = [N, 37, 64]
    cache = QuantKVCache.from_dense(k, v, "int4", "channel", group=G, seqlens=lens)
    assert cache.capacity == N and cache.k_residual is not None and cache.k_residual.dtype == dtype
    assert cache.residual_len.tolist() == [0, 37 % G, 0]
    kd, vd = cache.dequantized()
    for b, n in enumerate(lens):
        r = n % G
        assert torch.equal(kd[b, n - r : n], k[b, n - r : n].float())  # residual keys: not quantised
        assert not torch.equal(kd[b, : n - r], k[b, : n - r].float())  # quantised keys are not exact
        assert bool((kd[b, n:] == 0).all()) and bool((vd[b, n:] == 0).all())
        # the residual's group is not in the codes yet
        assert bool((cache.k_codes[b, n - r : n] == 0).all())


def test_capacity_overflow_raises_and_writes_nothing() -> None:
    k, v = dense()
    cache = QuantKVCache.from_dense(k[:, :60], v[:, :60], "int8", "channel", group=G, capacity=64, seqlens=[60, 10, 0])
    before = cache.k_codes.clone(), cache.k_residual.clone() if cache.k_residual is not None else None
    with pytest.raises(ArgumentError, match="capacity"):
        cache.append(k[:, :5], v[:, :5])
    assert cache.seqlens.tolist() == [60, 10, 0]
    assert torch.equal(cache.k_codes, before[0])
    cache.append(k[:, :4], v[:, :4])  # exactly fills sequence 0
    assert cache.seqlens.tolist() == [64, 14, 4] and cache.residual_len.tolist() == [0, 14, 4]
    with pytest.raises(ArgumentError, match="capacity"):
        QuantKVCache.from_dense(k, v, "int8", "token", capacity=N - 1)


def test_pages_running_out_raise() -> None:
    k, v = dense()
    table = torch.tensor([[4, 2, -1], [0, 6, 7], [1, 3, 5]], dtype=torch.int32)  # -1: no page
    cache = QuantKVCache.paged_from_dense(k[:, :16], v[:, :16], "int4", "channel", G, num_blocks=8, block_table=table)
    cache.append(k[:, 16:32], v[:, 16:32])
    with pytest.raises(ArgumentError, match=r"sequence 0: positions 32\.\.32 run past its allocated pages"):
        cache.append(k[:, :1], v[:, :1])
    assert cache.seqlens.tolist() == [32, 32, 32]
    with pytest.raises(ArgumentError, match="capacity"):
        QuantKVCache.paged_from_dense(k, v, "int4", "token", G, block_table=table[:, :2])


def test_default_paged_table_is_deterministic() -> None:
    k, v = dense()
    cache = QuantKVCache.paged_from_dense(k, v, "fp8_e4m3", "token", 32, capacity=N + 32)
    assert cache.block_table is not None
    assert cache.block_table.tolist() == [[6 * b + i for i in range(6)] for b in range(B)]
    assert cache.capacity == N + 32 and cache.k_zero is None and cache.k_residual is None


def test_argument_errors() -> None:
    k, v = dense()
    with pytest.raises(ArgumentError, match="multiple of 4"):
        QuantKVCache.from_dense(k[..., :30], v[..., :30], "int2")
    with pytest.raises(ArgumentError, match="block_size"):
        QuantKVCache.paged_from_dense(k, v, "int8", "channel", 8)
    with pytest.raises(ArgumentError, match="block_size"):
        QuantKVCache.paged_from_dense(k, v, "int8", "channel", 512)
    with pytest.raises(ArgumentError, match="multiple of the key group"):
        QuantKVCache.from_dense(k, v, "int8", "channel", group=32, capacity=100)
    with pytest.raises(ArgumentError, match="key_mode"):
        QuantKVCache.from_dense(k, v, "int8", "tokens")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="seqlens"):
        QuantKVCache.from_dense(k, v, "int8", seqlens=[N + 1, 0, 0])
    cache = QuantKVCache.from_dense(k[:, :8], v[:, :8], "int8", "channel", group=G, capacity=64)
    with pytest.raises(ArgumentError, match="residual"):
        cache.append(k[:, :1].float(), v[:, :1])
    with pytest.raises(ArgumentError, match="shape"):
        cache.append(k[:2, :1], v[:2, :1])


def test_lazy_attribute() -> None:
    assert tilec.kv.QuantKVCache is QuantKVCache  # type: ignore[attr-defined]
