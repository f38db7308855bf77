"""The tile-language parser: ASTs, spans in the user's coordinates, located syntax errors, speed."""

from __future__ import annotations

import ast as pyast
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tilec.errors import Source, Span, TileSyntaxError
from tilec.frontend import ast
from tilec.frontend.parser import parse_function, parse_module

F = TypeVar("F", bound=Callable[..., Any])

# names the decorated kernels below mention; their bodies and annotations are never evaluated
Tensor = M = N = K = T = tiles = exp = zeros = f32 = None

SPEC = """\
# GEMM with a fused epilogue
def gemm_bias_gelu(a: Tensor[M, K, T], b: Tensor[K, N, T], bias: Tensor[N, T],
                   res: Tensor[M, N, T], out: Tensor[M, N, T]):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += a[m, k] @ b[k, n]
        y = gelu(acc + bias[n].to(f32)) + res[m, n]
        out[m, n] = y.to(T)

def softmax(x: Tensor[M, N, T], y: Tensor[M, N, T]):
    for m in tiles(M):
        row = x[m, :].to(f32)
        e = exp(row - max(row, axis=1)[:, None])
        y[m, :] = (e / sum(e, axis=1)[:, None]).to(T)

example gemm_bias_gelu(M=37, N=65, K=70, T=f16):
    out = gelu(a @ b + bias) + res

example rmsnorm(M=37, N=65, T=bf16, eps=1e-6):
    y = x * rsqrt(mean(x * x, axis=1)[:, None] + eps) * w
"""


def parse(text: str, name: str = "t.tile") -> ast.Module:
    return parse_module(Source(name, text))


def where(span: Span) -> tuple[int, int, int, int]:
    return span.line, span.col, span.end_line, span.end_col


def body(stmts: str) -> tuple[ast.Stmt, ...]:
    """The statements of a one-kernel spec whose body is ``stmts`` (indented by 4)."""
    text = "def k(x):\n" + "".join(f"    {line}\n" for line in stmts.splitlines())
    return parse(text).kernels[0].body


def expr(text: str) -> ast.Expr:
    (stmt,) = body(f"r = {text}")
    assert isinstance(stmt, ast.Assign)
    return stmt.value


# ------------------------------------------------------------------ valid specs


def test_spec_parses_into_kernels_and_examples() -> None:
    module = parse(SPEC, "gemm.tile")
    assert [k.name for k in module.kernels] == ["gemm_bias_gelu", "softmax"]
    assert [(e.kernel, [b.name for b in e.bindings]) for e in module.examples] == [
        ("gemm_bias_gelu", ["M", "N", "K", "T"]), ("rmsnorm", ["M", "N", "T", "eps"])]
    gemm = module.kernels[0]
    assert [p.name for p in gemm.params] == ["a", "b", "bias", "res", "out"]
    ann = gemm.params[0].annotation
    assert isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name) and ann.value.id == "Tensor"
    assert [i.id for i in ann.indices if isinstance(i, ast.Name)] == ["M", "K", "T"]
    assert where(gemm.name_span) == (2, 5, 2, 19)
    assert where(gemm.span) == (2, 1, 3, 64)  # the whole (two-line) def header
    assert where(gemm.params[3].span) == (3, 20, 3, 40)

    (loop,) = gemm.body
    assert isinstance(loop, ast.For) and [t.id for t in loop.targets] == ["m", "n"]
    assert where(loop.span) == (4, 5, 4, 29)
    assert isinstance(loop.iter, ast.Call) and isinstance(loop.iter.func, ast.Name) and loop.iter.func.id == "tiles"
    init, inner, assign_y, store = loop.body
    assert isinstance(init, ast.Assign) and isinstance(init.value, ast.Call)
    assert isinstance(init.value.args[0], ast.ListExpr)
    assert isinstance(inner, ast.For)
    (aug,) = inner.body
    assert isinstance(aug, ast.AugAssign) and aug.op == "+" and where(aug.span) == (7, 13, 7, 37)
    assert isinstance(aug.value, ast.BinOp) and aug.value.op == "@" and where(aug.value.span) == (7, 20, 7, 37)
    assert isinstance(aug.value.left, ast.Subscript) and where(aug.value.left.span) == (7, 20, 7, 27)

    assert isinstance(assign_y, ast.Assign) and isinstance(assign_y.value, ast.BinOp)
    gelu = assign_y.value.left
    assert isinstance(gelu, ast.Call) and isinstance(gelu.args[0], ast.BinOp)
    to_call = gelu.args[0].right
    assert isinstance(to_call, ast.Call) and isinstance(to_call.func, ast.Attribute)
    assert to_call.func.attr == "to" and where(to_call.func.attr_span) == (8, 32, 8, 34)
    assert where(to_call.func.span) == (8, 24, 8, 34)
    assert isinstance(store, ast.Assign) and isinstance(store.target, ast.Subscript)


