"""online_softmax and key_range: before/after on the attention spec, and every misuse reported at its line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import tilec
import tilec.ops_attention
from tilec.errors import TileTypeError
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.key_range import key_range
from tilec.passes.online_softmax import online_softmax
from tilec.passes.split_k import split_blocker, split_k
from tilec.passes.tiling import tile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BLOCKS = {"m": 16, "n": 16}


def checked(text: str | Path, name: str = "attention") -> ir.Kernel:
    return getattr(tilec.compile(text), name).ir()


def tiled(kernel: ir.Kernel) -> ir.Kernel:
    return tile(kernel, Schedule(blocks=BLOCKS), {"D": 64})


def loop_of(k: ir.Kernel) -> ir.SeqLoop:
    return next(s for s in k.body.body if isinstance(s, ir.SeqLoop))


def softmaxes(k: ir.Kernel) -> list[ir.Softmax]:
    return [e for s in ir.walk_stmts(k.body.body) if isinstance(s, (ir.Assign, ir.Store))
            for e in ir.walk_exprs(s.value) if isinstance(e, ir.Softmax)]


def test_the_checker_keeps_softmax_over_the_key_loop_as_one_node() -> None:
    before = checked(EXAMPLES / "attention.tile")
    assert [s.fn for s in softmaxes(before)] == ["softmax", "logsumexp"]
    assert loop_of(before).softmax_state is None


def test_softmax_over_the_loop_becomes_running_max_sum_and_rescaled_accumulator() -> None:
    after = online_softmax(tiled(checked(EXAMPLES / "attention.tile")))
    assert softmaxes(after) == []  # nothing reaches code generation
    loop = loop_of(after)
    at = after.body.body.index(loop)
    names = [s.name for s in after.body.body[:at] if isinstance(s, ir.Assign)]
    assert names[-2:] == ["row_max", "row_sum"]  # the running state starts before the loop...
    init = {s.name: s.value for s in after.body.body if isinstance(s, ir.Assign)}
    assert isinstance(init["row_max"], ir.Full) and init["row_max"].value == -math.inf
    assert isinstance(init["row_sum"], ir.Full) and init["row_sum"].value == 0
    assert loop.softmax_state == ("row_max", "row_sum") and loop.softmax_scores == "scores"
    updates = {s.name: s.value for s in loop.body if isinstance(s, ir.Assign)}
    # ...the accumulator is rescaled by exp(old max - new max) and takes the tile's probabilities
    acc = updates["acc"]
    assert isinstance(acc, ir.Binary) and acc.op == "+" and isinstance(acc.right, ir.Dot)
    assert isinstance(acc.left, ir.Binary) and acc.left.op == "*"
    assert "rescale" in updates and "probs" in updates
    assert "row_lse" not in updates  # the log-sum-exp is read off the state after the loop
    tail = {s.name: s.value for s in after.body.body[at + 1:] if isinstance(s, ir.Assign)}
    assert set(tail) == {"inv_row_sum", "acc", "row_lse"}
    lse = tail["row_lse"]
    # (m + log2(l)) * ln 2, the state being kept in base 2: -inf + log2(0) for a row with no key
    assert isinstance(lse, ir.Binary) and lse.op == "*"
    assert isinstance(lse.left, ir.Binary) and lse.left.op == "+"


def test_the_rewrite_keeps_the_spec_lines_for_comments() -> None:
    source = tilec.compile(EXAMPLES / "attention.tile").attention
    import torch

    q = torch.zeros(1, 2, 20, 64, dtype=torch.float16)
    k = torch.zeros(1, 2, 30, 64, dtype=torch.float16)
    code = source.triton_code(q, k, k, q.clone(), torch.zeros(1, 2, 20), 0.1, schedule=BLOCKS)
    assert "tl.exp2(row_max - row_max_used)" in code  # the rescale, named, in base 2
    assert "# attention.tile:19  acc += softmax(s, axis=1).to(T) @ v[b, kv_head, n, :]" in code
    loops = code.count("for tile_n")  # the interior key tiles' loop and the masked tail's (interior_tiles)
    assert loops == 2
    assert code.count("attention.tile:19") == loops  # in each loop the rewritten statements share one comment
    assert all("softmax" not in part.split("\n")[1] for part in code.split("# attention.tile:19")[1:])


def test_accumulators_sharing_one_softmax_share_its_state() -> None:
    spec = """
def two(q: Tensor[M, D, f16], k: Tensor[N, D, f16], v0: Tensor[N, D, f16], v1: Tensor[N, D, f16],
        o0: Tensor[M, D, f16], o1: Tensor[M, D, f16]):
    for m in tiles(M):
        a0 = zeros([m, D], f32)
        a1 = zeros([m, D], f32)
        for n in tiles(N):
            s = q[m, :] @ k[n, :].T
            a0 += softmax(s, axis=1).to(f16) @ v0[n, :]
            a1 += softmax(s, axis=1).to(f16) @ v1[n, :]
        o0[m, :] = a0.to(f16)
        o1[m, :] = a1.to(f16)
