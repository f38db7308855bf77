"""Typing of ``dequantize(w[n, k], s2, zero, group)`` with integer scales: an i8 tile (two-level W4A8).

Integer (u8) scales and zero points on uintB codes give an i8 tile that multiplies i8 activations into
i32; every way of mixing it with floats, or of giving it the wrong operands, is a located TileTypeError.
"""

from __future__ import annotations

import pytest

import tilec
from tilec.errors import TileTypeError
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir

HEAD = ("def k(x: Tensor[M, K, i8], xf: Tensor[M, K, f16], w: Tensor[N, K, uint4], v: Tensor[N, K, int4],\n"
        "      f: Tensor[N, K, fp4_e2m1], s2: Tensor[N, G, u8], si: Tensor[N, G, i8], sf: Tensor[N, G, f16],\n"
        "      zero: Tensor[N, G, u8], out: Tensor[M, N, f32], group: i32):\n"
        "    for m, n in tiles(M, N):\n"
        "        acc = zeros([m, n], i32)\n"
        "        for k in tiles(K):\n")
TAIL = "        out[m, n] = acc.to(f32)\n"

CASES = [
    ("float-activations", "            acc += $xf[m, k] @ dequantize(w[n, k], s2, zero, group).T\n",
     "'@' needs two operands of one type", "integer tensor cores"),
    ("float-scales-with-i8-activations", "            acc += $x[m, k] @ dequantize(w[n, k], sf, zero, group).T\n",
     "'@' needs two operands of one type", "float activations take float scales"),
    ("signed-codes", "            acc += x[m, k] @ $dequantize(v[n, k], s2, None, group).T\n",
     "dequantise unsigned integer codes (uintB), not int4", "two-level weights"),
    ("float-codes", "            acc += x[m, k] @ $dequantize(f[n, k], s2, None, group).T\n",
     "dequantise unsigned integer codes (uintB), not fp4_e2m1", "two-level weights"),
    ("signed-scales", "            acc += x[m, k] @ $dequantize(w[n, k], si, zero, group).T\n",
     "integer scales 'si' must be u8, not i8", "two-level weights"),
    ("no-zero-points", "            acc += x[m, k] @ $dequantize(w[n, k], s2, None, group).T\n",
     "integer scales 's2' need u8 zero points, got None", "two-level weights"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_mixing_and_bad_operands_are_located_type_errors(case: tuple[str, str, str, str]) -> None:
    _, body, fragment, hint = case
    text = HEAD + body + TAIL
    offset = text.index("$")
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    with pytest.raises(TileTypeError) as info:
        tilec.compile(text.replace("$", "", 1), name="w4a8.tile")
    err = info.value
    assert fragment in err.message and err.hint is not None and hint in err.hint
    assert err.span is not None and (err.span.line, err.span.col) == (line, col), str(err)
    assert f"w4a8.tile:{line}:{col}" in str(err) and "^" in str(err)


def test_integer_scales_give_an_i8_tile_and_an_i32_dot() -> None:
    text = HEAD + "            acc += x[m, k] @ dequantize(w[n, k], s2, zero, group).T\n" + TAIL
    kir = tilec.compile(text, name="w4a8.tile").k.ir()
    exprs = [e for s in ir.walk_stmts(kir.body.body) if isinstance(s, ir.Assign) for e in ir.walk_exprs(s.value)]
    (load,) = [e for e in exprs if isinstance(e, ir.QuantLoad)]
    assert load.type.dtype == dt.i8 and (load.scale, load.zero) == ("s2", "zero")
    (dot,) = [e for e in exprs if isinstance(e, ir.Dot)]
    assert dot.type.dtype == dt.i32 and dot.a.type.dtype == dt.i8
    # float scales on the same codes still give a float tile (W4A16)
    w4a16 = HEAD.replace("zeros([m, n], i32)", "zeros([m, n], f32)") + \
        "            acc += xf[m, k] @ dequantize(w[n, k], sf, zero, group).T\n" + TAIL
    kir = tilec.compile(w4a16, name="w4a16.tile").k.ir()
    loads = [e for s in ir.walk_stmts(kir.body.body) if isinstance(s, ir.Assign) for e in ir.walk_exprs(s.value)
             if isinstance(e, ir.QuantLoad)]
    assert [e.type.dtype for e in loads] == [dt.f16]
