"""Ill-typed and malformed kernels: each raises the right TilecError at the exact location.

Each case marks the expected error column with '$' (removed before parsing).
"""

from __future__ import annotations

import pytest

import tilec
from tilec.errors import TileNameError, TileShapeError, TileSyntaxError, TileTypeError

HEAD = "def k(a: Tensor[M, K, f16], b: Tensor[K, N, f16], c: Tensor[K, N, f32], bias: Tensor[N, f16],\n" \
       "      out: Tensor[M, N, f16], x: Tensor[M, N, f16], y: Tensor[M, f16], s: f32):\n"
LOOP = "    for m, n in tiles(M, N):\n"

CASES = [
    # (id, body after HEAD, error type, message fragment)
    ("undefined-name", LOOP + "        acc = a[m, 0] * $bb\n", TileNameError, "name 'bb' is not defined"),
    ("tile-over-wrong-dim", LOOP + "        for k in tiles(K):\n            t = b[$n, k]\n", TileShapeError,
     "tile 'n' ranges over N, but axis 0 of 'b' has extent K"),
    ("index-count", LOOP + "        t = $a[m]\n", TileShapeError, "'a' has 2 axes but is indexed with 1"),
    ("dot-dtypes", LOOP + "        for k in tiles(K):\n            t = $a[m, k] @ c[k, n]\n", TileTypeError,
     "'@' needs two operands of one type"),
    ("dot-contracted-axes", LOOP + "        t = $x[m, n] @ x[m, n]\n", TileShapeError, "'@' contracts axis 'n'"),
    ("broadcast", LOOP + "        t = $x[m, n] + y[m]\n", TileShapeError, "shapes do not broadcast"),
    ("reassign-type", LOOP + "        acc = zeros([m, n], f32)\n        $acc = x[m, n]\n", TileTypeError,
     "'acc' is f32[m, n] but is assigned f16[m, n]"),
    ("return", LOOP + "        $return out\n", TileSyntaxError, "'return' is not part of the tile language"),
    ("if", LOOP + "        $if s > 0:\n            pass\n", TileSyntaxError, "'if' is not part of the tile language"),
    ("no-parallel-loop", "    pass\n", TileSyntaxError, "has no parallel tile loop"),
    ("stmt-outside-loop", "    $t = 1\n" + LOOP + "        pass\n", TileSyntaxError, "inside the kernel's parallel"),
    ("two-parallel-loops", LOOP + "        pass\n    $for q in tiles(M):\n        pass\n", TileSyntaxError,
     "exactly one parallel tile loop"),
    ("unknown-dim", "    for m in tiles($Q):\n        pass\n", TileNameError, "tiles() takes dimension names"),
    ("reserved-variable", LOOP + "        $sum = x[m, n]\n", TileNameError, "variable name 'sum' is reserved"),
    ("dunder-variable", LOOP + "        $__import__ = x[m, n]\n", TileNameError, "'__import__' is not allowed"),
    ("unknown-function", LOOP + "        t = $foo(x[m, n])\n", TileSyntaxError, "unknown function 'foo'"),
    ("binary-max", LOOP + "        t = $max(x[m, n], x[m, n])\n", TileSyntaxError, "max(a, b) reduces one tile"),
    ("bad-dtype", LOOP + "        t = x[m, n].to($f99)\n", TileTypeError, "expected a dtype"),
    ("axis-range", LOOP + "        t = sum(x[m, n], axis=$2)\n", TileShapeError, "axis must be an integer literal"),
    ("mean-over-tile", LOOP + "        t = $mean(x[m, n], axis=1)\n", TileShapeError, "mean() averages over a whole"),
    ("store-shape", "    for m in tiles(M):\n        $y[m] = x[m, :]\n", TileShapeError, "cannot store f16[m, :N]"),
    ("and-on-tiles", LOOP + "        t = $(x[m, n] > 0) and (x[m, n] < 1)\n", TileSyntaxError, "'and' does not work"),
    ("chained-compare", LOOP + "        t = $0 < x[m, n] < 1\n", TileSyntaxError, "chained comparisons"),
    ("tile-outside-loop", LOOP + "        for k in tiles(K):\n            pass\n        t = a[m, $k]\n", TileNameError,
     "tile 'k' is used outside its loop"),
    ("loop-local-name", LOOP + "        for k in tiles(K):\n            t = a[m, k]\n        u = $t\n", TileNameError,
     "'t' is not defined here"),
    ("power", LOOP + "        t = $x[m, n] ** 2\n", TileSyntaxError, "'**' is not supported"),
    ("where-condition", LOOP + "        t = where($x[m, n], x[m, n], 0.0)\n", TileTypeError, "boolean condition"),
    ("gather-2d", LOOP + "        t = y[$index(m)[:, None] + index(n)[None, :]]\n", TileShapeError,
     "a gather index is a 1-D integer tile"),
    ("gather-float", LOOP + "        t = y[$x[m, n] * 2.0]\n", TileTypeError, "an index must be an integer"),
    ("scatter", LOOP + "        $y[index(m) + 1] = y[m]\n", TileTypeError, "a scatter"),
    ("softmax-parallel-axis", LOOP + "        t = $softmax(x[m, n], axis=1)\n", TileShapeError,
     "would normalise one tile"),
    ("product-range-after-tiles", "    for m, i in $product(tiles(M), range(N)):\n        pass\n", TileSyntaxError,
     "range() parts come before tiles()"),
    ("product-no-tiles", "    for i in $product(range(M)):\n        pass\n", TileSyntaxError,
     "at least one tiles() part"),
    ("product-range-two-args", "    for i, n in product($range(0, M), tiles(N)):\n        pass\n", TileSyntaxError,
     "range() takes one dimension"),
    ("product-unknown-dim", "    for i, n in product(range($Z), tiles(N)):\n        pass\n", TileNameError,
     "range() takes dimension names"),
    ("grid-point-reassigned", "    for i, n in product(range(M), tiles(N)):\n        $i = 1\n", TileNameError,
     "cannot be reassigned"),
    ("offset-not-int", LOOP + "        t = x[m + $0.5, n]\n", TileTypeError, "a tile offset is a scalar integer"),
    ("tensor-as-value", LOOP + "        t = $x + 1\n", TileTypeError, "'x' is a tensor"),
    ("tile-as-value", LOOP + "        t = $m + 1\n", TileTypeError, "'m' is a tile variable"),
    ("only-colon-slices", LOOP + "        t = x[m, $1:4]\n", TileSyntaxError, "only the whole-axis slice"),
]


