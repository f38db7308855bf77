"""Turn generated source into a callable Triton function.

The source is written to a file in tilec's cache directory (named by a hash
of its text) and imported from there: Triton reads a kernel's source back
with ``inspect``, and users can open the file to read what runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

_MODULES: dict[str, Any] = {}


def cache_dir() -> Path:
    root = os.environ.get("TILEC_CACHE_DIR")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "tilec"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / "tilec"
        path.mkdir(parents=True, exist_ok=True)
    return path


def load(source: str, fn_name: str) -> Any:
    """Import ``source`` (once per distinct text) and return its function ``fn_name``."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    if digest not in _MODULES:
        path = cache_dir() / f"{fn_name}_{digest}.py"
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(f"tilec_generated_{fn_name}_{digest}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MODULES[digest] = module
    return getattr(_MODULES[digest], fn_name)
