"""Ahead-of-time: every shipped example compiles for sm_80 and sm_90 on this GPU-less machine.

Products must reach the tensor cores (wgmma on sm_90: ``ttng.warp_group_dot`` in
TTGIR; ``mma.sync`` in sm_80 PTX) and the cubin Triton built must spill nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tilec
from tilec.codegen.aot import compile_for_gpu
from tilec.errors import BackendError
from tilec.ir import dtypes as dt
from tilec.runtime.examples import example_values

pytestmark = pytest.mark.aot
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.tile"))
CASES = [(p, target, dtype) for p in EXAMPLES for target in ("sm_80", "sm_90") for dtype in ("f16", "bf16")]


@pytest.mark.parametrize("path,target,dtype", CASES, ids=[f"{p.stem}-{t}-{d}" for p, t, d in CASES])
def test_example_compiles_with_tensor_cores_and_no_spills(path: Path, target: str, dtype: str) -> None:
    module = tilec.compile(path)
    for example in module.examples:
        kernel = module.kernels[example.kernel]
        dims, _, _ = example_values(kernel, example)
        dims = {d: 4096 if d in ("M", "N", "K") else v for d, v in dims.items()}  # production-like sizes
        compiled = kernel.specialize(dims, {"T": dt.DTYPES[dtype]}, target="cuda")
        if target == "sm_80" and any(p.dtype == dt.f8e4m3 for p in compiled.lowered.kernel.tensors):
            with pytest.raises(BackendError, match="needs sm_89 or newer"):  # tilec says so before Triton
                compile_for_gpu(compiled, target, dims)
            continue
        art = compile_for_gpu(compiled, target, dims)
        uses_dot = "tl.dot(" in compiled.source
        if uses_dot and target == "sm_90":
            assert "ttng.warp_group_dot" in art.asm["ttgir"]
        if uses_dot and target == "sm_80":
            assert "mma.sync" in art.asm["ptx"]
        report = art.resources()
        assert report.spill_stores == 0 and report.spill_loads == 0, report.text
        assert 0 < report.registers <= 255
        assert art.shared_bytes <= (227 if target == "sm_90" else 163) * 1024
        assert isinstance(art.asm["cubin"], bytes) and len(art.asm["cubin"]) > 0


def test_odd_shapes_compile_too() -> None:
    kernel = tilec.compile(EXAMPLES_DIR / "gemm_epilogue.tile").kernels["gemm_bias_gelu_residual"]
    dims = {"M": 37, "N": 65, "K": 70}
    art = compile_for_gpu(kernel.specialize(dims, {"T": dt.bf16}, target="cuda"), "sm_90", dims)
    assert "ttng.warp_group_dot" in art.asm["ttgir"]


def test_interpreter_launches_do_not_break_gpu_compilation() -> None:
    """Triton's interpreter leaves triton.language patched after nested calls; tilec restores it."""
    import torch

    softmax = tilec.compile(EXAMPLES_DIR / "softmax.tile").kernels["softmax"]
    x = torch.randn(4, 16, dtype=torch.float16)
    softmax(x, torch.empty_like(x))
    kernel = tilec.compile(EXAMPLES_DIR / "gemm_epilogue.tile").kernels["gemm_bias_gelu_residual"]
    dims = {"M": 256, "N": 256, "K": 256}
    art = compile_for_gpu(kernel.specialize(dims, {"T": dt.f16}, target="cuda"), "sm_90", dims)
    assert "ttng.warp_group_dot" in art.asm["ttgir"]


# The native block-scaled MMA, per operand formats: tcgen05.mma.cta_group::1.<kind>.block_scale.<...>
# (3.9 writes ".block32", 3.6 ".scale_vec::1X"/"::2X").
SCALED = [("mxfp8_e4m3", "mxfp4", "kind::mxf8f6f4"), ("mxfp4", "mxfp4", "kind::mxf4"),
          ("mxfp8_e5m2", "mxfp8_e4m3", "kind::mxf8f6f4")]


def mx_example(fa: str, fb: str) -> tilec.Kernel:
    text = (EXAMPLES_DIR / "mx_gemm.tile").read_text().replace("mxfp8_e4m3", "{fa}").replace("mxfp4", "{fb}")
    return tilec.compile(text.format(fa=fa, fb=fb), name=f"{fa}_{fb}.tile").mx_gemm


