"""W4A8 (examples/w4a8.tile) in Triton's interpreter: two-level uint4 weights x int8 activations.

The reference is the float64 product of the int8 activations and the two-level dequantised weight,
``x_scale[m] * s1[n] * sum_k xq[m, k] * ((q - z) * s2)[n, k]``.  The kernel's integer accumulation is exact
(|acc| <= 127 * 127 * K < 2**24, so even acc.to(f32) is exact at these K), leaving the epilogue: two f32
products (2**-24 relative each) and one rounding to T (unit roundoff u = 2**-11 for f16, 2**-8 for bf16,
plus half the smallest f16 subnormal, 2**-25).  Every element must satisfy
``|out - ref| <= (u + 2**-22) * |ref| + 2**-25``.  Two-level groups need not divide K: the last group
of a row is partial (K = 200 with groups of 64 and 128 here); N = 65 and K = 200 are multiples of no tile.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tilec
from tilec.formats.two_level import second_level
from tilec.ir import dtypes as dt

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "w4a8.tile"
ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def kernel() -> tilec.Kernel:
    return tilec.compile(EXAMPLE).w4a8_linear


def reference(xq: torch.Tensor, x_scale: torch.Tensor, qt: tilec.QTensor) -> torch.Tensor:
    assert qt.zeros is not None and qt.channel_scales is not None
    levels = second_level(qt.codes(), qt.scales, qt.zeros, qt.group_size).double()
    return (xq.double() @ levels.T) * x_scale.double()[:, None] * qt.channel_scales.double()[None, :]


def check(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.isfinite(out).all(), "NaN or inf left in the output"
    err = (out.double() - ref).abs()
    bound = (ROUNDOFF[out.dtype] + 2.0**-22) * ref.abs() + 2.0**-25
    assert (err <= bound).all(), f"max excess {(err - bound).max().item():.3e}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group,schedule", [(64, None), (128, {"m": 16, "n": 32, "k": 32}),
                                            (32, {"m": 16, "n": 16, "k": 128}),
                                            # 128 products per thread: s2 stays per weight, one per row
                                            (64, {"m": 64, "n": 64, "k": 32, "num_warps": 1})])
def test_kernel_matches_the_float64_integer_product(dtype: torch.dtype, group: int,
                                                    schedule: dict[str, int] | None) -> None:
    k = kernel()
    gen = torch.Generator().manual_seed(group)
    n, kk = 65, 200
    qt = tilec.quantize(torch.randn(n, kk, generator=gen) * 0.1, "uint4", group_size=group, two_level=True)
    assert qt.zeros is not None and qt.channel_scales is not None
    for m in (1, 7, 33):
        xq = torch.randint(-127, 128, (m, kk), generator=gen, dtype=torch.int8)  # the whole int8 range
        x_scale = torch.rand(m, generator=gen) * 0.02 + 1e-3
        out = torch.full((m, n), float("nan"), dtype=dtype)
        k(xq, qt, qt.scales, qt.zeros, x_scale, qt.channel_scales, out, group,
          **({"schedule": schedule} if schedule else {}))
        check(out, reference(xq, x_scale, qt))


def test_extreme_levels_accumulate_exactly() -> None:
    """Levels at +-127-ish and activations at +-127 everywhere: the largest products int8 allows."""
    k = kernel()
    n, kk, group = 9, 200, 64
    w = torch.full((n, kk), 106 / 119)
    w[:, ::2] = -1.0  # level 1: -119 and 106; level 2: s2 = 15, zero 8, levels -120 and 105
    qt = tilec.quantize(w, "uint4", group_size=group, two_level=True, scale_dtype=torch.float32)
    assert qt.zeros is not None and qt.channel_scales is not None
    levels = second_level(qt.codes(), qt.scales, qt.zeros, group)
    assert levels.min() == -120 and levels.max() == 105
    xq = torch.full((3, kk), 127, dtype=torch.int8)
    xq[:, ::2] = -127
    x_scale = torch.ones(3)
    out = torch.full((3, n), float("nan"), dtype=torch.float16)
    k(xq, qt, qt.scales, qt.zeros, x_scale, qt.channel_scales, out, group)
    check(out, reference(xq, x_scale, qt))


def test_main_loop_stays_integer() -> None:
    source = kernel().triton_code(M=4096, N=4096, K=4096, G=32, T="bf16", S="f16")
    loop = source[source.index("for tile_k"):source.index("w4a8.tile:12")]
    assert "tl.dot(x_mk, tl.trans(w_nk.to(tl.int8)), acc, out_dtype=tl.int32)" in loop
    assert "float" not in loop  # no conversion to a float type inside the main loop
    assert "# w4a8.tile:11" in loop


def test_group_scale_follows_the_int32_product_when_the_k_block_divides_the_group() -> None:
    """passes/defer_group_scale.py: s2 multiplies each K tile's int32 product; the loop stays integer."""
    compiled = kernel().specialize({"M": 7, "N": 65, "K": 200, "G": 2}, {"T": dt.f16, "S": dt.f16}, target="cpu",
                                   schedule={"m": 16, "n": 32, "k": 64}, scalars={"group": 128})
    loop = compiled.source[compiled.source.index("for tile_k"):compiled.source.index("w4a8.tile:12")]
    # codegen/quant_int8.py: code - zero four bytes at a time, in a K order the activations follow
    assert "tl.dot(x_mk_k_order, tl.trans(w_nk), out_dtype=tl.int32) * s2_w)" in loop
    assert "^ 0x80808080" in loop and "tl.int32)" not in loop.split("w_lanes0")[1].split("tl.dot")[0]
    assert "float" not in loop


