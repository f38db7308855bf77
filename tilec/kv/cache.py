"""`QuantKVCache`: a quantised KV cache, contiguous or paged, with append, and its dense reference.

Tensors (B sequences, HK kv heads, head dim D, P channels per byte, see `tilec.kv.layout`):

=================  =============================  ================================
tensor             contiguous                     paged (block size S)
=================  =============================  ================================
k/v codes          [B, Nmax, HK, D // P]          [num_blocks, S, HK, D // P]
per-token scale    [B, Nmax, HK]                  [num_blocks, S, HK]
per-channel scale  [B, Nmax // G, HK, D]          [num_blocks, HK, D]   (G = S: a page is a group)
block_table        -                              [B, max_blocks] int32 (page of positions i*S..)
seqlens            [B] int32                      [B] int32
k_residual         [B, G, HK, D] input dtype      [B, S, HK, D] input dtype   (per-channel keys only)
=================  =============================  ================================

Zeros have the scales' shapes (float16; None for fp8). Values are always per token; keys per token or per
channel (``key_mode``). Position ``n`` of sequence ``b`` lives at ``[b, n]`` (contiguous) or at
``[block_table[b, n // S], n % S]`` (paged).

**The residual rule (per-channel keys).** A group's scales need all of its G tokens, so the newest, incomplete
group of each sequence's keys is kept unquantised: with ``r = seqlens[b] % G``, key positions
``[seqlens[b] - r, seqlens[b])`` are ``k_residual[b, :r]`` (exact, in the input dtype) and their codes and
the group's scales are not written yet (zeros). A reader takes those keys from the residual. When appends
complete the group it is quantised and written, and the residual starts over. Values are per token and
always written at once. Per-token keys have no residual (``k_residual is None``, ``group == 1``).

The dataclass is frozen, but its tensors are updated in place by `QuantKVCache.append` (seqlens included),
so a kernel may hold on to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tilec.errors import ArgumentError
from tilec.kv.layout import FP8_DTYPES, bits, check_format, packed_dim
from tilec.kv.quant import Mode, dequantize, quantize_channels, quantize_tokens

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


@dataclass(frozen=True)
class QuantKVCache:
    """A quantised KV cache; see the module docstring for the tensors and the residual rule."""

    fmt: str
    key_mode: Mode
    group: int
    k_codes: torch.Tensor
    k_scale: torch.Tensor
    k_zero: torch.Tensor | None
    v_codes: torch.Tensor
    v_scale: torch.Tensor
    v_zero: torch.Tensor | None
    seqlens: torch.Tensor
    k_residual: torch.Tensor | None = None
    block_table: torch.Tensor | None = None
    block_size: int | None = None

    # ----------------------------------------------------------------------------------------- shapes

    @property
    def paged(self) -> bool:
        return self.block_table is not None

    @property
    def batch(self) -> int:
        return int(self.seqlens.shape[0])

    @property
    def num_kv_heads(self) -> int:
        return int(self.v_codes.shape[2])

    @property
    def head_dim(self) -> int:
        """D of the keys (channels, not bytes)."""
        return int(self.k_codes.shape[-1]) * (8 // bits(self.fmt))

    @property
    def v_head_dim(self) -> int:
        return int(self.v_codes.shape[-1]) * (8 // bits(self.fmt))

    @property
    def capacity(self) -> int:
        """Nmax: positions per sequence (paged: max_blocks * block_size)."""
        if self.block_table is not None:
            assert self.block_size is not None
            return int(self.block_table.shape[1]) * self.block_size
        return int(self.k_codes.shape[1])

    @property
    def residual_len(self) -> torch.Tensor:
        """int32 [B]: how many of each sequence's newest keys are in ``k_residual`` (seqlens % G; 0 per token)."""
        return self.seqlens % self.group

    # ----------------------------------------------------------------------------------- constructors

    @staticmethod
    def empty(
        batch: int,
        capacity: int,
        num_kv_heads: int,
        head_dim: int,
        fmt: str,
        key_mode: Mode = "channel",
        group: int = 32,
        dtype: torch.dtype = torch.float16,
        device: torch.device | str | None = None,
        v_head_dim: int | None = None,
    ) -> QuantKVCache:
        """An empty contiguous cache of ``capacity`` positions (a multiple of ``group`` for per-channel keys)."""
        fmt, g = _check_modes(fmt, key_mode, group)
        _check_positive(batch=batch, capacity=capacity, num_kv_heads=num_kv_heads)
        if capacity % g:
            raise ArgumentError(f"capacity {capacity} must be a multiple of the key group {g}")
        rows = (batch, capacity)
        kscale = (batch, capacity // g, num_kv_heads, head_dim) if key_mode == "channel" else (*rows, num_kv_heads)
        return _allocate(fmt, key_mode, g, rows, kscale, (*rows, num_kv_heads), batch, num_kv_heads, head_dim,
                         v_head_dim or head_dim, dtype, device, None, None)

    @staticmethod
    def paged_empty(
        block_table: torch.Tensor,
        num_blocks: int,
        block_size: int,
        num_kv_heads: int,
        head_dim: int,
        fmt: str,
        key_mode: Mode = "channel",
        dtype: torch.dtype = torch.float16,
        v_head_dim: int | None = None,
    ) -> QuantKVCache:
        """An empty paged cache: a pool of ``num_blocks`` pages; ``block_table`` [B, max_blocks] (int, on the
        cache's device) names each sequence's pages in order (a negative entry: no page). Per-channel keys
        are grouped by page (G = block_size)."""
        if not isinstance(block_size, int) or not 16 <= block_size <= 256:
            raise ArgumentError(f"block_size must be an int in 16..256, got {block_size!r}")
        if not isinstance(block_table, torch.Tensor) or block_table.dim() != 2 or block_table.is_floating_point():
            raise ArgumentError("block_table must be an integer tensor [B, max_blocks]")
        _check_positive(num_blocks=num_blocks, num_kv_heads=num_kv_heads)
        if block_table.numel() and int(block_table.max()) >= num_blocks:
            raise ArgumentError(f"block_table names a page >= num_blocks = {num_blocks}")
        fmt, g = _check_modes(fmt, key_mode, block_size)
        table = block_table.to(torch.int32).contiguous()
        rows = (num_blocks, block_size)
        kscale = (num_blocks, num_kv_heads, head_dim) if key_mode == "channel" else (*rows, num_kv_heads)
        return _allocate(fmt, key_mode, g, rows, kscale, (*rows, num_kv_heads), int(table.shape[0]), num_kv_heads,
                         head_dim, v_head_dim or head_dim, dtype, table.device, table, block_size)

    @staticmethod
    def from_dense(
        k: torch.Tensor,
        v: torch.Tensor,
        fmt: str,
        key_mode: Mode = "channel",
        group: int = 32,
        capacity: int | None = None,
        seqlens: torch.Tensor | list[int] | None = None,
    ) -> QuantKVCache:
        """A contiguous cache holding ``k``, ``v`` [B, N, HK, D] (sequence b: its first ``seqlens[b]`` tokens,
        default N). ``capacity`` (Nmax) defaults to N, rounded up to a multiple of ``group`` for per-channel keys.
        The result is the same as appending the tokens to an empty cache."""
        b, n, hk, d, dv = _dense_shapes(k, v)
        g = group if key_mode == "channel" else 1
        if capacity is None:  # N rounded up to whole groups (at least one group, so that N = 0 works)
            capacity = max(g, -(-n // g) * g) if isinstance(g, int) and g > 0 else n
        cache = QuantKVCache.empty(b, capacity, hk, d, fmt, key_mode, group, k.dtype, k.device, dv)
        cache._fill(k, v, seqlens)
        return cache

    @staticmethod
    def paged_from_dense(
        k: torch.Tensor,
        v: torch.Tensor,
        fmt: str,
        key_mode: Mode = "channel",
        block_size: int = 32,
        num_blocks: int | None = None,
        block_table: torch.Tensor | None = None,
        seqlens: torch.Tensor | list[int] | None = None,
        capacity: int | None = None,
    ) -> QuantKVCache:
        """A paged cache holding ``k``, ``v`` [B, N, HK, D]. Without ``block_table``, sequence b gets pages
        ``b * max_blocks .. (b + 1) * max_blocks - 1`` in order (deterministic), with ``max_blocks =
        ceil(capacity / block_size)`` and ``capacity`` default N; ``num_blocks`` defaults to what the table needs."""
        b, n, hk, d, dv = _dense_shapes(k, v)
        if block_table is None:
            if not isinstance(block_size, int) or block_size <= 0:
                raise ArgumentError(f"block_size must be an int in 16..256, got {block_size!r}")
            cap = n if capacity is None else capacity
            max_blocks = max(1, -(-cap // block_size))
            block_table = torch.arange(b * max_blocks, dtype=torch.int32, device=k.device).reshape(b, max_blocks)
        elif capacity is not None:
            raise ArgumentError("paged_from_dense: give capacity or block_table, not both")
        if num_blocks is None:
            num_blocks = int(block_table.max()) + 1 if block_table.numel() else 1
        cache = QuantKVCache.paged_empty(block_table.to(k.device), num_blocks, block_size, hk, d, fmt, key_mode,
                                         k.dtype, dv)
        cache._fill(k, v, seqlens)
        return cache

    # ------------------------------------------------------------------------------------------ append

    def append(self, k_new: torch.Tensor, v_new: torch.Tensor) -> None:
        """Write ``k_new``, ``v_new`` [B, T, HK, D] at positions ``seqlens[b] .. seqlens[b] + T - 1`` of each
        sequence, then advance seqlens by T. Raises ArgumentError (and writes nothing) when a sequence would
        run past its capacity or its pages."""
        self._check_new(k_new, v_new)
        t = int(k_new.shape[1])
        lens = [int(x) for x in self.seqlens.tolist()]
        for b, pos in enumerate(lens):
            self._check_room(b, pos, t)
        for b, pos in enumerate(lens):
            self._write(b, pos, k_new[b], v_new[b])

    def _fill(self, k: torch.Tensor, v: torch.Tensor, seqlens: torch.Tensor | list[int] | None) -> None:
        n = int(k.shape[1])
        lens = [n] * self.batch if seqlens is None else [int(x) for x in torch.as_tensor(seqlens).tolist()]
        if len(lens) != self.batch or any(not 0 <= x <= n for x in lens):
            raise ArgumentError(f"seqlens must be {self.batch} lengths in 0..{n}, got {lens}")
        self._check_new(k, v)
        for b, length in enumerate(lens):
            self._check_room(b, 0, length)
        for b, length in enumerate(lens):
            self._write(b, 0, k[b, :length], v[b, :length])

    def _check_new(self, k_new: torch.Tensor, v_new: torch.Tensor) -> None:
        for name, x, d in (("k", k_new, self.head_dim), ("v", v_new, self.v_head_dim)):
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                raise ArgumentError(f"{name} must be a tensor [B, T, HK, D]")
            if x.shape[0] != self.batch or x.shape[2] != self.num_kv_heads or x.shape[3] != d:
                raise ArgumentError(
                    f"{name} has shape {tuple(x.shape)}; the cache takes [{self.batch}, T, {self.num_kv_heads}, {d}]"
                )
            if x.device != self.v_codes.device:
                raise ArgumentError(f"{name} is on {x.device}, the cache on {self.v_codes.device}")
        if k_new.shape[1] != v_new.shape[1]:
            raise ArgumentError(f"k has {k_new.shape[1]} new tokens, v {v_new.shape[1]}")
        if self.k_residual is not None and k_new.dtype != self.k_residual.dtype:
            raise ArgumentError(f"keys are {k_new.dtype}; this cache's key residual is {self.k_residual.dtype}")

    def _check_room(self, b: int, pos: int, t: int) -> None:
        if pos + t > self.capacity:
            raise ArgumentError(
                f"sequence {b}: {pos} + {t} tokens exceed the cache's capacity of {self.capacity} positions"
            )
        if self.block_table is not None and t:
            assert self.block_size is not None
            pages = self.block_table[b, pos // self.block_size : (pos + t - 1) // self.block_size + 1]
            if bool((pages < 0).any()):
                raise ArgumentError(f"sequence {b}: positions {pos}..{pos + t - 1} run past its allocated pages")

    def _rows(self, b: int, pos: torch.Tensor) -> tuple[torch.Tensor | int, torch.Tensor]:
        """The (first, second) index of positions ``pos`` [T] of sequence b in the code tensors."""
        if self.block_table is None:
            return b, pos
        assert self.block_size is not None
        return self.block_table[b, pos // self.block_size].long(), pos % self.block_size

    def _write(self, b: int, pos: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write k, v [T, HK, D] of sequence b from position ``pos`` (room already checked)."""
        t = int(v.shape[0])
        if t == 0:
            return
        dev = self.v_codes.device
        rows = self._rows(b, torch.arange(pos, pos + t, device=dev))
        _store_tokens(v, self.fmt, rows, self.v_codes, self.v_scale, self.v_zero)
        if self.key_mode == "token":
            _store_tokens(k, self.fmt, rows, self.k_codes, self.k_scale, self.k_zero)
        else:
            self._write_key_groups(b, pos, k)
        self.seqlens[b] += t

    def _write_key_groups(self, b: int, pos: int, k: torch.Tensor) -> None:
        assert self.k_residual is not None
        g = self.group
        r = pos % g
        start = pos - r  # first position of the group the residual belongs to
        buf = torch.cat([self.k_residual[b, :r], k]) if r else k
        full = int(buf.shape[0]) // g
        if full:
            codes, scale, zero = quantize_channels(buf[: full * g].reshape(full, g, *buf.shape[1:]), self.fmt)
            dev = self.v_codes.device
            rows = self._rows(b, torch.arange(start, start + full * g, device=dev))
            _put(self.k_codes, rows, codes.reshape(full * g, *codes.shape[2:]))
            groups = torch.arange(start // g, start // g + full, device=dev)
            if self.block_table is None:
                srows: tuple[torch.Tensor | int, ...] = (b, groups)
            else:
                srows = (self.block_table[b, groups].long(),)
            _put(self.k_scale, srows, scale)
            if self.k_zero is not None and zero is not None:
                _put(self.k_zero, srows, zero)
        rest = buf[full * g :]
        self.k_residual[b].zero_()
        self.k_residual[b, : rest.shape[0]] = rest

    # --------------------------------------------------------------------------------------- reference

    def dequantized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense float32 ``(k, v)`` [B, Nmax, HK, D]: dequantised codes, residual keys exactly, zeros at and past
        seqlens. The reference a decode-attention kernel is checked against."""
        v = self._gather(dequantize(self.v_codes, self.v_scale, self.v_zero, self.fmt, "token"))
        if self.key_mode == "token":
            k = self._gather(dequantize(self.k_codes, self.k_scale, self.k_zero, self.fmt, "token"))
        else:
            codes = self.k_codes
            contiguous = self.block_table is None
            if contiguous:  # [B, Nmax, ...] -> [B, Nmax // G, G, ...] to meet the scales' groups
                codes = codes.reshape(codes.shape[0], -1, self.group, *codes.shape[2:])
            kq = dequantize(codes, self.k_scale, self.k_zero, self.fmt, "channel")
            k = self._gather(kq.flatten(1, 2) if contiguous else kq)
        n = k.shape[1]
        valid = torch.arange(n, device=k.device) < self.seqlens.to(k.device).unsqueeze(1)  # [B, Nmax]
        k = torch.where(valid[:, :, None, None], k, 0.0)
        v = torch.where(valid[:, :, None, None], v, 0.0)
        if self.k_residual is not None:
            for b, length in enumerate(int(x) for x in self.seqlens.tolist()):
                r = length % self.group
                k[b, length - r : length] = self.k_residual[b, :r].to(torch.float32)
        return k, v

    def _gather(self, pool: torch.Tensor) -> torch.Tensor:
        """Contiguous: as is. Paged: pool [num_blocks, S, HK, D] -> [B, max_blocks * S, HK, D] via the table."""
        if self.block_table is None:
            return pool
        pages = pool[self.block_table.clamp(min=0).long()]  # [B, max_blocks, S, HK, D]
        return pages.flatten(1, 2)


def _check_modes(fmt: str, key_mode: object, group: object) -> tuple[str, int]:
    fmt = check_format(fmt)
    if key_mode not in ("token", "channel"):
        raise ArgumentError(f"key_mode must be 'channel' or 'token', got {key_mode!r}")
    if key_mode == "token":
        return fmt, 1
    if not isinstance(group, int) or group < 1:
        raise ArgumentError(f"the key group must be a positive int, got {group!r}")
    return fmt, group


def _check_positive(**sizes: int) -> None:
    for name, x in sizes.items():
        if not isinstance(x, int) or x < 1:
            raise ArgumentError(f"{name} must be a positive int, got {x!r}")


def _dense_shapes(k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int]:
    if not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor) or k.dim() != 4 or v.dim() != 4:
        raise ArgumentError("k and v must be tensors [B, N, HK, D]")
    if k.shape[:3] != v.shape[:3]:
        raise ArgumentError(f"k {tuple(k.shape)} and v {tuple(v.shape)} differ in [B, N, HK]")
    if k.dtype not in _FLOATS or v.dtype not in _FLOATS:
        raise ArgumentError(f"k and v must be float16, bfloat16 or float32, got {k.dtype}, {v.dtype}")
    b, n, hk, d = (int(s) for s in k.shape)
    return b, n, hk, d, int(v.shape[3])


def _allocate(
    fmt: str,
    key_mode: Mode,
    g: int,
    rows: tuple[int, int],
    kscale: tuple[int, ...],
    vscale: tuple[int, ...],
    batch: int,
    hk: int,
    d: int,
    dv: int,
    dtype: torch.dtype,
    device: torch.device | str | None,
    table: torch.Tensor | None,
    block_size: int | None,
) -> QuantKVCache:
    if dtype not in _FLOATS:
        raise ArgumentError(f"the cache's input dtype must be float16, bfloat16 or float32, got {dtype}")
    _check_positive(head_dim=d, v_head_dim=dv)
    nb = bits(fmt)
    code_dtype = FP8_DTYPES.get(fmt, torch.uint8)

    def zeros(shape: tuple[int, ...], dt: torch.dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dt, device=device)

    int_fmt = fmt not in FP8_DTYPES
    return QuantKVCache(
        fmt=fmt,
        key_mode=key_mode,
        group=g,
        k_codes=zeros((*rows, hk, packed_dim(d, nb)), code_dtype),
        k_scale=zeros(kscale, torch.float16),
        k_zero=zeros(kscale, torch.float16) if int_fmt else None,
        v_codes=zeros((*rows, hk, packed_dim(dv, nb)), code_dtype),
        v_scale=zeros(vscale, torch.float16),
        v_zero=zeros(vscale, torch.float16) if int_fmt else None,
        seqlens=zeros((batch,), torch.int32),
        k_residual=zeros((batch, g, hk, d), dtype) if key_mode == "channel" else None,
        block_table=table,
        block_size=block_size,
    )


def _put(dst: torch.Tensor, index: tuple[torch.Tensor | int, ...], src: torch.Tensor) -> None:
    dst[index] = src


def _store_tokens(
    x: torch.Tensor,
    fmt: str,
    rows: tuple[torch.Tensor | int, torch.Tensor],
    codes: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor | None,
) -> None:
    q, s, z = quantize_tokens(x, fmt)
    _put(codes, rows, q)
    _put(scale, rows, s)
    if zero is not None and z is not None:
        _put(zero, rows, z)