"""
    after = online_softmax(tiled(checked(spec, "two")))
    loop = loop_of(after)
    assert loop.softmax_state == ("row_max", "row_sum")
    assert sum(1 for s in loop.body if isinstance(s, ir.Assign) and s.name == "row_sum") == 1


@pytest.mark.parametrize("body,fragment,line", [
    ("            t = softmax(s, axis=1)\n            acc += t.to(f16) @ v[n, :]\n", "no online form here", 6),
    ("            acc += softmax(s, axis=1).to(f16) @ v[n, :]\n            r = logsumexp(s, axis=1)\n",
     "known only after the loop", 7),
    ("            o[m, :] = (softmax(s, axis=1).to(f16) @ v[n, :]).to(f16)\n", "no online form here", 6),
])
def test_uses_without_an_online_form_are_reported_at_their_line(body: str, fragment: str, line: int) -> None:
    spec = ("def bad(q: Tensor[M, D, f16], k: Tensor[N, D, f16], v: Tensor[N, D, f16], o: Tensor[M, D, f16]):\n"
            "    for m in tiles(M):\n"
            "        acc = zeros([m, D], f32)\n"
            "        for n in tiles(N):\n"
            "            s = q[m, :] @ k[n, :].T\n" + body +
            "        o[m, :] = acc.to(f16)\n")
    with pytest.raises(TileTypeError, match=fragment) as info:
        online_softmax(tiled(checked(spec, "bad")))
    assert info.value.span is not None and info.value.span.line == line


def test_a_softmax_loop_splits_and_merges_its_state() -> None:
    before = checked(EXAMPLES / "attention.tile")
    assert split_blocker(before) is None  # the log-sum-exp too: it is part of the online state
    after = split_k(online_softmax(tiled(before)), 4)
    loop = loop_of(after)
    assert loop.split == 4 and set(loop.partials) == {"acc", "row_max", "row_sum"}


def test_key_range_reads_the_causal_band() -> None:
    k = key_range(online_softmax(tiled(checked(EXAMPLES / "attention.tile"))))
    rows, lower, upper = loop_of(k).key_range or ("", None, None)
    assert rows == "m" and lower is None
    assert isinstance(upper, ir.Binary) and upper.op == "-"  # N - M: keys <= row + N - M
    window = tilec.ops_attention.Variant(causal=True, window=True).spec()
    kw = key_range(online_softmax(tiled(checked(window))))
    _, lower, upper = loop_of(kw).key_range or ("", None, None)
    assert lower is not None and upper is not None


def test_key_range_leaves_unbanded_and_split_loops_alone() -> None:
    plain = tilec.ops_attention.Variant().spec()
    assert loop_of(key_range(online_softmax(tiled(checked(plain))))).key_range is None
    split = split_k(online_softmax(tiled(checked(EXAMPLES / "attention.tile"))), 2)
    assert loop_of(key_range(split)).key_range is None


def test_an_interpreter_without_computed_loop_bounds_walks_the_same_tiles_by_a_guard(monkeypatch) -> None:
    import torch

    import tilec.runtime.kernel as kernel_module
    from tilec.runtime.interpreter import loop_bounds_must_be_ints

    torch.manual_seed(3)
    q = torch.randn(1, 2, 21, 64, dtype=torch.float16)
    k, v = torch.randn(1, 2, 35, 64, dtype=torch.float16), torch.randn(1, 2, 35, 64, dtype=torch.float16)

    def run(guarded: bool) -> tuple[str, torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(kernel_module, "_interpreter_needs_int_bounds", lambda target: guarded)
        spec = tilec.compile(EXAMPLES.joinpath("attention.tile").read_text()).attention  # a fresh kernel cache
        o, lse = torch.full_like(q, math.nan), torch.full((1, 2, 21), math.nan)
        code = spec.triton_code(q, k, v, o, lse, 0.125, target="cpu", schedule=BLOCKS)
        spec(q, k, v, o, lse, 0.125, schedule=BLOCKS)
        return code, o, lse

    guarded, o_guarded, lse_guarded = run(True)
    assert "for tile_n in range(0, num_tiles_n):" in guarded
    assert "if (tile_n >= 0) & (tile_n < interior_end_n):" in guarded  # the interior tiles
    assert "if (tile_n_1 >= interior_end_n) & (tile_n_1 < end_tile_n):" in guarded  # the masked tail
    s = (q.double() @ k.double().transpose(-1, -2)) * 0.125
    s = s.masked_fill(torch.arange(35)[None, :] > torch.arange(21)[:, None] + 14, -math.inf)
    assert (o_guarded.double() - torch.softmax(s, -1) @ v.double()).abs().max() < 2e-3
    assert (lse_guarded.double() - torch.logsumexp(s, -1)).abs().max() < 1e-4
    if not loop_bounds_must_be_ints():  # Triton 3.9: the computed bounds run too, and agree bit for bit
        bounded, o_bounded, lse_bounded = run(False)
        assert "for tile_n in range(0, interior_end_n):" in bounded
        assert "for tile_n_1 in range(interior_end_n, end_tile_n):" in bounded
        assert torch.equal(o_bounded, o_guarded) and torch.equal(lse_bounded, lse_guarded)


def test_base2_folds_log2e_into_the_scale_only_where_the_scores_can_move() -> None:
    from tilec.passes.online_softmax import LOG2E

    def body(spec: str | Path) -> dict[str, list[ir.Expr]]:
        out: dict[str, list[ir.Expr]] = {}
        for s in loop_of(online_softmax(tiled(checked(spec)))).body:
            if isinstance(s, ir.Assign):
                out.setdefault(s.name, []).append(s.value)
        return out

    causal = body(EXAMPLES / "attention.tile")  # s = dot * scale; s = where(visible, s, -inf)
    assert "s" not in causal  # substituted into the scores, its statements gone
    scores = causal["scores"][0]
    assert isinstance(scores, ir.Where) and isinstance(scores.then, ir.Binary) and isinstance(scores.then.left, ir.Dot)
    folded = scores.then.right  # scale * log2(e): one scalar, one multiply per score
    assert isinstance(folded, ir.Binary) and isinstance(folded.right, ir.Const) and folded.right.value == LOG2E
    # s = dot * scale; s = s + bias: the second reads the first, so moving it would read `s` too late
    biased = body(tilec.ops_attention.Variant(bias=True).spec())
    assert len(biased["s"]) == 2
    scores = biased["scores"][0]
    assert isinstance(scores, ir.Binary) and isinstance(scores.left, ir.Var) and scores.left.name == "s"
    assert isinstance(scores.right, ir.Const) and scores.right.value == LOG2E


def test_a_positive_scale_goes_after_the_row_max() -> None:
    """Scores ``x * c`` with c > 0 known (the launch's scale): max(x * c) = max(x) * c, and exp2(x * c - m) is
    one fma per score.  Without the fact (the scale may be negative or zero) the multiply stays first."""
    def update(positive: frozenset[str]) -> dict[str, ir.Expr]:
        loop = loop_of(online_softmax(tiled(checked(EXAMPLES / "attention.tile")), positive))
        return {s.name: s.value for s in loop.body if isinstance(s, ir.Assign)}

    known = update(frozenset({"scale"}))
    scores = known["scores"]
    assert isinstance(scores, ir.Where) and isinstance(scores.then, ir.Dot)  # the raw product, masked
    tile_max = known["row_max_new"]
    assert isinstance(tile_max, ir.Math) and tile_max.fn == "maximum"
    scaled = tile_max.args[1]
    assert isinstance(scaled, ir.Binary) and scaled.op == "*" and isinstance(scaled.left, ir.Reduce)
    probs = known["probs"]
    assert isinstance(probs, ir.Math) and isinstance(probs.args[0], ir.Math) and probs.args[0].fn == "fma"
    unknown = update(frozenset())
    scores = unknown["scores"]
    assert isinstance(scores, ir.Where) and isinstance(scores.then, ir.Binary)  # dot * (scale * log2 e)
    probs = unknown["probs"]
    assert isinstance(probs, ir.Math) and isinstance(probs.args[0], ir.Binary) and probs.args[0].op == "-"


def test_only_kernels_with_a_key_loop_softmax_specialise_on_a_scalars_sign() -> None:
    """The sign of a float scalar is keyed only where passes/online_softmax can use it: elsewhere a scalar
    changing sign (rmsnorm's eps, a GEMM's alpha) must not compile the kernel twice."""
    attention = tilec.compile(EXAMPLES / "attention.tile").attention
    rmsnorm = tilec.compile(EXAMPLES / "rmsnorm.tile").rmsnorm
    assert attention._float_scalars == ("scale",)
    assert rmsnorm._float_scalars == ()
    dims = {"B": 1, "H": 2, "HK": 2, "M": 20, "N": 30, "D": 64}
    folded = attention.specialize(dims, target="cpu", schedule=BLOCKS, scalars={"scale": 0.1})
    plain = attention.specialize(dims, target="cpu", schedule=BLOCKS, scalars={"scale": -0.1})
    assert folded is not plain and "tl.fma(" in folded.source and "tl.fma(" not in plain.source
    assert attention.specialize(dims, target="cpu", schedule=BLOCKS, scalars={"scale": 3.0}) is folded  # cached