@pytest.mark.parametrize("fa,fb,kind", SCALED, ids=[f"{a}-{b}" for a, b, _ in SCALED])
def test_mx_products_use_the_native_block_scaled_mma_on_sm_100(fa: str, fb: str, kind: str) -> None:
    """One specialisation (no arch): compile_for_gpu lowers it again for sm_100 (tl.dot_scaled, 128-row
    tiles) and keeps the dequantising lowering for sm_90 (wgmma)."""
    dims = {"M": 4096, "N": 4096, "K": 4096, "G": 128}
    compiled = mx_example(fa, fb).specialize(dims, {"T": dt.bf16}, target="cuda")
    assert "tl.dot(" in compiled.source and "dot_scaled" not in compiled.source
    native = compile_for_gpu(compiled, "sm_100", dims)
    assert compiled.for_arch(100).schedule.blocks["m"] == 128
    assert "tl.dot_scaled(" in compiled.for_arch(100).source
    assert "ttng.tc_gen5_mma_scaled" in native.asm["ttgir"]
    assert f"tcgen05.mma.cta_group::1.{kind}.block_scale" in native.asm["ptx"]
    report = native.resources()
    assert report.spill_stores == 0 and report.spill_loads == 0, report.text
    assert 0 < report.registers <= 255 and native.shared_bytes <= 227 * 1024
    hopper = compile_for_gpu(compiled, "sm_90", dims)
    assert "ttng.warp_group_dot" in hopper.asm["ttgir"] and "tc_gen5_mma_scaled" not in hopper.asm["ttgir"]


def test_a_scaled_lowering_is_refused_for_older_targets() -> None:
    """A specialisation lowered for sm_100 that cannot be lowered again is refused for sm_90 before Triton."""
    import dataclasses

    dims = {"M": 256, "N": 256, "K": 256, "G": 8}
    native = mx_example("mxfp8_e4m3", "mxfp4").specialize(dims, {"T": dt.f16}, target="cuda", arch=100)
    pinned = dataclasses.replace(native, _respecialize=None)
    with pytest.raises(BackendError, match="only for sm_100 or newer, not sm_90"):
        compile_for_gpu(pinned, "sm_90", dims)


def test_resources_are_read_from_the_cubin_triton_built(capsys: pytest.CaptureFixture[str]) -> None:
    """Registers and spills come from the cubin itself (cuobjdump + the SASS's local-memory instructions) and
    agree with the report of the ptxas run that built it (Triton's own log; a second ptxas run with plain
    flags can allocate differently): here a kernel capped at 32 registers by Triton must spill."""
    import re

    import triton
    import triton.language as tl
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tilec.codegen.aot import Artifacts

    @triton.jit
    def hold_a_tile(x_ptr, y_ptr, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        tile = tl.load(x_ptr + offs[:, None] * BLOCK + offs[None, :])  # 64 values per thread, all kept live
        total = tl.sum(tl.sum(tile * tile, axis=1), axis=0)
        tl.store(y_ptr + offs[:, None] * BLOCK + offs[None, :], tile / total)

    source = ASTSource(fn=hold_a_tile, signature={"x_ptr": "*fp32", "y_ptr": "*fp32", "BLOCK": "constexpr"},
                       constexprs={"BLOCK": 64})
    with knobs.nvidia.scope(), knobs.compilation.scope():
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True
        capsys.readouterr()
        result = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 2, "maxnreg": 32})
        log = capsys.readouterr().out
    report = Artifacts("sm_90", {"ptx": result.asm["ptx"], "cubin": result.asm["cubin"]}, 0).resources()
    assert report.registers <= 32 and report.spill_stores > 0 and report.spill_loads > 0 and report.stack_bytes > 0

    def logged(pattern: str) -> int:
        match = re.search(pattern, log)
        assert match, log
        return int(match.group(1))

    assert report.registers == logged(r"Used (\d+) registers")
    assert report.spill_stores == logged(r"(\d+) bytes spill stores")
    assert report.spill_loads == logged(r"(\d+) bytes spill loads")