def test_softmax_indices_slices_none_and_keywords() -> None:
    softmax = parse(SPEC).kernels[1]
    (loop,) = softmax.body
    assert isinstance(loop, ast.For)
    row, e, store = loop.body
    assert isinstance(row, ast.Assign) and isinstance(row.value, ast.Call)
    to = row.value.func
    assert isinstance(to, ast.Attribute) and isinstance(to.value, ast.Subscript)
    m, colon = to.value.indices
    assert isinstance(m, ast.Name) and isinstance(colon, ast.Slice)
    assert (colon.lower, colon.upper, colon.step) == (None, None, None) and where(colon.span) == (13, 20, 13, 21)
    assert isinstance(e, ast.Assign) and isinstance(e.value, ast.Call)
    diff = e.value.args[0]
    assert isinstance(diff, ast.BinOp) and diff.op == "-" and isinstance(diff.right, ast.Subscript)
    reduced, newaxis = diff.right.indices
    assert isinstance(reduced, ast.Slice) and isinstance(newaxis, ast.NoneLit) and newaxis.span.col == 43
    call = diff.right.value
    assert isinstance(call, ast.Call) and [k.name for k in call.keywords] == ["axis"]
    assert isinstance(call.keywords[0].value, ast.Int) and call.keywords[0].value.value == 1
    # a parenthesised operand: the method call's span starts at the '('
    assert isinstance(store, ast.Assign) and isinstance(store.value, ast.Call)
    assert where(store.value.span) == (15, 19, 15, 54)
    assert isinstance(store.value.func, ast.Attribute) and isinstance(store.value.func.value, ast.BinOp)
    assert where(store.value.func.value.span) == (15, 20, 15, 47)


def test_example_bindings_and_body() -> None:
    rms = parse(SPEC).examples[1]
    assert where(rms.span)[:2] == (20, 1) and where(rms.kernel_span) == (20, 9, 20, 16)
    eps = rms.bindings[3]
    assert isinstance(eps.value, ast.Float) and eps.value.value == 1e-6 and where(eps.span) == (20, 37, 20, 45)
    (stmt,) = rms.body
    assert isinstance(stmt, ast.Assign) and isinstance(stmt.target, ast.Name) and stmt.target.id == "y"


def test_empty_and_comment_only_specs() -> None:
    assert parse("") == ast.Module((), ())
    assert parse("# nothing\n\n   # at all\n") == ast.Module((), ())
    assert parse('"""A module docstring."""\n').kernels == ()


def test_params_with_and_without_annotations() -> None:
    (kernel,) = parse("def k(a, b: f32, c: Tensor[M, f16],):\n    pass\n").kernels
    assert [(p.name, type(p.annotation).__name__) for p in kernel.params] == [
        ("a", "NoneType"), ("b", "Name"), ("c", "Subscript")]
    assert parse("def k():\n    pass\n").kernels[0].params == ()


