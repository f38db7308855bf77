"""The registry: names, lookup, errors, cheap import, and the shared element-format interface."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import tilec.formats as F
from tilec.formats import ElementFormat, UnknownFormatError, get, names

EXPECTED = (
    [f"int{b}" for b in range(1, 9)] + [f"uint{b}" for b in range(1, 9)]
    + ["fp4_e2m1", "fp6_e2m3", "fp6_e3m2", "fp8_e4m3", "fp8_e5m2", "e8m0", "nf4"]
    + ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8", "nvfp4"]
)


def test_names_and_get() -> None:
    assert names() == EXPECTED
    for n in names():
        assert get(n).name == n
    assert get("fp8_e4m3") is F.fp8_e4m3 and get("mxfp4") is F.mxfp4 and get("nvfp4") is F.nvfp4


def test_unknown_name() -> None:
    for bad in ["int9", "fp8", "", None]:
        with pytest.raises(KeyError) as info:
            get(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError) and isinstance(info.value, UnknownFormatError)
        assert "known formats: int1, int2" in str(info.value) and "nvfp4" in str(info.value)


@pytest.mark.parametrize("name", EXPECTED[:23])
def test_element_interface(name: str) -> None:
    fmt = get(name)
    assert isinstance(fmt, ElementFormat)
    vals = fmt.values()
    assert vals.dtype == torch.float32 and len(vals) <= 2**fmt.bits and fmt.bits <= 8
    finite = vals[torch.isfinite(vals)]
    assert fmt.max == finite.max().item() and fmt.min == finite.min().item()
    codes = torch.arange(len(vals), dtype=torch.int64).to(torch.uint8)
    dec = fmt.decode(codes)
    assert dec.dtype == torch.float32 and torch.equal(dec.isnan(), vals.isnan())
    ok = ~vals.isnan()
    assert np.array_equal(dec[ok].numpy().view(np.uint32), vals[ok].numpy().view(np.uint32))
    enc = fmt.encode(finite)
    assert enc.dtype == torch.uint8 and torch.equal(fmt.decode(enc), finite)
    doc = type(fmt).__doc__ or ""
    assert "encode" in doc.lower() or "convention" in doc.lower()


def test_import_is_cheap() -> None:
    code = "import sys, tilec.formats; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
