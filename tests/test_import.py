"""``import tilec`` is cheap: no torch, no Triton, no CUDA initialisation."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_torch_or_triton() -> None:
    code = "import sys, tilec; print('torch' in sys.modules, 'triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_lang_names_make_plain_annotations_evaluate() -> None:
    from tilec.lang import Tensor, f16, symbols

    M, N = symbols("M N")
    assert repr(Tensor[M, N, f16]) == "Tensor"