@pytest.mark.parametrize("text", [
    "a + b * c", "a - b - c", "a * b / c // d % e @ f", "-a ** b", "a ** -b ** c", "~a + -b",
    "not a == b and c or d", "a < b <= c != d", "a in b", "a not in b", "a is not b", "a is b < c",
    "a | b ^ c & d << e >> f + g", "not not a", "a and not b", "(a + b) * c", "f(a, b=1)(c)[d].e",
    "x[m, :][:, None]", "- (a + b)", "a or b and c", "a @ b @ c", "2 ** 3 ** 4", "+a - ~b",
])
def test_operator_precedence_and_spans_match_python(text: str) -> None:
    assert grouping(text) == python_grouping(text)


def test_literals() -> None:
    ints = [expr(t) for t in ("0", "42", "0x1F", "0b101", "0o17", "1_000_000")]
    assert [(type(i).__name__, getattr(i, "value", None)) for i in ints] == [
        ("Int", 0), ("Int", 42), ("Int", 31), ("Int", 5), ("Int", 15), ("Int", 1000000)]
    floats = [expr(t) for t in ("1.0", "1e-6", ".5", "3.", "2.5E+3", "1_0.0_1")]
    assert [(type(f).__name__, getattr(f, "value", None)) for f in floats] == [
        ("Float", 1.0), ("Float", 1e-6), ("Float", 0.5), ("Float", 3.0), ("Float", 2500.0), ("Float", 10.01)]
    assert expr("True") == ast.Bool(True, expr("True").span) and isinstance(expr("False"), ast.Bool)
    assert isinstance(expr("None"), ast.NoneLit)
    sequences = [expr(t) for t in ("()", "(a,)", "a, b", "(a, b)", "[a, b,]", "[]")]
    assert [(type(s).__name__, len(s.elts)) for s in sequences if isinstance(s, (ast.TupleExpr, ast.ListExpr))] == [
        ("TupleExpr", 0), ("TupleExpr", 1), ("TupleExpr", 2), ("TupleExpr", 2), ("ListExpr", 2), ("ListExpr", 0)]
    assert where(sequences[3].span) == (2, 9, 2, 15)


@pytest.mark.parametrize(("text", "what"), [
    ("'s'", "string literal"), ('f"{x}" "y"', "string literal"), ("lambda x: x", "lambda"),
    ("[i for i in x]", "list comprehension"), ("(i for i in x)", "generator expression"),
    ("a if c else b", "conditional expression 'a if c else b'"), ("{1: 2}", "dict or set literal"),
    ("{i for i in x}", "dict or set comprehension"), ("1j", "complex literal"), ("x[...]", "'...'"),
])
def test_unsupported_expressions_are_kept_with_a_span(text: str, what: str) -> None:
    node = expr(text)
    found = node.indices[0] if isinstance(node, ast.Subscript) else node
    assert isinstance(found, ast.Unsupported) and found.what == what
    assert found.span.line == 2 and found.span.col == (11 if text == "x[...]" else 9)


def test_subscripts_are_tuples_of_indices() -> None:
    one = expr("x[i]")
    assert isinstance(one, ast.Subscript) and len(one.indices) == 1
    slices = expr("x[1:2:3, ::2, :, a:, :b, 1:2:]")
    assert isinstance(slices, ast.Subscript)
    parts = [(type(s.lower).__name__, type(s.upper).__name__, type(s.step).__name__)
             for s in slices.indices if isinstance(s, ast.Slice)]
    assert parts == [("Int", "Int", "Int"), ("NoneType", "NoneType", "Int"), ("NoneType",) * 3,
                     ("Name", "NoneType", "NoneType"), ("NoneType", "Name", "NoneType"), ("Int", "Int", "NoneType")]


def test_statements() -> None:
    stmts = body("x = 1; pass\nx[i, j] = 2\nf(x)\n...\nfor a, in t:\n    pass")
    assert [type(s).__name__ for s in stmts] == ["Assign", "Pass", "Assign", "ExprStmt", "Pass", "For"]
    ops = ["+", "-", "*", "/", "//", "%", "@", "&", "|", "^", "<<", ">>", "**"]
    augs = body("\n".join(f"x {op}= y" for op in ops))
    assert [s.op for s in augs if isinstance(s, ast.AugAssign)] == ops


