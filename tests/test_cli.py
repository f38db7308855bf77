"""The command line: compile, run, errors as located messages (never tracebacks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tilec.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_compile_emits_triton(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(EXAMPLES / "gemm_epilogue.tile")]) == 0
    out = capsys.readouterr().out
    assert "@triton.jit" in out and "tl.dot(a_mk, b_kn, acc)" in out


def test_compile_with_shapes_dtypes_schedule_and_output(tmp_path: Path) -> None:
    target = tmp_path / "k.py"
    args = ["compile", str(EXAMPLES / "softmax.tile"), "--shape", "M=8,N=64", "--dtype", "T=bf16",
            "--schedule", "m=2", "-o", str(target)]
    assert main(args) == 0
    code = target.read_text()
    assert "T=bf16" in code and "BLOCK_M=2" in code and "mask_full_N" not in code


def test_compile_specialises_on_group_sizes_and_split_k(capsys: pytest.CaptureFixture[str]) -> None:
    """--scalar group=128 lets the W4A16 loop apply the group scale after each K tile's product (the
    example's own group, 64, is the default); --schedule split_k=4 shows the decode path."""
    base = ["compile", str(EXAMPLES / "w4a16.tile"), "--shape", "M=1,N=4096,K=4096,G=32"]
    assert main([*base, "--scalar", "group=128", "--schedule", "m=16,n=64,k=128,split_k=4"]) == 0
    out = capsys.readouterr().out
    assert "tl.dot(x_mk_k_order, tl.trans(w_nk)) * scale_w" in out and "tl.atomic_add(" in out  # K order: quant_load.py
    assert main([*base, "--scalar", "group=96", "--schedule", "m=16,n=64,k=128"]) == 0  # 128 does not divide 96
    assert "* scale_w)" not in capsys.readouterr().out
    assert main([*base, "--scalar", "grp=128"]) == 2
    assert "no scalar parameter 'grp'" in capsys.readouterr().err


def test_compile_specialises_on_the_sign_of_a_scale(capsys: pytest.CaptureFixture[str]) -> None:
    """The example's scale (0.125) is positive: the scale goes after the row max, into one fma per score;
    --scalar scale=-0.5 keeps the multiply first; a scalar that is not a number is refused."""
    base = ["compile", str(EXAMPLES / "attention.tile")]
    assert main(base) == 0
    assert "tl.fma(scores, scale * 1.4426950408889634, -row_max_used[:, None])" in capsys.readouterr().out
    assert main([*base, "--scalar", "scale=-0.5"]) == 0
    out = capsys.readouterr().out
    assert "tl.fma(" not in out and "tl.exp2(scores - row_max_used[:, None])" in out
    assert main([*base, "--scalar", "scale=nan"]) == 2
    assert "not a finite number" in capsys.readouterr().err
    assert main([*base, "--scalar", "scale=big"]) == 2
    assert "not a number" in capsys.readouterr().err


@pytest.mark.aot
def test_compile_emits_ttgir_for_sm90(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(EXAMPLES / "gemm_epilogue.tile"), "--emit", "ttgir", "--target", "sm_90"]) == 0
    assert "ttng.warp_group_dot" in capsys.readouterr().out


def test_compile_shows_the_lowering_of_the_named_target(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(EXAMPLES / "mx_gemm.tile")
    assert main(["compile", spec, "--target", "sm_100", "--shape", "M=4096,N=4096,K=4096"]) == 0
    native = capsys.readouterr().out
    assert "tl.dot_scaled(" in native and "BLOCK_M=128" in native
    assert main(["compile", spec, "--target", "sm_90", "--shape", "M=4096,N=4096,K=4096"]) == 0
    hopper = capsys.readouterr().out
    assert "tl.dot(" in hopper and "dot_scaled" not in hopper


def test_malformed_spec_reports_location_without_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "bad.tile"
    spec.write_text("def k(x: Tensor[M, f16], y: Tensor[M, f16]):\n    for m in tiles(M):\n        y[m] = x[m] +* 2\n")
    proc = subprocess.run([sys.executable, "-m", "tilec.cli", "compile", str(spec)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert f"{spec}:3:22: TileSyntaxError" in proc.stderr
    assert "Traceback" not in proc.stderr and "lark" not in proc.stderr.lower()


def test_type_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.tile"
    spec.write_text("def k(x: Tensor[M, f16], y: Tensor[M, f16]):\n"
                    "    for m in tiles(M):\n        y[m] = x[m] @ x[m]\n")
    assert main(["compile", str(spec)]) == 2
    assert "bad.tile:3:16: TileShapeError: '@' multiplies 2-D tiles" in capsys.readouterr().err


def test_missing_file_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "/nonexistent/spec.tile"]) == 2
    assert main(["compile", str(EXAMPLES / "softmax.tile"), "--shape", "M"]) == 2
    assert main(["compile", str(EXAMPLES / "softmax.tile"), "--kernel", "nope"]) == 2
    err = capsys.readouterr().err
    assert "NAME=VALUE" in err and "no kernel 'nope'" in err


def test_run_checks_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "softmax.tile"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "softmax" in out and " ok" in out and "FAIL" not in out


def test_formats_lists_every_registered_format(capsys: pytest.CaptureFixture[str]) -> None:
    from tilec import formats

    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert listed == set(formats.names())
    assert "fp8_e4m3        8" in out and "[-448, 448]" in out and "blocks of 16" in out
