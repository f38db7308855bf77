"""The format registry: `get` a format by name, list the `names`."""

from __future__ import annotations

from tilec.formats.base import ElementFormat
from tilec.formats.codebook import nf4
from tilec.formats.e8m0 import e8m0
from tilec.formats.integer import INT_FORMATS, UINT_FORMATS
from tilec.formats.minifloat import NAMED_MINIFLOATS
from tilec.formats.mx import MX_FORMATS, MXFormat
from tilec.formats.nvfp4 import NVFP4Format, nvfp4

Format = ElementFormat | MXFormat | NVFP4Format


class UnknownFormatError(KeyError, ValueError):
    """No format of that name; the message lists the known names. A `KeyError` and a `ValueError`."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


_ALL: list[Format] = [*INT_FORMATS, *UINT_FORMATS, *NAMED_MINIFLOATS, e8m0, nf4, *MX_FORMATS, nvfp4]
_REGISTRY: dict[str, Format] = {f.name: f for f in _ALL}


def get(name: str) -> Format:
    """The format called ``name`` (e.g. ``"int4"``, ``"fp8_e4m3"``, ``"mxfp4"``, ``"nvfp4"``)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownFormatError(f"unknown format {name!r}; known formats: {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    """Every registered format name, in registration order (element formats, then block formats)."""
    return list(_REGISTRY)