def test_unsupported_statements() -> None:
    text = ("return x\nif a:\n    pass\nelif b:\n    pass\nelse:\n    pass\nwhile a:\n    pass\nimport os\n"
            "from a.b import c as d\nwith a as b:\n    pass\ndef f():\n    pass\nbreak\ncontinue\ndel x\n"
            "assert x, 'm'\nglobal x\nnonlocal x\nraise E from e\ntry:\n    pass\nexcept E as e:\n    pass\n"
            "finally:\n    pass\nclass C(B):\n    pass\nyield x")
    stmts = body(text)
    assert all(isinstance(s, ast.UnsupportedStmt) for s in stmts)
    assert [s.what for s in stmts if isinstance(s, ast.UnsupportedStmt)] == [
        "return", "if", "while", "import", "import", "with", "def", "break", "continue", "del", "assert",
        "global", "nonlocal", "raise", "try", "class", "yield"]
    assert where(stmts[0].span) == (2, 5, 2, 13) and where(stmts[1].span) == (3, 5, 3, 10)


def test_docstring_is_dropped() -> None:
    (stmt,) = body('"""Doc."""\nx = 1')
    assert isinstance(stmt, ast.Assign) and stmt.span.line == 3
    (second,) = body('"""Doc."""\n"""Not a docstring."""')
    assert isinstance(second, ast.ExprStmt) and isinstance(second.value, ast.Unsupported)


# ------------------------------------------------------------- decorator form


def fake_kernel(**options: object) -> Callable[[F], F]:
    """A stand-in for ``@tilec.kernel(...)``."""
    return lambda fn: fn


def test_decorated_function_spans_point_into_this_file() -> None:
    @fake_kernel(schedule={"m": 64,
                           "n": 64},
                 note=lambda: "def looks_like_a_def(): pass")
    def softmax_kernel(x: Tensor[M, N, T], y: Tensor[M, N, T]):
        """Row softmax."""
        for m in tiles(M):
            y[m, :] = exp(x[m, :])

    module, source = parse_function(softmax_kernel)
    lines = Path(__file__).read_text().splitlines()
    def_line = next(i for i, line in enumerate(lines, 1) if "def softmax_kernel(" in line)
    store_line = next(i for i, line in enumerate(lines, 1) if "y[m, :] = exp(x[m, :])" in line)
    assert source.name == __file__ and source.col_offset == 4 and source.first_line == def_line - 3
    (kernel,) = module.kernels
    assert kernel.name == "softmax_kernel"
    assert where(kernel.name_span) == (def_line, 9, def_line, 23)
    assert kernel.params[1].span.col == lines[def_line - 1].index("y: Tensor") + 1
    (loop,) = kernel.body  # the docstring is gone
    assert isinstance(loop, ast.For) and loop.span.line == def_line + 2 and loop.span.col == 9
    (store,) = loop.body
    assert isinstance(store, ast.Assign) and store.span.line == store_line
    assert store.span.col == lines[store_line - 1].index("y[m") + 1 == 13
    assert source.line(store_line) == lines[store_line - 1]


def test_decorated_function_errors_point_into_this_file() -> None:
    @fake_kernel(
        schedule={"m": 64})
    def chained(x: Tensor[M, T], y: Tensor[M, T]):
        for m in tiles(M):
            y[m] = z = x[m]  # noqa: F841

    with pytest.raises(TileSyntaxError) as info:
        parse_function(chained)
    lines = Path(__file__).read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "y[m] = z = x[m]" in text)
    col = lines[line - 1].index("= x[m]") + 1
    assert (info.value.span.line, info.value.span.col) == (line, col)  # type: ignore[union-attr]
    assert f"{__file__}:{line}:{col}: TileSyntaxError" in str(info.value)
    assert f"\n    {lines[line - 1]}\n    {' ' * (col - 1)}^" in str(info.value)


