"""A kernel's parameter list: tensors with symbolic shapes, scalars, dtype variables.

``def gemm(a: Tensor[M, K, T], b: Tensor[K, N, T], alpha: f32)`` declares the
dimension symbols M, K, N (bound at launch from the tensors' sizes) and the
dtype variable T (bound from the tensors' dtypes: the same kernel serves f16
and bf16).  Names are validated here, once, before anything reaches code
generation.
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass

from tilec.errors import Span, TileNameError, TileSyntaxError, TileTypeError
from tilec.frontend import ast
from tilec.ir.dtypes import DTYPES

# Functions and constants of the tile language; users may not rebind them.
LANGUAGE_NAMES = frozenset({
    "tiles", "zeros", "full", "where", "sum", "max", "min", "mean", "index", "cast", "inf",
    "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "abs", "silu", "gelu", "sigmoid", "tanh",
    "maximum", "minimum", "Tensor", "Dim", "softmax", "dequantize", "logsumexp", "logaddexp", "product",
})
# Names generated code relies on: a kernel may not be called one of these.
_CODE_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | frozenset({"tl", "triton", "torch", "math", "np"})
# Names inside a kernel also may not shadow the language itself.
_RESERVED = _CODE_NAMES | LANGUAGE_NAMES | frozenset(DTYPES)
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_PACKED = re.compile(r"u?int[1-8]\Z")  # integer formats of any width 1..8: packed into 32-bit words
# element formats decoded through a value table in the kernel (at most 256 f32 values)
TABLE_FORMATS = frozenset({"fp4_e2m1", "fp6_e2m3", "fp6_e3m2", "fp8_e4m3", "fp8_e5m2", "nf4"})
# OCP MX block formats: table-decoded elements times a power-of-two (e8m0) scale per block of 32
MX_FORMATS = frozenset({"mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8"})
# formats whose codes decode through a value table in the kernel
TABLE_DECODED = TABLE_FORMATS | MX_FORMATS | {"nvfp4"}


def is_packed_format(name: str) -> bool:
    """Whether ``Tensor[..., name]`` declares a packed (quantised) tensor rather than a plain dtype."""
    return _PACKED.match(name) is not None or name in TABLE_DECODED


def check_identifier(name: str, span: Span, what: str) -> str:
    """Accept ``name`` as a user identifier or raise TileNameError.

    This is the gate between spec text and generated Python: only names that
    match a strict pattern and shadow nothing that generated code relies on
    get through.
    """
    if not _IDENTIFIER.match(name):
        raise TileNameError(
            f"{what} name '{name}' is not allowed", span,
            hint="names start with a letter and hold only letters, digits and '_' (at most 64 characters)",
        )
    if name in (_CODE_NAMES if what == "kernel" else _RESERVED):
        raise TileNameError(
            f"{what} name '{name}' is reserved", span,
            hint="it names a builtin of the tile language, of Python or of generated code; pick another name",
        )
    return name


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str  # "tensor" | "packed" | "scalar" | "dim" (a size given as an integer: ``N: Dim``)
    dims: tuple[str | int, ...]  # tensor dims: symbol names or literal extents
    dtype: str  # a dtype name or a dtype variable
    span: Span
    dim_spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[ParamSpec, ...]
    dims: tuple[str, ...]  # dimension symbols in order of first appearance
    dtype_vars: tuple[str, ...]

    def param(self, name: str) -> ParamSpec:
        return next(p for p in self.params if p.name == name)


def analyze_signature(kdef: ast.KernelDef) -> Signature:
    check_identifier(kdef.name, kdef.name_span, "kernel")
    seen: dict[str, Span] = {}
    params: list[ParamSpec] = []
    dims: list[str] = []
    dtype_vars: list[str] = []
    for p in kdef.params:
        check_identifier(p.name, p.span, "parameter")
        if p.name in seen:
            raise TileNameError(f"parameter '{p.name}' is declared twice", p.span,
                                hint=f"first declared at {seen[p.name].location}")
        seen[p.name] = p.span
        params.append(_param(p, dims, dtype_vars))
    clash = (set(seen) - {p.name for p in params if p.kind == "dim"}) & (set(dims) | set(dtype_vars))
    for name in clash:
        raise TileNameError(f"'{name}' is both a parameter and a dimension or dtype variable",
                            seen[name], hint="rename one of them")
    for spec in params:
        if spec.kind == "scalar" and spec.dtype not in DTYPES and spec.dtype not in dtype_vars:
            raise TileTypeError(f"unknown scalar type '{spec.dtype}' for parameter '{spec.name}'", spec.span,
                                hint="scalar types: " + ", ".join(DTYPES) + ", or a tensor's dtype variable")
    return Signature(kdef.name, tuple(params), tuple(dims), tuple(dtype_vars))


def _param(p: ast.Param, dims: list[str], dtype_vars: list[str]) -> ParamSpec:
    ann = p.annotation
    if ann is None:
        raise TileTypeError(f"parameter '{p.name}' has no type", p.span,
                            hint="annotate it: a tensor such as Tensor[M, K, f16], or a scalar type such as f32")
    if isinstance(ann, ast.Name) and ann.id == "Dim":
        # A dimension no tensor has (a paged cache's positions): its size is passed as an integer.
        if p.name in dtype_vars:
            raise TileNameError(f"'{p.name}' is both a dtype variable and a Dim parameter", p.span)
        if p.name not in dims:  # tensors may use N too (their size must then agree with the integer)
            dims.append(p.name)
        return ParamSpec(p.name, "dim", (p.name,), "i32", p.span)
    if isinstance(ann, ast.Name):
        return ParamSpec(p.name, "scalar", (), ann.id, p.span)
    if not (isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name) and ann.value.id == "Tensor"):
        raise TileTypeError(f"parameter '{p.name}' has a type the tile language does not know", ann.span,
                            hint="a tensor is Tensor[dims..., dtype], e.g. Tensor[M, K, f16]; "
                                 "a scalar is f32, i32, ...")
    if len(ann.indices) < 2:
        raise TileTypeError(f"tensor parameter '{p.name}' needs at least one dimension and a dtype", ann.span,
                            hint="e.g. Tensor[N, f16]")
    *dim_nodes, dtype_node = ann.indices
    packed = isinstance(dtype_node, ast.Name) and (
        is_packed_format(dtype_node.id))
    if packed and len(dim_nodes) != 2:
        raise TileTypeError(f"packed tensor '{p.name}' must be 2-D [rows, K], packed along K", ann.span,
                            hint="e.g. w: Tensor[N, K, uint4]")
    if not isinstance(dtype_node, ast.Name):
        raise TileTypeError("the last entry of Tensor[...] must be a dtype or a dtype variable",
                            _span(dtype_node),
                            hint="e.g. Tensor[M, K, f16] or Tensor[M, K, T]")
    if dtype_node.id not in DTYPES and not packed:
        check_identifier(dtype_node.id, dtype_node.span, "dtype variable")
        if dtype_node.id not in dtype_vars:
            dtype_vars.append(dtype_node.id)
    shape: list[str | int] = []
    for node in dim_nodes:
        if isinstance(node, ast.Name):
            if node.id in DTYPES:
                raise TileTypeError(f"dtype '{node.id}' in a dimension position", node.span,
                                    hint="the dtype comes last: Tensor[M, K, f16]")
            check_identifier(node.id, node.span, "dimension")
            if node.id in dtype_vars:
                raise TileNameError(f"'{node.id}' is used both as a dimension and as a dtype variable", node.span)
            if node.id not in dims:
                dims.append(node.id)
            shape.append(node.id)
        elif isinstance(node, ast.Int) and node.value > 0:
            shape.append(node.value)
        else:
            raise TileSyntaxError("a dimension is a name (M) or a positive integer", _span(node),
                                  hint="expressions such as 2*K are not dimensions; declare another symbol")
    return ParamSpec(p.name, "packed" if packed else "tensor", tuple(shape), dtype_node.id, p.span,
                     tuple(_span(n) for n in dim_nodes))


def _span(node: object) -> Span:
    span = getattr(node, "span", None)
    assert isinstance(span, Span)
    return span
