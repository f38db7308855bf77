"""Split-K (the decode path): generated code, interpreter results against float64, sm_80/sm_90 compiles.

Every split-capable shipped example runs with the reduction shared by 2, 3 and 8 programs per tile at
sizes where the splits do not divide the K tiles (K=300 in 64-wide tiles: 5 tiles, so the last splits
run short or empty), outputs poisoned with NaN, checked with the examples' own float64 tolerance.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import tilec
from tilec.codegen.aot import compile_for_gpu
from tilec.ir import dtypes as dt
from tilec.passes.split_k import split_blocker
from tilec.runtime.examples import run_example
from tilec.runtime.schedule import default_schedule

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
SPLITTABLE = [p for p in sorted(EXAMPLES_DIR.glob("*.tile"))
              if all(split_blocker(k.ir()) is None for k in tilec.compile(p).kernels.values())]


def test_the_gemm_examples_are_splittable() -> None:
    names = {p.stem for p in SPLITTABLE}
    assert {"gemm_epilogue", "rmsnorm_gemm", "w4a16", "w8a8", "fp8_gemm"} <= names
    assert "softmax" not in names


@pytest.mark.parametrize("split", [2, 3, 8])
@pytest.mark.parametrize("path", SPLITTABLE, ids=[p.stem for p in SPLITTABLE])
def test_split_examples_match_float64(path: Path, split: int) -> None:
    module = tilec.compile(path)
    for example in module.examples:
        for m in (1, 7):
            results = run_example(module, example, "cpu", seed=split * 10 + m, dims_override={"M": m, "K": 300},
                                  schedule={"split_k": split})
            for r in results:
                assert r.max_rel_err == r.max_rel_err, f"{r.kernel}: NaN in the output"
                assert r.ok, f"{r.kernel} {r.sizes} split {split}: error {r.max_rel_err:.3e} > {r.tolerance:.1e}"


def test_integer_partials_are_exact_and_the_sum_is_deterministic() -> None:
    """W8A8 accumulates in i32: any split gives the unsplit result bit for bit; float splits repeat exactly."""
    k = tilec.compile(EXAMPLES_DIR / "w8a8.tile").w8a8_linear
    gen = torch.Generator().manual_seed(3)
    m, n, kk = 5, 33, 333
    x = torch.randint(-128, 128, (m, kk), generator=gen, dtype=torch.int8)
    w = torch.randint(-128, 128, (n, kk), generator=gen, dtype=torch.int8)
    xs, ws = torch.rand(m, generator=gen) / 100, torch.rand(n, generator=gen) / 100
    outs = []
    for split in (1, 2, 3, 6):
        out = torch.full((m, n), float("nan"), dtype=torch.bfloat16)
        k(x, w, xs, ws, out, schedule={"m": 16, "n": 16, "k": 32, "split_k": split})
        outs.append(out)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    g = tilec.compile(EXAMPLES_DIR / "gemm_epilogue.tile").gemm_bias_gelu_residual
    a, b = torch.randn(9, 200, generator=gen).half(), torch.randn(200, 40, generator=gen).half()
    bias, res = torch.randn(40, generator=gen).half(), torch.randn(9, 40, generator=gen).half()
    runs = []
    for _ in range(2):
        out = torch.full((9, 40), float("nan"), dtype=torch.float16)
        g(a, b, bias, res, out, schedule={"m": 16, "n": 16, "k": 16, "split_k": 4})
        runs.append(out)
    assert torch.equal(runs[0], runs[1])


def test_generated_code_joins_partials_before_the_epilogue() -> None:
    k = tilec.compile(EXAMPLES_DIR / "gemm_epilogue.tile").gemm_bias_gelu_residual
    src = k.triton_code(M=1, N=4096, K=4096, T="f16", schedule={"split_k": 4})
    assert "tl.program_id(axis=2)" in src and 'tl.atomic_add(tile_arrivals_ptr + pid, 1, sem="acq_rel")' in src
    assert "tl.debug_barrier()" in src and 'cache_modifier=".cg"' in src
    join = re.search(r"^( *)if arrived == SPLIT_K - 1:$", src, re.M)
    assert join is not None
    indent = len(join.group(1))
    epilogue = re.search(r"^( *)y = .*tl\.erf", src, re.M)  # the GELU runs only in the joining program
    assert epilogue is not None and len(epilogue.group(1)) > indent and epilogue.start() > join.start()
    store = re.search(r"^( *)tl\.store\(out_ptr", src, re.M)
    assert store is not None and len(store.group(1)) > indent
    assert "split_k" not in k.triton_code(M=4096, N=4096, K=4096, T="f16").lower()


def test_default_rule_splits_small_m_only() -> None:
    kir = tilec.compile(EXAMPLES_DIR / "w4a16.tile").w4a16_linear.ir()
    sizes = {"N": 8192, "K": 8192, "G": 64}
    assert default_schedule(kir, {"M": 1, **sizes}, "cuda").split_k > 1
    assert default_schedule(kir, {"M": 16, **sizes}, "cuda").split_k > 1
    assert default_schedule(kir, {"M": 4096, **sizes}, "cuda").split_k == 1
    assert default_schedule(kir, {"M": 1, "N": 8192, "K": 256, "G": 4}, "cuda").split_k == 1  # too few K tiles
    assert default_schedule(kir, {"M": 1, **sizes}, "cpu").split_k == 1  # the interpreter runs programs in turn
    soft = tilec.compile(EXAMPLES_DIR / "softmax.tile").softmax.ir()
    assert default_schedule(soft, {"M": 1, "N": 8192}, "cuda").split_k == 1


@pytest.mark.parametrize("group,tile,warps", [(128, (16, 128, 128), 4), (64, (16, 128, 64), 4),
                                               (32, (16, 128, 32), 4), (96, (16, 128, 32), 4),
                                               (48, (16, 64, 64), 8)])
def test_default_decode_tile_of_quantised_products(group: int, tile: tuple[int, int, int], warps: int) -> None:
    """The K block divides the group where it can (so the scale follows each K tile's product); a group
    with no power-of-two factor of 32 (48 = 16 x 3) keeps the per-weight scale on the tile that does not
    spill."""
    k = tilec.compile(EXAMPLES_DIR / "w4a16.tile").w4a16_linear
    dims = {"M": 1, "N": 8192, "K": 8192, "G": -(-8192 // group)}
    compiled = k.specialize(dims, {"T": dt.f16}, target="cuda", scalars={"group": group})
    blocks = compiled.schedule.blocks
    assert (blocks["m"], blocks["n"], blocks["k"]) == tile and compiled.schedule.num_warps == warps
    assert compiled.schedule.split_k > 1
    assert ("* scale_w)" in compiled.source) == (group != 48)


@pytest.mark.aot
@pytest.mark.parametrize("group", [32, 48, 128])
def test_default_decode_tiles_do_not_spill(group: int) -> None:
    k = tilec.compile(EXAMPLES_DIR / "w4a16.tile").w4a16_linear
    dims = {"M": 1, "N": 8192, "K": 8192, "G": -(-8192 // group)}
    compiled = k.specialize(dims, {"T": dt.f16}, target="cuda", scalars={"group": group})
    for target in ("sm_80", "sm_90"):
        report = compile_for_gpu(compiled, target, dims).resources()
        assert report.spill_stores == 0 and report.spill_loads == 0, (target, report.text)


@pytest.mark.aot
@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
@pytest.mark.parametrize("example,kernel", [("gemm_epilogue", "gemm_bias_gelu_residual"), ("w4a16", "w4a16_linear")])
def test_decode_split_compiles_with_tensor_cores_and_no_spills(example: str, kernel: str, target: str) -> None:
    """M = 1 at 8192 x 8192 with the default (decode) schedule: split-K on mma, the arrival atomic, no spills."""
    k = tilec.compile(EXAMPLES_DIR / f"{example}.tile").kernels[kernel]
    dims = {"M": 1, "N": 8192, "K": 8192, "G": 64}
    dims = {d: v for d, v in dims.items() if d in k.signature.dims}
    scalars = {"group": 128} if example == "w4a16" else None
    compiled = k.specialize(dims, {"T": dt.f16}, target="cuda", scalars=scalars)  # w4a16: the lean loop's path
    assert compiled.schedule.split_k > 1
    if example == "w4a16":
        assert "* scale_w)" in compiled.source  # the group scale follows each K tile's product
    art = compile_for_gpu(compiled, target, dims)
    assert "mma.sync" in art.asm["ptx"]  # M = 16 tiles: mma on both targets (wgmma needs 64 rows)
    assert "atom.global.gpu.acq_rel.add" in art.asm["ptx"]
    report = art.resources()
    assert report.spill_stores == 0 and report.spill_loads == 0, report.text


def test_split_block_scaled_product_sm100_lowering() -> None:
    """The sm_100 lowering (tl.dot_scaled, run by the interpreter) splits too: ScaledDot is a pure sum."""
    from tilec.passes.interpreter_workarounds import interpreter_runs_dot_scaled
    from tilec.runtime import args as argbind
    from tilec.runtime.kernel import launch

    k = tilec.compile(EXAMPLES_DIR / "mx_gemm.tile").mx_gemm
    gen = torch.Generator().manual_seed(11)
    qa = tilec.quantize(torch.randn(5, 320, generator=gen), "mxfp8_e4m3")
    qw = tilec.quantize(torch.randn(40, 320, generator=gen), "mxfp4")
    out = torch.full((5, 40), float("nan"), dtype=torch.float16)
    bound = argbind.bind(k.signature, (qa, qa.scales, qw, qw.scales, out), {}, k.outputs)
    if not interpreter_runs_dot_scaled():  # Triton 3.6's interpreter: tilec refuses (tested in test_scaled_gemm)
        assert split_blocker(k.ir()) is None
        return
    compiled = k.specialize(bound.dims, bound.dtypes, target="cpu", arch=100,
                            schedule={"m": 16, "n": 32, "k": 64, "split_k": 3})
    assert "tl.dot_scaled(" in compiled.source and "tl.atomic_add(" in compiled.source
    launch(compiled, bound)
    ref = qa.dequantize().double() @ qw.dequantize().double().T
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10


@pytest.mark.aot
@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
def test_partials_are_published_and_read_in_a_sound_order(target: str) -> None:
    """The PTX of the join, in order: every thread's partial stores, bar.sync, one thread's
    ``atom.acq_rel.gpu`` (release: cumulative over the barrier), its result broadcast through shared memory
    behind a second bar.sync (so every thread of the last CTA is ordered after that acquire), then the partial
    loads, all ``ld.global.cg`` (from L2, never a stale L1 line of a reused workspace)."""
    k = tilec.compile(EXAMPLES_DIR / "gemm_epilogue.tile").gemm_bias_gelu_residual
    dims = {"M": 1, "N": 512, "K": 4096}
    compiled = k.specialize(dims, {"T": dt.f16}, target="cuda", schedule={"split_k": 4})
    lines = [ln.strip() for ln in compile_for_gpu(compiled, target, dims).asm["ptx"].splitlines()]
    atoms = [i for i, ln in enumerate(lines) if "atom.global.gpu.acq_rel.add" in ln]
    assert len(atoms) == 1 and lines[atoms[0]].startswith("@%p")  # one thread counts the CTA's arrival
    atom = atoms[0]
    before = [i for i, ln in enumerate(lines[:atom]) if ln.startswith(("st.global", "bar.sync"))]
    stores = [i for i in before if lines[i].startswith("st.global")]
    assert stores and any(lines[i].startswith("bar.sync") for i in before if i > stores[-1])
    after = lines[atom + 1:]
    barrier = next(i for i, ln in enumerate(after) if ln.startswith("bar.sync"))
    assert any(ln.startswith("@%p") and "st.shared" in ln for ln in after[:barrier])  # the broadcast
    assert not any(ln.startswith("ld.global") for ln in after[:barrier])
    loads = [ln for ln in after[barrier:] if ln.startswith("ld.global.cg")]
    assert len(loads) >= 4  # the split's partials (SPLIT_K = 4)
    first_plain = next(i for i, ln in enumerate(after) if ln.startswith("ld.global") and ".cg" not in ln)
    last_cg = max(i for i, ln in enumerate(after) if ln.startswith("ld.global.cg"))
    assert last_cg < first_plain  # partials are read before the epilogue's ordinary loads (bias, residual)


def test_a_split_specialisation_is_not_reused_for_ragged_rows() -> None:
    """split_k = 2 at M = 16 (one 16-row tile: rows divisible, no row mask, but 1 tile % 2 splits != 0) used
    to share its cache key with M = 5, whose launch then ran the kernel without the row mask (reading and
    writing rows 5..15 past the tensors on a GPU)."""
    g = tilec.compile(EXAMPLES_DIR / "gemm_epilogue.tile").gemm_bias_gelu_residual
    sched = {"m": 16, "n": 16, "k": 16, "split_k": 2}
    exact = g.specialize({"M": 16, "N": 32, "K": 64}, {"T": dt.f16}, target="cpu", schedule=sched)
    ragged = g.specialize({"M": 5, "N": 32, "K": 64}, {"T": dt.f16}, target="cpu", schedule=sched)
    assert "mask_m" not in exact.source and "mask_m" in ragged.source
    gen = torch.Generator().manual_seed(4)
    for m in (16, 5):  # launched in this order through the per-call cache too
        a, b = torch.randn(m, 64, generator=gen).half(), torch.randn(64, 32, generator=gen).half()
        bias, res = torch.randn(32, generator=gen).half(), torch.randn(m, 32, generator=gen).half()
        out = torch.full((m, 32), float("nan"), dtype=torch.float16)
        g(a, b, bias, res, out, schedule=sched)
        ref = torch.nn.functional.gelu(a.double() @ b.double() + bias.double()) + res.double()
        assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10
    launched = g._for_launch(tilec.runtime.args.bind(g.signature, (a, b, bias, res, out), {}, g.outputs), sched)
    assert "mask_m" in launched.source
