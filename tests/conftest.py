from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Generated kernels go to a per-session cache, so tests never depend on (or pollute) ~/.cache.
os.environ.setdefault("TILEC_CACHE_DIR", tempfile.mkdtemp(prefix="tilec-test-cache-"))
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES
