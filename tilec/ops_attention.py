"""Attention prefill: ``tilec.ops.attention`` (torch SDPA's layout) and the torch op ``tilec::attention``.

The kernel is a tile-language spec (examples/attention.tile is the causal GQA one), written at the level
of its mathematics, ``acc += softmax(s, axis=1) @ v`` over a key loop; passes/online_softmax.py turns it
into FlashAttention-2's online form.  Each combination of features (causal, sliding window, additive bias,
ALiBi, soft-cap, log-sum-exp output) is one spec text built here from fixed pieces (nothing from the caller
reaches the text: the features are booleans) and compiled once.

Conventions (FlashAttention's): with query length M and key length N, query i sits at position
i + N - M, so causal masking aligns the last query with the last key; ``window=W`` lets query i see keys
i + N - M - W + 1 .. i + N - M (a causal band); ALiBi adds ``-slope * |i + N - M - j|``; the soft-cap
is ``cap * tanh(s / cap)`` on the scaled scores, before bias and masks.  A query row that sees no key
(possible when M > N with causal masking, or with a bias of -inf) gives an output of 0 and a
log-sum-exp of -inf, never NaN (torch SDPA gives NaN there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tilec.api import compile as compile_spec
from tilec.errors import ArgumentError
from tilec.runtime.kernel import Kernel

_SPEC = """
def attention(q: Tensor[B, H, M, D, T], k: Tensor[B, HK, N, D, T], v: Tensor[B, HK, N, D, T],{bias_param}{alibi_param}
              o: Tensor[B, H, M, D, T],{lse_param} scale: f32{window_param}{softcap_param}):
    for b, h, m in product(range(B), range(H), tiles(M)):
        qt = q[b, h, m, :]
        kv_head = h // (H // HK)
        acc = zeros([m, D], f32){lse_init}
        for n in tiles(N):
            s = (qt @ k[b, kv_head, n, :].T) * scale{softcap}{bias}{alibi}{mask}
            acc += softmax(s, axis=1).to(T) @ v[b, kv_head, n, :]{lse_update}
        o[b, h, m, :] = acc.to(T){lse_store}
"""


@dataclass(frozen=True)
class Variant:
    """Which optional parts a kernel has (the key of the compiled kernels)."""

    causal: bool = False
    window: bool = False
    bias: bool = False
    alibi: bool = False
    softcap: bool = False
    lse: bool = False

    def spec(self) -> str:
        visible = []
        if self.causal or self.window:  # a window is a causal band
            visible.append("index(n)[None, :] <= index(m)[:, None] + (N - M)")
        if self.window:
            visible.append("index(n)[None, :] > index(m)[:, None] + (N - M) - window")
        pad = "\n            "
        return _SPEC.format(
            bias_param=" bias: Tensor[B, H, M, N, BT]," if self.bias else "",
            alibi_param=" slopes: Tensor[B, H, f32]," if self.alibi else "",
            lse_param=" lse: Tensor[B, H, M, f32]," if self.lse else "",
            window_param=", window: i32" if self.window else "",
            softcap_param=", softcap: f32" if self.softcap else "",
            lse_init="\n        row_lse = zeros([m], f32)" if self.lse else "",
            softcap=pad + "s = softcap * tanh(s / softcap)" if self.softcap else "",
            bias=pad + "s = s + bias[b, h, m, n].to(f32)" if self.bias else "",
            alibi=(pad + "s = s - slopes[b, h] * abs(index(m)[:, None] + (N - M) - index(n)[None, :])"
                   if self.alibi else ""),
            mask=pad + f"s = where({' & '.join(f'({c})' for c in visible)}, s, -inf)" if visible else "",
            lse_update=pad + "row_lse = logsumexp(s, axis=1)" if self.lse else "",
            lse_store="\n        lse[b, h, m] = row_lse" if self.lse else "",
        )


_KERNELS: dict[Variant, Kernel] = {}


def kernel_for(variant: Variant) -> Kernel:
    if variant not in _KERNELS:
        _KERNELS[variant] = compile_spec(variant.spec(), name="<tilec.ops.attention>").attention
    return _KERNELS[variant]


def prefill_schedule(M: int, D: int, device: torch.device) -> dict[str, int]:
    """Blocks for the query and key tiles.  GPU: FlashAttention-2's shapes for Triton (128 queries x 64 keys,
    8 warps at head dim 128; a 64 x 32 tile at 256, which keeps the accumulator in registers without
    spilling on sm_90).  CPU (the interpreter runs the programs one after another): 32 x 32."""
    block_d = 1 << max(D - 1, 15).bit_length()
    if device.type != "cuda":
        return {"m": 16 if M <= 16 else 32, "n": 32}
    m = max(16, min(128, 1 << max(M - 1, 0).bit_length()))
    if block_d <= 64:
        return {"m": m, "n": 64, "num_warps": 4, "num_stages": 3}
    if block_d <= 128:
        return {"m": m, "n": 64, "num_warps": 8 if m >= 128 else 4, "num_stages": 3}
    return {"m": min(m, 64), "n": 32, "num_warps": 4, "num_stages": 2}


@torch.library.custom_op("tilec::attention", mutates_args=())
def attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                 alibi_slopes: torch.Tensor | None, causal: bool, window: int, softcap: float, scale: float,
                 return_lse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(o [B, H, M, D], lse [B, H, M] f32, or an empty tensor without return_lse).  ``window`` 0: none;
    ``softcap`` 0: none; ``bias`` and ``alibi_slopes`` already expanded to [B, H, M, N] and [B, H]."""
    B, H, M, D = q.shape
    variant = Variant(causal, window > 0, bias is not None, alibi_slopes is not None, softcap > 0, return_lse)
    o = torch.empty(B, H, M, D, dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, M) if return_lse else (0,), dtype=torch.float32, device=q.device)
    args: list[object] = [q, k, v]
    args += [bias] if bias is not None else []
    args += [alibi_slopes] if alibi_slopes is not None else []
    args += [o] + ([lse] if return_lse else []) + [scale]
    args += [window] if window > 0 else []
    args += [softcap] if softcap > 0 else []
    kernel_for(variant)(*args, schedule=prefill_schedule(M, D, q.device))
    return o, lse


@attention_op.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
      alibi_slopes: torch.Tensor | None, causal: bool, window: int, softcap: float, scale: float,
      return_lse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    B, H, M, D = q.shape
    lse_shape = (B, H, M) if return_lse else (0,)
    return q.new_empty(B, H, M, D), q.new_empty(lse_shape, dtype=torch.float32)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, window: int | None = None,
              bias: torch.Tensor | None = None, alibi_slopes: torch.Tensor | None = None,
              softcap: float | None = None, scale: float | None = None,
              return_lse: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, ``softmax(q @ k.T * scale + bias) @ v``, FlashAttention-2 style.

    ``q`` [B, H, M, D], ``k`` and ``v`` [B, HK, N, D] with H a multiple of HK (GQA; HK = 1 is MQA), fp16 or
    bf16, any strides; head dims up to 256 (any size: 80 and 96 are padded to 128 in registers).
    ``bias``: any float tensor broadcastable to [B, H, M, N]; ``alibi_slopes``: [H] or [B, H] (f32);
    ``window``: keys within W positions back (a causal band, see the module notes); ``softcap``: logit
    soft-cap; ``scale``: default 1 / sqrt(D).  Returns o [B, H, M, D] in q's dtype, and with ``return_lse``
    also the log-sum-exp of the scaled, biased, masked scores [B, H, M] (f32, natural log).
    """
    B, H, M, D, N = _check(q, k, v)
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or not bias.dtype.is_floating_point or bias.device != q.device:
            raise ArgumentError(f"bias must be a float tensor on {q.device}")
        try:
            bias = bias.expand(B, H, M, N)
        except RuntimeError as e:
            raise ArgumentError(f"bias {tuple(bias.shape)} does not broadcast to [B, H, M, N] = {[B, H, M, N]}") from e
        if bias.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise ArgumentError(f"bias must be float16, bfloat16 or float32, not {bias.dtype}")
    if alibi_slopes is not None:
        if alibi_slopes.dtype != torch.float32 or alibi_slopes.device != q.device:
            raise ArgumentError(f"alibi_slopes must be float32 on {q.device}")
        if tuple(alibi_slopes.shape) not in ((H,), (B, H)):
            raise ArgumentError(f"alibi_slopes must be [H] or [B, H] = [{B}, {H}], got {tuple(alibi_slopes.shape)}")
        alibi_slopes = alibi_slopes.expand(B, H)
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ArgumentError(f"window must be a positive integer (keys per query), got {window!r}")
    if softcap is not None and not (isinstance(softcap, (int, float)) and math.isfinite(softcap) and softcap > 0):
        raise ArgumentError(f"softcap must be a positive finite number, got {softcap!r}")
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise ArgumentError(f"scale must be a finite number, got {scale!r}")
    o, lse = torch.ops.tilec.attention(q, k, v, bias, alibi_slopes, bool(causal), int(window or 0),
                                       float(softcap or 0.0), float(scale), bool(return_lse))
    return (o, lse) if return_lse else o


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int]:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ArgumentError(f"{name} must be a 4-D tensor [batch, heads, seq, head_dim]")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise ArgumentError(f"q must be float16 or bfloat16, got {q.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ArgumentError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ArgumentError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    B, H, M, D = q.shape
    if k.shape != v.shape:
        raise ArgumentError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have one shape")
    Bk, HK, N, Dk = k.shape
    if Bk != B or Dk != D:
        raise ArgumentError(f"k/v [B, HK, N, D] = {tuple(k.shape)} do not match q [B, H, M, D] = {tuple(q.shape)}")
    if HK == 0 or H % HK:
        raise ArgumentError(f"q's {H} heads must be a multiple of k/v's {HK} heads (GQA)")
    if not 1 <= D <= 256:
        raise ArgumentError(f"head_dim must be in 1..256, got {D}")
    return B, H, M, D, N
