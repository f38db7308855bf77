"""Names in generated code: user names as written, tilec's own names never colliding with them."""

from __future__ import annotations

import re

_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def safe_identifier(name: str) -> str:
    """Defence in depth: every identifier written into generated code passes this check.

    User names were validated by the checker already (tilec.ir.signature.check_identifier);
    this guards tilec's own code paths against ever emitting anything else.
    """
    if not _SAFE.match(name) or name.startswith("__"):
        raise ValueError(f"refusing to emit identifier {name!r}")
    return name


class Namer:
    """Hands out identifiers: user names keep their spelling, generated names get a suffix on collision."""

    def __init__(self, taken: set[str] | None = None):
        self.taken: set[str] = set(taken or ()) | {"tl", "triton"}

    def claim(self, name: str) -> str:
        """Reserve a user name exactly as written."""
        self.taken.add(safe_identifier(name))
        return name

    def fresh(self, hint: str) -> str:
        base = safe_identifier(hint)
        name, n = base, 1
        while name in self.taken:
            name = f"{base}_{n}"
            n += 1
        self.taken.add(name)
        return name
