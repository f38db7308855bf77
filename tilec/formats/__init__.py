"""Element and block formats of tilec: bit-exact host-side encode/decode and quantise/dequantise.

``import tilec.formats`` is cheap: numpy and torch are imported on first use.

- element formats (`ElementFormat`): `IntFormat` (``int1``..``int8``, ``uint1``..``uint8``),
  `MinifloatFormat` with a `FloatConvention` (``fp4_e2m1``, ``fp6_e2m3``, ``fp6_e3m2``, ``fp8_e4m3``,
  ``fp8_e5m2``, any other via `minifloat`), `E8M0Format` (``e8m0``) and `Codebook` (``nf4``);
- scaled formats: affine groups (`AffineFormat`, `quantize_affine`), OCP MX v1.0 (`MXFormat`, ``mxfp4`` ...
  ``mxint8``, `quantize_mx`), `NVFP4Format` (``nvfp4``, `quantize_nvfp4`) and two-level (QServe) weights
  (`quantize_two_level`: per-channel int8 times per-group uintB with integer scales).

`get` finds any registered format by name; `names` lists them. Every module documents its conventions.
"""

from tilec.formats.affine import AffineFormat, dequantize_affine, quantize_affine
from tilec.formats.base import ElementFormat
from tilec.formats.codebook import Codebook, nf4
from tilec.formats.e8m0 import E8M0Format, e8m0
from tilec.formats.integer import IntFormat
from tilec.formats.minifloat import (
    FloatConvention,
    MinifloatFormat,
    fp4_e2m1,
    fp6_e2m3,
    fp6_e3m2,
    fp8_e4m3,
    fp8_e5m2,
    minifloat,
)
from tilec.formats.mx import (
    MXFormat,
    dequantize_mx,
    mxfp4,
    mxfp6_e2m3,
    mxfp6_e3m2,
    mxfp8_e4m3,
    mxfp8_e5m2,
    mxint8,
    quantize_mx,
)
from tilec.formats.nvfp4 import NVFP4Format, dequantize_nvfp4, nvfp4, quantize_nvfp4
from tilec.formats.registry import Format, UnknownFormatError, get, names
from tilec.formats.two_level import dequantize_two_level, protective_range, quantize_two_level

__all__ = [
    "AffineFormat", "Codebook", "E8M0Format", "ElementFormat", "FloatConvention", "Format", "IntFormat",
    "MXFormat", "MinifloatFormat", "NVFP4Format", "UnknownFormatError", "dequantize_affine", "dequantize_mx",
    "dequantize_nvfp4", "dequantize_two_level", "e8m0", "fp4_e2m1", "fp6_e2m3", "fp6_e3m2", "fp8_e4m3", "fp8_e5m2",
    "get", "minifloat", "mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8", "names", "nf4",
    "nvfp4", "protective_range", "quantize_affine", "quantize_mx", "quantize_nvfp4", "quantize_two_level",
]