def test_function_without_source_is_a_syntax_error() -> None:
    namespace: dict[str, object] = {}
    exec("def k(x):\n    pass\n", namespace)
    with pytest.raises(TileSyntaxError, match="cannot read the source code"):
        parse_function(namespace["k"])  # type: ignore[arg-type]
    with pytest.raises(TileSyntaxError, match="cannot read the source code"):
        parse_function(len)
    with pytest.raises(TileSyntaxError, match="not defined with 'def'"):
        parse_function(lambda x: x)


# ----------------------------------------------------------- malformed specs

HEAD = "def k(x: Tensor[M, N, T], y: Tensor[M, N, T]):\n"
LOOP = "    for m in tiles(M):\n"

MALFORMED = [
    # (id, spec text, line, col, fragment of the message or hint)
    ("for-without-colon", HEAD + "    for m in tiles(M)\n        y[m] = x[m]\n", 2, 22, "expected ':' after the for"),
    ("unclosed-paren", HEAD + LOOP + "        y[m] = exp(x[m]\n        z = 1\n", 4, 9,
     "'(' opened at line 3 col 19 is never closed"),
    ("unclosed-bracket-at-eof", HEAD + "    y[m] = x[m, n", 2, 18, "'[' opened at line 2 col 13 is never closed"),
    ("unexpected-indent", HEAD + "    a = 1\n      b = 2\n", 3, 7, "unexpected indent"),
    ("unexpected-dedent", HEAD + LOOP + "        a = 1\n      b = 2\n", 4, 7, "column 1, 5 or 9"),
    ("missing-block", HEAD + LOOP + "    y[m] = x[m]\n", 3, 5, "expected an indented block"),
    ("indented-first-line", "  def k(x):\n    pass\n", 1, 3, "unexpected indent"),
    ("stray-operator", HEAD + "    a = * b\n", 2, 9, "expected an expression after '='"),
    ("dangling-operator", HEAD + "    x = 1 +\n", 2, 12, "expected an expression after '+'"),
    ("def-without-parens", "def k:\n    pass\n", 1, 6, "expected '(' and the parameter list"),
    ("chained-assignment", HEAD + "    a = b = c\n", 2, 11, "chained assignment"),
    ("tuple-unpacking", HEAD + "    a, b = c\n", 2, 5, "tuple-unpacking assignment"),
    ("star-args", "def k(x, *args):\n    pass\n", 1, 10, "'*' parameters are not supported"),
    ("kwargs", "def k(x, **kw):\n    pass\n", 1, 10, "'**' parameters are not supported"),
    ("default-value", "def k(x: f32 = 1.0):\n    pass\n", 1, 16, "has a default value"),
    ("tabs-after-spaces", HEAD + "    a = 1\n\tb = 2\n", 3, 1, "tabs and spaces mixed in indentation"),
    ("tab-and-space-in-one-line", "def k(x):\n\t a = 1\n", 2, 2, "tabs and spaces mixed"),
    ("non-ascii-identifier", HEAD + "    café = x\n", 2, 5, "non-ASCII identifier 'café'"),
    ("dollar", HEAD + "    a = $b\n", 2, 9, "'$' is not part of the tile language"),
    ("unmatched-close", HEAD + "    a = f(x))\n", 2, 13, "unmatched ')'"),
    ("mismatched-close", HEAD + "    a = f(x]\n", 2, 12, "closed by ')'"),
    ("missing-comma", HEAD + "    a = f(x y)\n", 2, 13, "expected ',' or ')'"),
    ("unterminated-string", HEAD + "    a = 'abc\n", 2, 9, "unterminated string literal"),
    ("not-after-plus", HEAD + "    a = b + not c\n", 2, 13, "without parentheses"),
    ("statement-at-top-level", "x = 1\n", 1, 1, "only 'def' kernels and 'example' blocks"),
    ("misspelt-example", "exmaple k(M=1):\n    pass\n", 1, 1, "expected 'def' or 'example'"),
    ("positional-example-binding", "example k(37):\n    pass\n", 1, 11, "by name"),
    ("decorator-in-tile-file", "@kernel\ndef k(x):\n    pass\n", 1, 1, "no decorators"),
    ("for-target-not-a-name", HEAD + "    for x[0] in tiles(M):\n        pass\n", 2, 9, "plain name"),
    ("reserved-word", HEAD + "    await = 1\n", 2, 5, "reserved word"),
    ("star-call-argument", HEAD + "    a = f(*x)\n", 2, 11, "argument unpacking"),
    ("return-annotation", "def k(x) -> f32:\n    pass\n", 1, 13, "no return annotation"),
    ("else-after-for", HEAD + LOOP + "        pass\n    else:\n        pass\n", 4, 5, "cannot start with 'else'"),
    ("line-separator", HEAD + "    a = 1\u2028\n", 2, 10, "U+2028"),
]


@pytest.mark.parametrize(("text", "line", "col", "fragment"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_spec_reports_exact_location(text: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(TileSyntaxError) as info:
        parse(text, "bad.tile")
    err = info.value
    assert err.span is not None and (err.span.line, err.span.col) == (line, col)
    rendered = str(err)
    source_line = text.splitlines()[line - 1]
    assert rendered.startswith(f"bad.tile:{line}:{col}: TileSyntaxError: ")
    assert f"\n    {source_line}\n    {' ' * (col - 1)}^" in rendered
    assert fragment in rendered and "\nhint: " in rendered
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)  # no chained traceback
    for internal in ("Expected one of", "RPAR", "_NEWLINE", "__ANON", "Token(", "lark"):
        assert internal not in rendered


def test_errors_in_offset_sources_use_user_coordinates() -> None:
    source = Source("k.py", "\ndef k(x):\n    a = b = c\n", first_line=10, col_offset=8)
    with pytest.raises(TileSyntaxError) as info:
        parse_module(source)
    assert info.value.span is not None and (info.value.span.line, info.value.span.col) == (12, 19)
    assert "k.py:12:19:" in str(info.value) and f"\n    {' ' * 12}a = b = c\n" in str(info.value)


# ------------------------------------------------------------- robustness


def assert_parses_or_syntax_error(text: str) -> None:
    try:
        parse(text)
    except TileSyntaxError as err:
        assert err.span is not None, str(err)  # a located error, not the internal-error fallback
        assert 1 <= err.span.line <= text.count("\n") + 2 and err.span.col >= 1
        str(err)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_only_raises_tile_syntax_error(text: str) -> None:
    assert_parses_or_syntax_error(text)


SPEC_CHARS = [*"()[]{}:,.=+-*/@%<>!~&|^ \t\n#'\"\\$é0123456789_abcxyzMNT", "def ", "for ", " in ", "example ", "    ",
              "\n    ", "not ", "None", "**", "//", "+=", "->", "...", "lambda "]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_spec_only_raises_tile_syntax_error(data: st.DataObject) -> None:
    text = SPEC
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:pos] + text[pos + data.draw(st.integers(1, 3)):]
        else:
            text = text[:pos] + data.draw(st.sampled_from(SPEC_CHARS)) + text[pos:]
    assert_parses_or_syntax_error(text)


OPERANDS = st.sampled_from(["a", "b", "1", "2.5", "f(x)", "x[i, :]", "(a + b)", "c.d", "a ** b", "-a ** -b"])
BINARY = st.sampled_from(["or", "and", "<", ">", "==", ">=", "<=", "!=", "in", "not in", "is", "is not", "|", "^",
                          "&", "<<", ">>", "+", "-", "*", "/", "//", "%", "@"])
PREFIX = st.lists(st.sampled_from(["not ", "-", "+", "~"]), max_size=2).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(PREFIX, OPERANDS), min_size=1, max_size=6), st.lists(BINARY, min_size=5, max_size=5))
def test_operator_chains_group_like_python(operands: list[tuple[str, str]], ops: list[str]) -> None:
    text = "".join((f" {ops[i - 1]} " if i else "") + pre + atom for i, (pre, atom) in enumerate(operands))
    try:
        expected = python_grouping(text)
    except SyntaxError:
        with pytest.raises(TileSyntaxError):
            expr(text)
        return
    assert grouping(text) == expected


