"""Decode attention: ``tilec.ops.decode_attention`` over a dense, paged or quantised KV cache.

A few query tokens per sequence (``q`` [B, H, Q, D]) attend to a long cache.  The kernel's spec comes from
tilec/ops_decode_spec.py; its key loop is split over the sequence (split-KV, the schedule's ``split_k``:
each split writes partial accumulators, running maxima and sums, and the last split to arrive merges them
by log-sum-exp, in one launch).  Every KV head's group of query heads shares each key tile it loads.

Caches:

- dense: ``k_cache``, ``v_cache`` [B, Nmax, HK, D] (16-bit), ``cache_seqlens`` [B] int32;
- paged: a pool [num_blocks, block_size, HK, D] and ``block_table`` [B, max_blocks] int32;
- quantised: a :class:`tilec.kv.QuantKVCache` as ``k_cache`` (``v_cache`` and ``cache_seqlens`` None): its
  codes are dequantised in registers, never written out at 16 bits.  With per-channel keys the newest,
  incomplete key group lives unquantised in the cache's residual; the same loop reads those keys from it
  (one launch for the whole cache).

Query token i of sequence b sits at position ``cache_seqlens[b] - Q + i`` (the queries are the cache's last
Q tokens, already appended) and sees the keys at positions up to its own.  A row that sees no key gives 0
(and a log-sum-exp of -inf).  A cache's rows at and past a sequence's length may hold anything (memory from
torch.empty, NaN included): the keys there are masked and the values read as 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tilec.api import compile as compile_spec
from tilec.errors import ArgumentError
from tilec.ops_decode_spec import DecodeVariant
from tilec.runtime.kernel import Kernel

_KERNELS: dict[DecodeVariant, Kernel] = {}


def kernel_for(variant: DecodeVariant) -> Kernel:
    if variant not in _KERNELS:
        _KERNELS[variant] = compile_spec(variant.spec(), name="<tilec.ops.decode_attention>").decode_attention
    return _KERNELS[variant]


def decode_schedule(rows: int, device: torch.device, num_splits: int | None) -> dict[str, int]:
    """16 query rows (a GQA group's heads x tokens) by 64 keys; splits from the default rule (enough programs
    for the GPU's SMs) unless given.  The interpreter runs programs in turn: no split unless asked."""
    m = max(16, 1 << max(rows - 1, 0).bit_length())
    out = {"m": min(m, 64), "n": 64 if device.type == "cuda" else 32}
    if num_splits is not None:
        out["split_k"] = num_splits
    return out


@torch.library.custom_op("tilec::decode_attention", mutates_args=())
def decode_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_scale: torch.Tensor | None,
              k_zero: torch.Tensor | None, v_scale: torch.Tensor | None, v_zero: torch.Tensor | None,
              k_res: torch.Tensor | None, coded: torch.Tensor | None,
              lens: torch.Tensor, first: torch.Tensor, block_table: torch.Tensor | None, fmt: str, key_mode: str,
              group: int, capacity: int, scale: float, softcap: float, return_lse: bool,
              num_splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(o [B, H, Q, D], lse [B, H, Q] f32 or empty).  ``lens``: keys per sequence; ``first``: query 0's
    position; ``k_res`` [B, G, HK, D] and ``coded`` [B]: per-channel keys at positions >= coded[b] come from
    the residual; ``fmt`` "dense" or a tilec.kv format; ``capacity``: a paged cache's positions (max_blocks *
    block_size); ``num_splits`` 0: the default rule."""
    B, H, Qn, D = q.shape
    HK = k.shape[2]
    variant = DecodeVariant(fmt, block_table is not None, key_mode, softcap > 0, return_lse, k_res is not None)
    P = variant.planes
    rows = (H // HK) * Qn
    qv = q.reshape(B, HK, rows, P, D // P)
    o = torch.empty(B, HK, rows, P, D // P, dtype=q.dtype, device=q.device)
    lse = torch.empty((B, HK, rows) if return_lse else (0,), dtype=torch.float32, device=q.device)
    args: list[Any] = [capacity, block_table] if block_table is not None else []
    args += [qv, k, v]
    if fmt != "dense":
        if key_mode == "channel":
            assert k_scale is not None
            lead = k_scale.shape[:-1]
            args.append(k_scale.view(*lead, P, D // P))
            args += [k_zero.view(*lead, P, D // P)] if k_zero is not None else []
        else:
            args += [k_scale] + ([k_zero] if k_zero is not None else [])
        args += [v_scale] + ([v_zero] if v_zero is not None else [])
    if k_res is not None:
        args += [k_res.reshape(*k_res.shape[:3], P, D // P), coded]
    args += [lens, first, o] + ([lse] if return_lse else []) + [scale, Qn]
    args += [group] if fmt != "dense" and key_mode == "channel" and block_table is None else []
    args += [softcap] if softcap > 0 else []
    kernel_for(variant)(*args, schedule=decode_schedule(rows, q.device, num_splits or None))
    return o.view(B, H, Qn, D), lse.view(B, H, Qn) if return_lse else lse


@decode_op.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_scale: torch.Tensor | None, k_zero: torch.Tensor | None,
      v_scale: torch.Tensor | None, v_zero: torch.Tensor | None, k_res: torch.Tensor | None,
      coded: torch.Tensor | None, lens: torch.Tensor, first: torch.Tensor,
      block_table: torch.Tensor | None, fmt: str, key_mode: str, group: int, capacity: int, scale: float,
      softcap: float, return_lse: bool, num_splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, tokens, head_dim = q.shape
    lse_shape = (batch, heads, tokens) if return_lse else (0,)
    return q.new_empty(batch, heads, tokens, head_dim), q.new_empty(lse_shape, dtype=torch.float32)


def merge_attention(o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor,
                    lse2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over two disjoint key sets, from each one's output and log-sum-exp ([..., D], [...]):
    the weights exp(lse_i - max) are 0 for a set a row sees nothing of, and a row that sees neither gives 0."""
    peak = torch.maximum(lse1, lse2)
    used = torch.where(peak == -math.inf, 0.0, peak)
    w1, w2 = torch.exp(lse1 - used), torch.exp(lse2 - used)
    total = w1 + w2
    inv = torch.where(total > 0, 1.0 / total.clamp_min(1e-30), 0.0)
    work = torch.promote_types(torch.promote_types(o1.dtype, o2.dtype), torch.float32)  # f32 for 16-bit outputs
    o = (o1.to(work) * (w1 * inv)[..., None] + o2.to(work) * (w2 * inv)[..., None]).to(o1.dtype)
    return o, used + torch.log(total)