def _locate(body: str) -> tuple[str, int, int]:
    text = HEAD + body
    offset = text.index("$")
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return text.replace("$", "", 1), line, col


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_location(case: tuple[str, str, type, str]) -> None:
    _, body, kind, fragment = case
    if "$" not in body:  # errors reported at the kernel's def line
        text, line, col = HEAD + body, 1, 1
    else:
        text, line, col = _locate(body)
    with pytest.raises(kind) as info:
        tilec.compile(text, name="case.tile")
    err = info.value
    assert fragment in err.message
    assert err.span is not None
    assert (err.span.line, err.span.col) == (line, col), str(err)
    rendered = str(err)
    assert rendered.startswith(f"case.tile:{line}:{col}: {kind.__name__}: ")
    source_line = text.splitlines()[line - 1]
    assert f"\n    {source_line}\n    {' ' * (col - 1)}^" in rendered


def test_errors_are_tilec_errors_with_hints() -> None:
    text, _, _ = _locate(CASES[1][1])
    with pytest.raises(tilec.TilecError) as info:
        tilec.compile(text)
    assert info.value.hint and "index axis 0 of 'b' with a tile over K" in info.value.hint
    assert "\nhint: " in str(info.value)


def test_parameter_errors() -> None:
    with pytest.raises(TileTypeError) as info:
        tilec.compile("def k(a, out: Tensor[M, f16]):\n    for m in tiles(M):\n        pass\n")
    assert "parameter 'a' has no type" in info.value.message
    with pytest.raises(TileNameError, match="declared twice"):
        tilec.compile("def k(a: Tensor[M, f16], a: Tensor[M, f16]):\n    for m in tiles(M):\n        pass\n")
    with pytest.raises(TileNameError, match="'__class__' is not allowed"):
        tilec.compile("def k(__class__: Tensor[M, f16]):\n    for m in tiles(M):\n        pass\n")
    with pytest.raises(TileTypeError, match="unknown scalar type 'f99'"):
        tilec.compile("def k(a: Tensor[M, f16], s: f99):\n    for m in tiles(M):\n        pass\n")


def test_valid_generic_kernel_checks_at_definition() -> None:
    module = tilec.compile(
        "def scale(x: Tensor[M, N, T], y: Tensor[M, N, T], s: f32):\n"
        "    for m, n in tiles(M, N):\n"
        "        y[m, n] = x[m, n] * s\n")
    assert module.scale.signature.dtype_vars == ("T",)
    assert module.scale.outputs == {"y"} and module.scale.inputs == {"x"}