@pytest.mark.parametrize("kwidth", [4, 8])
def test_both_k_orders_of_the_lean_unpack_are_exact(kwidth: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """codegen/quant_int8.py permutes K for the installed Triton's int8 operand layout (kWidth 4 under 3.9,
    8 under 3.6); both orders run here whichever Triton is installed, with masked tails (N = 65, K = 200)."""
    from tilec.codegen import quant_int8

    monkeypatch.setattr(quant_int8, "mma_int8_kwidth", lambda: kwidth)
    k = tilec.compile(EXAMPLE.read_text(), name=f"w4a8_kwidth{kwidth}.tile").w4a8_linear
    gen = torch.Generator().manual_seed(kwidth)
    n, kk, group = 65, 200, 64
    qt = tilec.quantize(torch.randn(n, kk, generator=gen) * 0.1, "uint4", group_size=group, two_level=True)
    assert qt.zeros is not None and qt.channel_scales is not None
    for m, schedule in ((7, {"m": 16, "n": 32, "k": 64}), (20, {"m": 16, "n": 16, "k": 32})):
        xq = torch.randint(-127, 128, (m, kk), generator=gen, dtype=torch.int8)
        x_scale = torch.rand(m, generator=gen) * 0.02 + 1e-3
        out = torch.full((m, n), float("nan"), dtype=torch.float16)
        k(xq, qt, qt.scales, qt.zeros, x_scale, qt.channel_scales, out, group, schedule=schedule)
        check(out, reference(xq, x_scale, qt))
    source = k.specialize({"M": 7, "N": 65, "K": 200, "G": 4}, {"T": dt.f16, "S": dt.f16}, target="cpu",
                          schedule={"m": 16, "n": 32, "k": 64}, scalars={"group": group}).source
    assert f"kWidth {kwidth}" in source and "x_mk_k_order = tl.reshape(tl.permute(" in source


def test_every_code_and_zero_point_pair_unpacks_exactly() -> None:
    """codegen/quant_int8.py's byte arithmetic (``(q + 128 - z) ^ 0x80`` four lanes at a time) for every
    uint4 code q and zero point z (16 x 16 pairs: row n has zero point n in every group, codes run through
    0..15 along K), with s2 in 1..8 so each level (q - z) * s2 is an int8; the K tail (K = 200) is masked."""
    from tilec.formats.qtensor import QTensor
    from tilec.ir.packing import PackedLayout, pack

    n, kk, group = 16, 200, 64
    groups = -(-kk // group)
    codes = ((torch.arange(kk)[None, :] + torch.arange(n)[:, None] * 7) % 16).to(torch.uint8)
    zeros = torch.arange(n, dtype=torch.uint8)[:, None].expand(n, groups).contiguous()
    s2 = (torch.arange(n * groups) % 8 + 1).to(torch.uint8).reshape(n, groups)
    layout = PackedLayout(4)
    words = pack(codes, layout)
    assert isinstance(words, torch.Tensor)
    qt = QTensor("uint4", "two_level", (n, kk), group, layout, (words,), s2, zeros,
                 channel_scales=torch.ones(n, dtype=torch.float16))
    gen = torch.Generator().manual_seed(16)
    xq = torch.randint(-127, 128, (5, kk), generator=gen, dtype=torch.int8)
    x_scale = torch.full((5,), 2.0**-10)
    out = torch.full((5, n), float("nan"), dtype=torch.float16)
    kernel()(xq, qt, s2, zeros, x_scale, qt.channel_scales, out, group, schedule={"m": 16, "n": 16, "k": 64})
    check(out, reference(xq, x_scale, qt))


@pytest.mark.parametrize("fmt", ["uint1", "uint2", "uint3", "uint8"])
def test_other_widths_defer_s2_exactly(fmt: str) -> None:
    """Other code widths with s2 deferred: uint1/uint2 take the byte-lane unpack in stream order, uint3
    (codes crossing words) and uint8 (zero points that could carry between bytes) one int32 per code."""
    spec = EXAMPLE.read_text().replace("Tensor[N, K, uint4]", f"Tensor[N, K, {fmt}]")
    k = tilec.compile(spec, name=f"w4a8_{fmt}.tile").w4a8_linear
    gen = torch.Generator().manual_seed(int(fmt[4:]))
    n, kk, group = 65, 200, 64
    qt = tilec.quantize(torch.randn(n, kk, generator=gen) * 0.1, fmt, group_size=group, two_level=True)
    assert qt.zeros is not None and qt.channel_scales is not None
    schedule = {"m": 16, "n": 32, "k": 64}
    source = k.specialize({"M": 7, "N": n, "K": kk, "G": 4}, {"T": dt.f16, "S": dt.f16}, target="cpu",
                          schedule=schedule, scalars={"group": group}).source
    assert "* s2_w)" in source and ("w_lanes0" in source) == (fmt in ("uint1", "uint2"))
    for m in (1, 7):
        xq = torch.randint(-127, 128, (m, kk), generator=gen, dtype=torch.int8)
        x_scale = torch.rand(m, generator=gen) * 0.02 + 1e-3
        out = torch.full((m, n), float("nan"), dtype=torch.float16)
        k(xq, qt, qt.scales, qt.zeros, x_scale, qt.channel_scales, out, group, schedule=schedule)
        check(out, reference(xq, x_scale, qt))


def test_split_k_runs_the_lean_loop_exactly() -> None:
    """Split-K over the deferred, permuted loop: 9 K tiles of 64 (the last one partial: K = 520) in 3
    splits, so the last split's run passes the end of K (its s2 and zero columns are clamped)."""
    k = kernel()
    gen = torch.Generator().manual_seed(3)
    n, kk, group = 65, 520, 64
    qt = tilec.quantize(torch.randn(n, kk, generator=gen) * 0.1, "uint4", group_size=group, two_level=True)
    assert qt.zeros is not None and qt.channel_scales is not None
    schedule = {"m": 16, "n": 32, "k": 64, "split_k": 3}
    for m in (1, 7):
        xq = torch.randint(-127, 128, (m, kk), generator=gen, dtype=torch.int8)
        x_scale = torch.rand(m, generator=gen) * 0.02 + 1e-3
        out = torch.full((m, n), float("nan"), dtype=torch.float16)
        args = (xq, qt, qt.scales, qt.zeros, x_scale, qt.channel_scales, out, group)
        k(*args, schedule=schedule)
        check(out, reference(xq, x_scale, qt))
    source = k.triton_code(*args, target="cpu", schedule=schedule)
    assert "SPLIT_K" in source and "x_mk_k_order" in source and "* s2_w)" in source


def test_bad_arguments_are_rejected_before_launch() -> None:
    k = kernel()
    gen = torch.Generator().manual_seed(1)
    qt = tilec.quantize(torch.randn(8, 64, generator=gen), "uint4", group_size=32, two_level=True)
    assert qt.zeros is not None and qt.channel_scales is not None
    xq = torch.zeros(2, 64, dtype=torch.int8)
    out = torch.full((2, 8), float("nan"), dtype=torch.float16)
    with pytest.raises(tilec.ArgumentError, match=r"'x' must be int8, got torch\.float16"):
        k(xq.half(), qt, qt.scales, qt.zeros, torch.ones(2), qt.channel_scales, out, 32)
    with pytest.raises(tilec.ArgumentError, match="'s2' must be uint8"):
        k(xq, qt, qt.scales.half(), qt.zeros, torch.ones(2), qt.channel_scales, out, 32)
    with pytest.raises(tilec.ArgumentError, match="expects uint4 codes"):
        k(xq, tilec.quantize(torch.randn(8, 64), "nf4", group_size=32), qt.scales, qt.zeros, torch.ones(2),
          qt.channel_scales, out, 32)
    assert torch.isnan(out).all()  # nothing launched


def test_example_inputs_need_one_channel_scale() -> None:
    """Example inputs for a two-level weight: the channel scales go to the one float [N] input, or it says why."""
    from tilec.runtime.examples import make_inputs, quantized_inputs

    k = kernel()
    assert quantized_inputs(k, {"T": dt.f16, "S": dt.f16}) == {"s2", "zero", "w_scale"}
    inputs = make_inputs(k, {"M": 3, "N": 9, "K": 64, "G": 1}, {"T": dt.f16, "S": dt.f16}, "cpu", 0, {"group": 64})
    assert torch.equal(inputs["w_scale"], inputs["w"].channel_scales) and torch.isnan(inputs["out"]).all()
    spec = EXAMPLE.read_text().replace("w_scale: Tensor[N, S],", "w_scale: Tensor[N, S], b: Tensor[N, f32],") \
        .replace("w_scale[n].to(f32))", "w_scale[n].to(f32) + b[n])")
    two = tilec.compile(spec, name="two_scales.tile").w4a8_linear
    with pytest.raises(tilec.ArgumentError, match=r"exactly one float tensor \[N\].*\['w_scale', 'b'\]"):
        make_inputs(two, {"M": 3, "N": 9, "K": 64, "G": 1}, {"T": dt.f16, "S": dt.f16}, "cpu", 0, {"group": 64})


@pytest.mark.parametrize("group,tile,warps", [(128, (16, 128, 128), 4), (32, (16, 128, 32), 4),
                                              (48, (16, 64, 64), 8)])
def test_default_decode_tile_suits_int8_activations(group: int, tile: tuple[int, int, int], warps: int) -> None:
    """runtime/schedule.py's decode rule, checked against the W4A8 cubins (sm_90, Triton 3.9 / 3.6, instructions
    per word): 16 x 128 x 128 / 4 warps 17.3 / 17.4 (16 x 64 x 64: 36.2 / 36.8; 16 x 256 x 128 takes 14.2 but
    halves the output tiles); at group 32 (int8's smallest K block) 16 x 128 x 32 takes 38.2 / 39.2, still far
    below the per-weight path; a group with no 32-wide aligned K tile (48) keeps 16 x 64 x 64 / 8 warps
    (the per-weight path, spill-free: 161.5 / 441.5 measured at group 96)."""
    from tilec.passes.defer_group_scale import scalar_facts
    from tilec.runtime.schedule import default_schedule

    kir = kernel().ir({"T": dt.f16, "S": dt.f16})
    facts = dict(scalar_facts(("group",), {"group": group}))
    chosen = default_schedule(kir, {"M": 1, "N": 4096, "K": 4096, "G": 4096 // group}, "cuda", 90, facts)
    assert (chosen.blocks["m"], chosen.blocks["n"], chosen.blocks["k"]) == tile and chosen.num_warps == warps
