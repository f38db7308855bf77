"""Before/after tests of passes/block_scaled_dot.py: which products become ScaledDot, and the pipeline's
arch gate (only arch >= 100 rewrites)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tilec
from tilec.errors import BackendError, TileTypeError
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.schedule import Schedule
from tilec.passes.block_scaled_dot import block_scaled_dot
from tilec.passes.fuse_dot_acc import fuse_dot_acc
from tilec.passes.interpreter_workarounds import interpreter_runs_dot_scaled
from tilec.passes.pipeline import lower
from tilec.passes.tiling import tile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BLOCKS = Schedule(blocks={"m": 32, "n": 32, "k": 64})

SPEC = """
def mm(a: Tensor[M, K, {fa}], a_scale: Tensor[M, G, u8], w: Tensor[N, K, {fb}], w_scale: Tensor[N, G, u8],
       out: Tensor[M, N, T]):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += {lhs} @ {rhs}
        out[m, n] = acc.to(T)
"""
LHS = "dequantize(a[m, k], a_scale, None, 32).to(T)"
RHS = "dequantize(w[n, k], w_scale, None, 32).to(T).T"


def kernel_ir(fa: str = "mxfp8_e4m3", fb: str = "mxfp4", lhs: str = LHS, rhs: str = RHS) -> ir.Kernel:
    text = SPEC.format(fa=fa, fb=fb, lhs=lhs, rhs=rhs)
    return tilec.compile(text, name="mm.tile").mm.ir({"T": dt.f16})


def before(k: ir.Kernel, blocks: Schedule = BLOCKS) -> ir.Kernel:
    return fuse_dot_acc(tile(k, blocks, {}))


def products(k: ir.Kernel) -> list[ir.Expr]:
    return [e for s in ir.walk_stmts(k.body.body) if isinstance(s, (ir.Assign, ir.Store))
            for e in ir.walk_exprs(s.value) if isinstance(e, (ir.Dot, ir.ScaledDot))]


def test_mx_product_becomes_one_scaled_dot_with_the_accumulator() -> None:
    k = before(kernel_ir())
    (dot,) = products(k)
    assert isinstance(dot, ir.Dot) and isinstance(dot.acc, ir.Var)
    (after,) = products(block_scaled_dot(k))
    assert isinstance(after, ir.ScaledDot)
    assert (after.a_format, after.b_format) == ("e4m3", "e2m1")
    assert (after.a.tensor, after.a.scale, after.b.tensor, after.b.scale) == ("a", "a_scale", "w", "w_scale")
    assert after.acc == dot.acc and after.type == dot.type and after.span == dot.span
    assert [ax.name for ax in after.a.type.axes] == ["m", "k"] and [ax.name for ax in after.b.type.axes] == ["n", "k"]


@pytest.mark.parametrize("fa,fb,formats", [("mxfp4", "mxfp4", ("e2m1", "e2m1")),
                                           ("mxfp8_e5m2", "mxfp8_e4m3", ("e5m2", "e4m3"))])
def test_every_dot_scaled_element_format(fa: str, fb: str, formats: tuple[str, str]) -> None:
    (after,) = products(block_scaled_dot(before(kernel_ir(fa, fb))))
    assert isinstance(after, ir.ScaledDot) and (after.a_format, after.b_format) == formats


def test_uncast_f32_operands_match_too() -> None:
    k = kernel_ir(lhs="dequantize(a[m, k], a_scale, None, 32)", rhs="dequantize(w[n, k], w_scale, None, 32).T")
    (after,) = products(block_scaled_dot(before(k)))
    assert isinstance(after, ir.ScaledDot)


@pytest.mark.parametrize("fa,fb", [("mxfp6_e2m3", "mxfp4"), ("mxfp8_e4m3", "mxint8"), ("mxfp4", "mxfp6_e3m2")])
def test_formats_dot_scaled_lacks_stay_dequantised(fa: str, fb: str) -> None:
    k = before(kernel_ir(fa, fb))
    assert block_scaled_dot(k) == k


def test_a_float_operand_stays_a_plain_dot() -> None:
    text = """
def mm(x: Tensor[M, K, T], w: Tensor[N, K, mxfp4], w_scale: Tensor[N, G, u8], out: Tensor[M, N, T]):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += x[m, k] @ dequantize(w[n, k], w_scale, None, 32).to(T).T
        out[m, n] = acc.to(T)
"""
    k = before(tilec.compile(text, name="mm.tile").mm.ir({"T": dt.f16}))
    assert block_scaled_dot(k) == k


def test_k_block_must_hold_whole_scale_blocks() -> None:
    k = before(kernel_ir(), Schedule(blocks={"m": 32, "n": 32, "k": 16}))
    assert block_scaled_dot(k) == k


def test_pipeline_rewrites_only_from_arch_100() -> None:
    kir = tilec.compile(EXAMPLES / "mx_gemm.tile").mx_gemm.ir({"T": dt.bf16})
    dims = {"M": 33, "N": 65, "K": 150, "G": 5}
    for arch, scaled in ((None, False), (80, False), (90, False), (100, True), (120, True)):
        for target in ("cpu", "cuda"):
            if scaled and target == "cpu" and not interpreter_runs_dot_scaled():  # Triton 3.6's interpreter
                with pytest.raises(BackendError, match=r"cannot run tl\.dot_scaled"):
                    lower(kir, BLOCKS, dims, target, arch)
                continue
            lowered = lower(kir, BLOCKS, dims, target, arch).kernel
            kinds = {type(e) for e in products(lowered)}
            assert kinds == ({ir.ScaledDot} if scaled else {ir.Dot}), (arch, target)


def test_masks_pass_proves_scaled_operands_like_any_load() -> None:
    kir = tilec.compile(EXAMPLES / "mx_gemm.tile").mx_gemm.ir({"T": dt.f16})
    ragged = products(lower(kir, BLOCKS, {"M": 33, "N": 65, "K": 150, "G": 5}, "cuda", 100).kernel)[0]
    exact = products(lower(kir, BLOCKS, {"M": 64, "N": 64, "K": 128, "G": 4}, "cuda", 100).kernel)[0]
    assert isinstance(ragged, ir.ScaledDot) and isinstance(exact, ir.ScaledDot)
    assert all(ix.needs_mask for ix in ragged.a.index + ragged.b.index)  # type: ignore[union-attr]
    assert not any(ix.needs_mask for ix in exact.a.index + exact.b.index)  # type: ignore[union-attr]


def test_nvfp4_products_use_blocks_of_16_and_never_mix_with_mx() -> None:
    nv = kernel_ir("nvfp4", "nvfp4", lhs=LHS.replace("32", "16"), rhs=RHS.replace("32", "16"))
    (after,) = products(block_scaled_dot(before(nv)))
    assert isinstance(after, ir.ScaledDot) and (after.a_format, after.b_format, after.block) == ("e2m1", "e2m1", 16)
    mixed = before(kernel_ir("mxfp8_e4m3", "nvfp4", rhs=RHS.replace("32", "16")))
    assert block_scaled_dot(mixed) == mixed
    with pytest.raises(TileTypeError, match="blocks of 16"):  # nvfp4 blocks are 16: the checker refuses 32
        kernel_ir("nvfp4", "nvfp4")
