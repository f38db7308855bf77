"""The decode-attention spec, built from fixed pieces for each cache layout and format.

One template covers every variant (tilec/ops_decode.py runs them):

- **layout**: a dense cache ``[B, N, HK, Dp]`` (FlashAttention's kv-cache layout), or a paged pool
  ``[num_blocks, S, HK, Dp]`` read through a block table (``N: Dim`` is then the table's reach,
  max_blocks * S; a key's row is ``pool[table[b, pos // S], pos % S]``, a gather);
- **format**: 16-bit keys and values, or a quantised cache (tilec/kv: int8/int4/int2 codes with scales and
  zero points, fp8 codes with scales) whose ``P`` bit planes are dequantised in registers inside the key
  loop, one plane at a time (docs/kv_cache.md: plane i of a byte holds channels i*Dp .. (i+1)*Dp - 1, so q
  and the output are viewed as ``[..., P, Dp]`` and each plane meets its own slice with no shuffle);
- **key scales**: per token (``[.., S|N, HK]``, like values) or per channel over groups of tokens
  (KIVI: ``[B, N // group, HK, P, Dp]`` dense, ``[num_blocks, HK, P, Dp]`` paged); per-channel keys keep the
  newest incomplete group unquantised (tilec/kv's residual): keys at positions ``coded <= p < length`` come
  from ``k_res[b, p - coded]`` (a gather, 0 outside it), selected per key in the same loop, so the whole
  cache is one pass (values are always coded).

The rows of a program are the ``R = G * Q`` query rows of one KV head's group (G query heads of Q tokens
each): every key tile is loaded once for all of them.  Row r is query token ``r % Q``; it sees the keys at
positions ``p < length`` with ``p <= first + r % Q`` (``first``: query 0's position, per sequence).  The key
loop is ``acc += softmax(s, axis=1) @ v`` (passes/online_softmax.py makes it online; a split schedule merges
the splits by log-sum-exp).  The only text from outside is a validated format name's fixed pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

_FP8 = {"fp8_e4m3": "f8e4m3", "fp8_e5m2": "f8e5m2"}
_INT_BITS = {"int8": 8, "int4": 4, "int2": 2}
# Value scales are multiplied by 2**k (undone on the output, exactly) so that p * scale, rounded to T, stays
# a normal float16 for data of any size: 2**k is the power of two at or below the format's largest code, so
# scale * 2**k is about half the data's largest magnitude.  (fp8_e5m2's scales are ~amax / 57344: p * scale
# alone would be a float16 subnormal.)
_VALUE_SCALE_UP = {"int8": 128.0, "int4": 8.0, "int2": 2.0, "fp8_e4m3": 256.0, "fp8_e5m2": 32768.0}


@dataclass(frozen=True)
class DecodeVariant:
    fmt: str = "dense"  # "dense" (16-bit cache) or a tilec.kv format
    paged: bool = False
    key_mode: str = "token"  # quantised keys: "token" or "channel"
    softcap: bool = False
    lse: bool = False
    residual: bool = False  # per-channel keys: the newest incomplete group's keys come from k_res (16-bit)

    @property
    def planes(self) -> int:
        return 8 // _INT_BITS[self.fmt] if self.fmt in _INT_BITS else 1

    def spec(self) -> str:
        return _Builder(self).text()


class _Builder:
    def __init__(self, v: DecodeVariant):
        assert v.fmt == "dense" or v.fmt in _INT_BITS or v.fmt in _FP8, v.fmt
        assert v.key_mode in ("token", "channel")
        self.v = v
        self.p = v.planes
        self.quant = v.fmt != "dense"

    def rows(self) -> tuple[str, str]:
        """(the cache's leading dims, the index of one key tile's rows)."""
        return ("NB, S, HK", "page, slot, hk") if self.v.paged else ("B, N, HK", "b, n, hk")

    def params(self) -> list[str]:
        v, p = self.v, self.p
        code = "T" if not self.quant else _FP8.get(v.fmt, "u8")
        lead, _ = self.rows()
        out = []
        if v.paged:
            out += ["N: Dim", "table: Tensor[B, MB, i32]"]
        out += [f"q: Tensor[B, HK, R, {p}, DP, T]", f"k: Tensor[{lead}, DP, {code}]", f"v: Tensor[{lead}, DP, {code}]"]
        if self.quant:
            zeros = v.fmt in _INT_BITS
            if v.key_mode == "channel":
                groups = "NB, HK" if v.paged else "B, NG, HK"
                out.append(f"k_scale: Tensor[{groups}, {p}, DP, f16]")
                out += [f"k_zero: Tensor[{groups}, {p}, DP, f16]"] if zeros else []
            else:
                out.append(f"k_scale: Tensor[{lead}, f16]")
                out += [f"k_zero: Tensor[{lead}, f16]"] if zeros else []
            out.append(f"v_scale: Tensor[{lead}, f16]")
            out += [f"v_zero: Tensor[{lead}, f16]"] if zeros else []
        if v.residual:
            out += [f"k_res: Tensor[B, G, HK, {p}, DP, T]", "coded: Tensor[B, i32]"]
        out += ["lens: Tensor[B, i32]", "first: Tensor[B, i32]", f"o: Tensor[B, HK, R, {p}, DP, T]"]
        out += ["lse: Tensor[B, HK, R, f32]"] if v.lse else []
        out += ["scale: f32", "Q: i32"]
        out += ["group: i32"] if self.quant and v.key_mode == "channel" and not v.paged else []
        out += ["softcap: f32"] if v.softcap else []
        return out

    def plane(self, codes: str, i: int, to: str = "f32") -> str:
        """Plane i of a code tile as ``to`` (integer formats: shift and mask, the code itself; fp8: its value).
        Codes are exact in f16 and bf16 (integers below 256, fp8 values), so a product can take them raw."""
        if self.v.fmt in _FP8:
            return f"{codes}.to({to})"
        bits = _INT_BITS[self.v.fmt]
        if bits == 8:
            return f"{codes}.to({to})"
        shifted = f"({codes} >> {i * bits})" if i else codes
        return f"({shifted} & {(1 << bits) - 1}).to({to})"

    @property
    def zero_points(self) -> bool:
        return self.v.fmt in _INT_BITS

    @property
    def center(self) -> str:
        """Value codes enter the product as ``code - 2**(bits - 1)``: the probabilities, rounded to T with the
        scale folded in, then multiply numbers of at most half the codes' range (the zero is moved by as much)."""
        return f"{float(1 << (_INT_BITS[self.v.fmt] - 1))}"

    @property
    def folded_keys(self) -> bool:
        """Per-token keys: ``q . ((c - z) * s) = (q . c - z * sum(q)) * s``, so the product takes the raw codes
        and the scale and zero apply to the [rows, keys] scores, not to every element of the key tile."""
        return self.quant and self.v.key_mode == "token"

    @property
    def key_bias(self) -> str:
        """Folded keys of at most 4 bits enter the product as ``c + 128`` and the zero as ``z + 128``: the same
        scores, and ``(c | 0x4300)`` as bf16 is 128 + c already (codegen/lowering.magic_cast), so the codes
        need no subtraction (int4 per token: 12.3 -> 11.8 instructions per cache byte, sm_90, bf16).  The
        product grows to ~17 times the centred one, cancelled in f32: ~2**-20 relative, far below T's
        rounding.  (8-bit codes plus 128 are not exact in bf16.)"""
        bits = _INT_BITS.get(self.v.fmt, 8)
        return "128.0" if self.folded_keys and bits <= 4 else ""

    def key_plane(self, i: int) -> str:
        v = self.v
        if not self.quant:
            return "keys"
        if self.folded_keys and self.key_bias:  # the magic float 128 + c as it comes (key_zero takes the 128)
            return f"({self.plane('keys', i, 'T')} + {self.key_bias})"
        if self.folded_keys:
            return self.plane("keys", i, "T")
        at = f"page, hk, {i}, :" if v.paged else f"b, key_group, hk, {i}, :"
        scale = f"k_scale[{at}].to(f32)"
        if v.fmt in _FP8:
            value = f"{self.plane('keys', i)} * {scale}"
        else:
            # c - z in f16, where the code, the zero and the difference are paired (HADD2): z is f16 and
            # |c - z| <= 1024 + 255, so this is one rounding, at most 2**-11 relative, then the f32 product.
            # The f32 form took a conversion of the code and of the zero per element: 19.3 -> 17.7
            # instructions per cache byte (int4 keys per channel, sm_90, bf16, Triton 3.9).
            value = f"({self.plane('keys', i, 'f16')} - k_zero[{at}]).to(f32) * {scale}"
        if v.residual:  # positions past the coded ones: the residual's keys, as they were appended
            return f"where(in_codes[:, None], {value}, k_res[b, index(n) - coded_len, hk, {i}, :].to(f32)).to(T)"
        return f"({value}).to(T)"

    def value_plane(self, i: int) -> str:
        """Plane i of the value tile in T.  16-bit values are 0 at positions >= length: a cache's rows past a
        sequence's end may hold anything (torch.empty's NaN included) and 0 * NaN would reach the accumulator.
        Quantised values are codes (the per-token scale is folded into the probabilities, the zero into
        ``offset``): integer codes are always finite, fp8 codes are masked like 16-bit values."""
        if not self.quant:
            return "values"
        if self.v.fmt in _FP8:
            return f"where(stored, {self.plane('values', i, 'T')}, 0.0)"
        return f"({self.plane('values', i, 'T')} - {self.center})"  # exact: small integers

    def text(self) -> str:
        v, p = self.v, self.p
        _, at = self.rows()
        ind = "            "
        body = [
            "    for b, hk, m in product(range(B), range(HK), tiles(R)):",
            *[f"        q{i} = q[b, hk, m, {i}, :]" for i in range(p)],
            "        length = lens[b]",
            "        first_query = first[b]",
            *(["        coded_len = coded[b]"] if v.residual else []),
            *[f"        acc{i} = zeros([m, DP], f32)" for i in range(p)],
        ]
        if self.zero_points:
            body.append("        offset = zeros([m], f32)")
            if self.folded_keys:
                body.append("        q_sum = " + " + ".join(f"sum(q{i}.to(f32), axis=1)" for i in range(p)))
        body += ["        row_lse = zeros([m], f32)"] if v.lse else []
        body.append("        for n in tiles(N):")
        if v.paged:
            body += [f"{ind}page = table[b, index(n) // S]", f"{ind}slot = index(n) % S"]
        body.append(f"{ind}keys = k[{at}, :]")
        if v.residual:
            body.append(f"{ind}in_codes = index(n) < coded_len")
        if self.quant and v.key_mode == "channel" and not v.paged:
            body.append(f"{ind}key_group = index(n) // group")
        if self.folded_keys:
            body.append(f"{ind}key_scale = k_scale[{at}].to(f32)")
            if v.fmt in _INT_BITS:
                bias = f" + {self.key_bias}" if self.key_bias else ""
                body.append(f"{ind}key_zero = k_zero[{at}].to(f32){bias}")
        dots = " + ".join(f"q{i} @ {self.key_plane(i)}.T" for i in range(p))
        if not self.folded_keys:
            body.append(f"{ind}s = ({dots}) * scale")
        elif v.fmt in _INT_BITS:  # the scalar scale last: online_softmax folds it into the exp2's fma
            body.append(f"{ind}s = (({dots} - q_sum[:, None] * key_zero[None, :]) * key_scale[None, :]) * scale")
        else:
            body.append(f"{ind}s = (({dots}) * key_scale[None, :]) * scale")
        if v.softcap:
            body.append(f"{ind}s = softcap * tanh(s / softcap)")
        body.append(f"{ind}visible = (index(n)[None, :] < length) & "
                    "(index(n)[None, :] <= (first_query + index(m) % Q)[:, None])")
        body.append(f"{ind}s = where(visible, s, -inf)")  # NaN scores of unused positions are dropped here
        if v.fmt == "dense" or v.fmt in _FP8:
            body.append(f"{ind}stored = (index(n) < length)[:, None]")
        if self.quant:
            up = _VALUE_SCALE_UP[v.fmt]
            body.append(f"{ind}values = v[{at}, :]")
            body.append(f"{ind}value_scale = where(index(n) < length, v_scale[{at}].to(f32) * {up}, 0.0)")
            probs = "(softmax(s, axis=1) * value_scale[None, :]).to(T)"
        else:
            body.append(f"{ind}values = where(stored, v[{at}, :], 0.0).to(T)")
            probs = "softmax(s, axis=1).to(T)"
        body += [f"{ind}acc{i} += {probs} @ {self.value_plane(i)}" for i in range(p)]
        if self.zero_points:  # sum over keys of p * scale * (zero - center), the same for every channel
            body.append(f"{ind}value_offset = where(index(n) < length, value_scale * (v_zero[{at}].to(f32) - "
                        f"{self.center}), 0.0)")
            body.append(f"{ind}offset += sum(softmax(s, axis=1) * value_offset[None, :], axis=1)")
        body += [f"{ind}row_lse = logsumexp(s, axis=1)"] if v.lse else []
        less = " - offset[:, None]" if self.zero_points else ""
        down = f" * {1.0 / _VALUE_SCALE_UP[v.fmt]}" if self.quant else ""
        body += [f"        o[b, hk, m, {i}, :] = ((acc{i}{less}){down}).to(T)" for i in range(p)]
        body += ["        lse[b, hk, m] = row_lse"] if v.lse else []
        header = "def decode_attention(" + ",\n                     ".join(self.params()) + "):"
        return "\n".join([header, *body]) + "\n"