def decode_attention(q: torch.Tensor, k_cache: Any, v_cache: torch.Tensor | None = None,
                     cache_seqlens: torch.Tensor | None = None, block_table: torch.Tensor | None = None,
                     scale: float | None = None, softcap: float | None = None, return_lse: bool = False,
                     num_splits: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention of ``q`` [B, H, Q, D] (fp16/bf16; Q small) over a KV cache (see the module notes).

    ``scale`` defaults to 1 / sqrt(D); ``softcap`` caps the logits (``cap * tanh(s / cap)``); ``num_splits``
    pins the split-KV count (default: enough programs for the GPU).  Returns o [B, H, Q, D] in q's dtype,
    and with ``return_lse`` the log-sum-exp [B, H, Q] (f32).
    """
    from tilec.kv import QuantKVCache

    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        raise ArgumentError("q must be a 4-D tensor [batch, heads, query tokens, head_dim]")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise ArgumentError(f"q must be float16 or bfloat16, got {q.dtype}")
    Qn, D = q.shape[2:]
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise ArgumentError(f"scale must be a finite number, got {scale!r}")
    if softcap is not None and not (isinstance(softcap, (int, float)) and math.isfinite(softcap) and softcap > 0):
        raise ArgumentError(f"softcap must be a positive finite number, got {softcap!r}")
    if num_splits is not None and (isinstance(num_splits, bool) or not isinstance(num_splits, int)
                                   or not 1 <= num_splits <= 64):
        raise ArgumentError(f"num_splits must be an integer in 1..64, got {num_splits!r}")
    common = (float(scale), float(softcap or 0.0), bool(return_lse), int(num_splits or 0))
    if isinstance(k_cache, QuantKVCache):
        if v_cache is not None or cache_seqlens is not None or block_table is not None:
            raise ArgumentError("a QuantKVCache carries its values, lengths and block table: pass v_cache, "
                                "cache_seqlens and block_table as None")
        return _quantised(q, k_cache, common)
    k, v = k_cache, v_cache
    if not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor):
        raise ArgumentError("k_cache and v_cache must be tensors (or k_cache a tilec.kv.QuantKVCache)")
    lens = _check_dense(q, k, v, cache_seqlens, block_table)
    capacity = block_table.shape[1] * k.shape[1] if block_table is not None else 0
    o, lse = torch.ops.tilec.decode_attention(q, k, v, None, None, None, None, None, None, lens, lens - Qn, block_table,
                                              "dense", "token", 0, capacity, *common)
    return (o, lse) if return_lse else o


def _check_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seqlens: torch.Tensor | None,
                 table: torch.Tensor | None) -> torch.Tensor:
    B, H, Qn, D = q.shape
    if k.dim() != 4 or k.shape != v.shape:
        raise ArgumentError(f"k_cache and v_cache must be one 4-D shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ArgumentError(f"the cache must be {q.dtype} like q, got {k.dtype} and {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ArgumentError(f"q and the cache must be on one device, got {q.device}, {k.device}, {v.device}")
    rows, _, HK, Dk = k.shape
    if Dk != D:
        raise ArgumentError(f"the cache's head_dim {Dk} differs from q's {D}")
    if HK == 0 or H % HK:
        raise ArgumentError(f"q's {H} heads must be a multiple of the cache's {HK} heads (GQA)")
    if table is not None:
        if not isinstance(table, torch.Tensor) or table.dtype != torch.int32 or table.dim() != 2 or \
                table.shape[0] != B or table.device != q.device:
            raise ArgumentError(f"block_table must be int32 [B = {B}, max_blocks] on {q.device}")
        if not 16 <= k.shape[1] <= 256:
            raise ArgumentError(f"paged blocks hold 16..256 tokens, got {k.shape[1]}")
    elif rows != B:
        raise ArgumentError(f"a dense cache is [B = {B}, Nmax, HK, D], got {tuple(k.shape)}")
    return _check_lengths(seqlens, B, Qn, table.shape[1] * k.shape[1] if table is not None else k.shape[1],
                          q.device)


def _check_lengths(seqlens: torch.Tensor | None, B: int, Qn: int, capacity: int,
                   device: torch.device) -> torch.Tensor:
    if not isinstance(seqlens, torch.Tensor) or seqlens.shape != (B,) or seqlens.device != device:
        raise ArgumentError(f"cache_seqlens must be a [B = {B}] tensor on {device}")
    if seqlens.dtype != torch.int32:
        raise ArgumentError(f"cache_seqlens must be int32, got {seqlens.dtype}")
    # The lengths' values are data: any value is safe in the kernel (keys are read only at positions < N and
    # below the length, gathers are bounds-checked), so they are checked where that costs nothing: on CPU
    # tensors, outside torch.compile.  Reading them from a GPU would stall every decode step on a copy.
    if device.type == "cpu" and not torch.compiler.is_compiling():
        low, high = int(seqlens.min()) if B else Qn, int(seqlens.max()) if B else 0
        if low < Qn or high > capacity:
            raise ArgumentError(f"cache_seqlens must lie in [Q = {Qn}, capacity = {capacity}] (the queries are the "
                                f"cache's last tokens), got {low}..{high}")
    return seqlens


def _quantised(q: torch.Tensor, cache: Any, common: tuple[float, float, bool, int]) -> Any:
    B, H, Qn, D = q.shape
    if cache.batch != B or cache.head_dim != D or cache.v_head_dim != D:
        raise ArgumentError(f"the cache holds {cache.batch} sequences of head_dim {cache.head_dim} (values "
                            f"{cache.v_head_dim}); q is {tuple(q.shape)}")
    if H % cache.num_kv_heads:
        raise ArgumentError(f"q's {H} heads must be a multiple of the cache's {cache.num_kv_heads} heads (GQA)")
    if cache.k_codes.device != q.device:
        raise ArgumentError(f"the cache is on {cache.k_codes.device}, q on {q.device}")
    seqlens = _check_lengths(cache.seqlens, B, Qn, cache.capacity, q.device)
    residual = cache.k_residual
    if residual is not None and residual.dtype != q.dtype:
        residual = residual.to(q.dtype)
    coded = (seqlens - cache.residual_len).to(torch.int32) if residual is not None else None
    group = cache.group if cache.key_mode == "channel" and not cache.paged else 0
    scale, softcap, return_lse, splits = common
    o, lse = torch.ops.tilec.decode_attention(
        q, cache.k_codes, cache.v_codes, cache.k_scale, cache.k_zero, cache.v_scale, cache.v_zero, residual, coded,
        seqlens, (seqlens - Qn).to(torch.int32), cache.block_table, cache.fmt, cache.key_mode, group,
        cache.capacity if cache.paged else 0, scale, softcap, return_lse, splits)
    return (o, lse) if return_lse else o