KERNEL_20_LINES = """\
def layernorm_gemm(x: Tensor[M, K, T], w: Tensor[K, N, T], gamma: Tensor[K, T], beta: Tensor[K, T],
                   bias: Tensor[N, T], out: Tensor[M, N, T], eps: f32):
    \"\"\"LayerNorm over K, then a GEMM with a bias and GELU epilogue.\"\"\"
    for m, n in tiles(M, N):
        # statistics of the row block
        s = zeros([m], f32)
        q = zeros([m], f32)
        for k in tiles(K):
            v = x[m, k].to(f32)
            s += sum(v, axis=1)
            q += sum(v * v, axis=1)
        mean = s / K
        rstd = rsqrt(q / K - mean * mean + eps)
        acc = zeros([m, n], f32)
        for k in tiles(K):
            h = (x[m, k].to(f32) - mean[:, None]) * rstd[:, None]
            h = h * gamma[k].to(f32) + beta[k].to(f32)
            acc += h.to(T) @ w[k, n]
        y = gelu(acc + bias[n].to(f32))
        out[m, n] = y.to(T)
"""


def test_parsing_a_20_line_kernel_takes_well_under_10_ms() -> None:
    assert len(KERNEL_20_LINES.splitlines()) == 20
    source = Source("speed.tile", KERNEL_20_LINES)
    assert len(parse_module(source).kernels[0].body) == 1
    for _ in range(5):
        parse_module(source)
    times = []
    for _ in range(25):  # CPU time, so that other processes loading the machine do not count
        start = time.process_time()
        parse_module(source)
        times.append(time.process_time() - start)
    assert statistics.median(times) < 0.010


# ----------------------------------------------------------------- helpers

_PY_OPS = {"Add": "+", "Sub": "-", "Mult": "*", "Div": "/", "FloorDiv": "//", "Mod": "%", "MatMult": "@",
           "BitAnd": "&", "BitOr": "|", "BitXor": "^", "LShift": "<<", "RShift": ">>", "Pow": "**", "USub": "-",
           "UAdd": "+", "Invert": "~", "Not": "not", "And": "and", "Or": "or", "Eq": "==", "NotEq": "!=",
           "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "Is": "is", "IsNot": "is not", "In": "in",
           "NotIn": "not in"}


def grouping(text: str) -> str:
    """How the tile parser groups the operators of ``text``: an s-expression whose leaves are
    the operands' source text, cut out by their spans (``text`` is parsed as ``    r = text``)."""
    def walk(node: ast.Expr) -> str:
        if isinstance(node, ast.BinOp):
            return f"({node.op} {walk(node.left)} {walk(node.right)})"
        if isinstance(node, ast.UnaryOp):
            return f"({node.op} {walk(node.operand)})"
        if isinstance(node, ast.Compare):
            return f"({' '.join(node.ops)} {' '.join(map(walk, node.operands))})"
        assert node.span.line == node.span.end_line == 2
        return text[node.span.col - 9:node.span.end_col - 9]
    return walk(expr(text))


def python_grouping(text: str) -> str:
    """The same s-expression from Python's own parser (``and``/``or`` chains folded to the left)."""
    def walk(node: pyast.expr) -> str:
        if isinstance(node, pyast.BinOp):
            return f"({_PY_OPS[type(node.op).__name__]} {walk(node.left)} {walk(node.right)})"
        if isinstance(node, pyast.UnaryOp):
            return f"({_PY_OPS[type(node.op).__name__]} {walk(node.operand)})"
        if isinstance(node, pyast.BoolOp):
            folded = walk(node.values[0])
            for value in node.values[1:]:
                folded = f"({_PY_OPS[type(node.op).__name__]} {folded} {walk(value)})"
            return folded
        if isinstance(node, pyast.Compare):
            ops = " ".join(_PY_OPS[type(op).__name__] for op in node.ops)
            return f"({ops} {' '.join(map(walk, [node.left, *node.comparators]))})"
        return pyast.get_source_segment(text, node) or ""
    return walk(pyast.parse(text, mode="eval").body)
