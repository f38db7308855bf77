"""Binding launch arguments to a kernel's signature, and rejecting bad ones before launch.

Everything a launch could get wrong is checked here, with errors that name the
parameter and point at its declaration: missing or extra arguments, a tensor
where a scalar belongs, rank, dtype (and consistent dtype variables), sizes
that disagree with a dimension bound elsewhere, mixed or unsupported devices,
outputs that alias themselves (zero strides) and integer scalars out of range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tilec.errors import ArgumentError
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.signature import Signature


@dataclass(frozen=True)
class Bound:
    tensors: dict[str, Any]  # name -> torch.Tensor
    scalars: dict[str, int | float | bool]
    dims: dict[str, int]
    dtypes: dict[str, dt.DType]  # dtype variable -> dtype
    device: Any  # torch.device
    group_sizes: dict[str, int] = field(default_factory=dict)  # packed parameter -> its QTensor's group_size

    @property
    def target(self) -> str:
        return "cpu" if self.device.type == "cpu" else "cuda"


def bind(sig: Signature, args: Sequence[Any], kwargs: Mapping[str, Any], outputs: frozenset[str]) -> Bound:
    import torch

    names = [p.name for p in sig.params]
    if len(args) > len(names):
        raise ArgumentError(f"{sig.name}() takes {len(names)} arguments ({', '.join(names)}), got {len(args)}")
    values: dict[str, Any] = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise ArgumentError(f"{sig.name}() has no parameter '{key}'", hint="parameters: " + ", ".join(names))
        if key in values:
            raise ArgumentError(f"{sig.name}() got two values for '{key}'")
        values[key] = value
    missing = [n for n in names if n not in values]
    if missing:
        raise ArgumentError(f"{sig.name}() is missing {', '.join(repr(m) for m in missing)}")

    tensors: dict[str, Any] = {}
    scalars: dict[str, int | float | bool] = {}
    dims: dict[str, int] = {}
    dim_origin: dict[str, str] = {}
    dtypes: dict[str, dt.DType] = {}
    device = None
    group_sizes: dict[str, int] = {}
    for p in sig.params:
        value = values[p.name]
        if p.kind == "scalar":
            scalars[p.name] = _scalar(p.name, p.dtype, value, p.span, dtypes)
            continue
        if p.kind == "dim":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ArgumentError(f"'{p.name}' is a dimension: a non-negative int, got {value!r}", p.span)
            _bind_dims(p.name, p.dims, (value,), dims, dim_origin, p.span)
            continue
        if p.kind == "packed":
            words, shape = _packed(p.name, p.dtype, value, p.span)
            if device is None:
                device = words.device
            elif words.device != device:
                raise ArgumentError(f"'{p.name}' is on {words.device} but earlier tensors are on {device}", p.span)
            _bind_dims(p.name, p.dims, shape, dims, dim_origin, p.span)
            tensors[p.name] = words
            if isinstance(values[p.name].group_size, int):
                group_sizes[p.name] = values[p.name].group_size
            continue
        if not isinstance(value, torch.Tensor):
            raise ArgumentError(f"'{p.name}' must be a torch.Tensor, got {type(value).__name__}", p.span)
        if value.dim() != len(p.dims):
            raise ArgumentError(f"'{p.name}' must have {len(p.dims)} dimensions ({', '.join(map(str, p.dims))}), "
                                f"got shape {tuple(value.shape)}", p.span)
        got = dt.from_torch(value.dtype)
        if got is None:
            raise ArgumentError(f"'{p.name}' has dtype {value.dtype}, which the tile language does not support",
                                p.span, hint="supported: " + ", ".join(d.torch_name for d in dt.DTYPES.values()))
        want = dt.DTYPES.get(p.dtype) or dtypes.get(p.dtype)
        if want is None:
            dtypes[p.dtype] = got
        elif got is not want:  # dtypes are singletons
            origin = f" (bound to {want.name} by an earlier argument)" if p.dtype not in dt.DTYPES else ""
            raise ArgumentError(f"'{p.name}' must be {want.torch_name}{origin}, got {value.dtype}", p.span)
        if device is None:
            device = value.device
        elif value.device != device:
            raise ArgumentError(f"'{p.name}' is on {value.device} but earlier tensors are on {device}", p.span,
                                hint="move all tensors to one device")
        _bind_dims(p.name, p.dims, tuple(value.shape), dims, dim_origin, p.span)
        if p.name in outputs:
            for axis, (size, stride) in enumerate(zip(value.shape, value.stride())):
                if stride == 0 and size > 1:
                    raise ArgumentError(f"output '{p.name}' has stride 0 along axis {axis}: elements alias", p.span,
                                        hint="pass a tensor with its own storage (e.g. torch.empty(...))")
        tensors[p.name] = value
    if device is None:
        raise ArgumentError(f"{sig.name}() needs at least one tensor argument")
    if device.type not in ("cpu", "cuda"):
        raise ArgumentError(f"tensors on {device} are not supported", hint="use CPU (interpreter) or CUDA tensors")
    for name, size in dims.items():
        if size >= 2**31:
            raise ArgumentError(f"dimension {name} = {size} exceeds the 32-bit size range")
    return Bound(tensors, scalars, dims, dtypes, device, group_sizes)


@dataclass(frozen=True)
class GroupedLoad:
    """A ``dequantize(w[n, k], scale, zero, group)`` whose group tensors must have ``ceil(K / group)`` columns."""

    packed: str
    aux: tuple[str, ...]  # the scale and zero tensors
    group: str | int | None  # a scalar parameter, a literal, or None (an expression: see ``expr``)
    block: int | None = None  # the format's fixed block (MX: 32, nvfp4: 16), which the group must equal
    expr: ir.Expr | None = None  # any other group expression, evaluated at launch where it can be (_evaluate)

    @staticmethod
    def of(load: ir.QuantLoad, param: ir.PackedParam) -> GroupedLoad:
        group = load.group
        value = group.name if isinstance(group, ir.ScalarArg) else (
            int(group.value) if isinstance(group, ir.Const) else None)
        expr = group if value is None else None
        return GroupedLoad(load.tensor, tuple(n for n in (load.scale, load.zero) if n is not None), value,
                           param.fixed_block, expr)


def check_groups(sig: Signature, loads: Sequence[GroupedLoad], bound: Bound) -> None:
    """Group scales that do not cover K in groups of ``group`` would be read out of bounds: reject them."""
    for load in loads:
        if load.group is None:
            found = _evaluate(load.expr, bound) if load.expr is not None else None
            if found is None:
                continue  # not a function of scalars and dimensions: not checked
            group, span = found, load.expr.span if load.expr is not None else None
        else:
            group = load.group if isinstance(load.group, int) else int(bound.scalars[load.group])
            span = sig.param(load.group).span if isinstance(load.group, str) else None
        if group < 1:
            raise ArgumentError(f"the group size of '{load.packed}' must be positive, got {group}", span)
        if load.block is not None and group != load.block:
            raise ArgumentError(f"'{load.packed}' is block-scaled in blocks of {load.block} (its format fixes "
                                f"them), so its group must be {load.block}, not {group}", span)
        k_dim = sig.param(load.packed).dims[1]
        k = k_dim if isinstance(k_dim, int) else bound.dims[k_dim]
        want = -(-k // group)
        for aux in load.aux:
            cols = int(bound.tensors[aux].shape[1])
            if cols != want:
                raise ArgumentError(f"'{aux}' has {cols} group columns, but K = {k} in groups of {group} needs "
                                    f"{want}", sig.param(aux).span,
                                    hint="pass the group size the weight was quantised with (QTensor.group_size)")
        quantised = bound.group_sizes.get(load.packed)
        # Another group size can give the same number of columns (K = 200: 50 and 64 both make 4) and then
        # reads every scale in bounds but for the wrong codes; group sizes >= K all mean one group per row.
        if quantised is not None and min(group, k) != min(quantised, k):
            raise ArgumentError(f"'{load.packed}' was quantised in groups of {quantised}, but the kernel's group is "
                                f"{group}", span, hint="pass the group size the weight was quantised with "
                                                       "(QTensor.group_size)")


def _evaluate(e: ir.Expr, bound: Bound) -> int | None:
    """An integer group expression over scalars, dimensions and literals, with Triton's integer semantics
    (``//`` and ``%`` truncate toward zero, as C does); None for anything else (a tile value, a float)."""
    if isinstance(e, ir.Const):
        return e.value if isinstance(e.value, int) and not isinstance(e.value, bool) else None
    if isinstance(e, ir.ScalarArg):
        value = bound.scalars.get(e.name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(e, ir.DimValue):
        return bound.dims.get(e.name)
    if isinstance(e, ir.Cast) and e.type.dtype.is_int:
        return _evaluate(e.operand, bound)
    if isinstance(e, ir.Unary) and e.op == "neg":
        inner = _evaluate(e.operand, bound)
        return None if inner is None else -inner
    if isinstance(e, ir.Binary) and e.op in ("+", "-", "*", "//", "%"):
        a, b = _evaluate(e.left, bound), _evaluate(e.right, bound)
        if a is None or b is None:
            return None
        if e.op == "+":
            return a + b
        if e.op == "-":
            return a - b
        if e.op == "*":
            return a * b
        if b == 0:
            return 0  # a division by zero in the kernel: rejected below as a group that is not positive
        quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
        return quotient if e.op == "//" else a - b * quotient
    return None


def _bind_dims(name: str, declared: tuple[str | int, ...], shape: tuple[int, ...], dims: dict[str, int],
               origin: dict[str, str], span: Any) -> None:
    for axis, (dim, size) in enumerate(zip(declared, shape)):
        where = f"{name}.shape[{axis}]"
        if isinstance(dim, int):
            if size != dim:
                raise ArgumentError(f"{where} must be {dim}, got {size}", span)
        elif dim in dims and dims[dim] != size:
            raise ArgumentError(f"dimension {dim} is {dims[dim]} from {origin[dim]} but {size} from {where}", span)
        else:
            dims.setdefault(dim, int(size))
            origin.setdefault(dim, where)


def _packed(name: str, fmt: str, value: Any, span: Any) -> tuple[Any, tuple[int, ...]]:
    """A QTensor for a packed parameter: its words (int32 [rows, words], contiguous rows) and logical shape."""
    import torch

    from tilec import formats
    from tilec.formats.qtensor import QTensor, scheme_of

    if not isinstance(value, QTensor):
        raise ArgumentError(f"'{name}' is a packed {fmt} tensor: pass a tilec.QTensor, got {type(value).__name__}",
                            span, hint=f"tilec.quantize(weight, '{fmt}', group_size=...)")
    scheme = scheme_of(fmt)
    two_level = scheme == "affine" and value.scheme == "two_level"  # the same uintB codes, integer scales
    if value.format != fmt or (value.scheme != scheme and not two_level):
        raise ArgumentError(f"'{name}' expects {fmt} codes ({scheme} scheme), got {value.format} ({value.scheme})",
                            span)
    if len(value.packed) != 1 or value.layout.slots != (0,):
        raise ArgumentError(f"'{name}' expects the dense bit-stream packing, got {value.layout}", span)
    words = value.packed[0]
    if words.dtype != torch.int32 or words.dim() != 2 or words.stride(1) != 1:
        raise ArgumentError(f"'{name}': packed words must be int32 [rows, words] with contiguous rows", span)
    # The kernel addresses ceil(K * bits / 32) words in each of the logical shape's rows: fewer would be read
    # out of bounds, codes of another width would be garbage.
    bits = formats.get(fmt).bits
    if value.layout.bits != bits:
        raise ArgumentError(f"'{name}' expects {bits}-bit codes, but its QTensor's layout packs {value.layout.bits}",
                            span)
    rows, cols = value.shape
    need = value.layout.words(cols)[0]
    if words.shape[0] != rows or words.shape[1] < need:
        raise ArgumentError(f"'{name}' is a [{rows}, {cols}] {fmt} QTensor, which needs [{rows}, {need}] packed "
                            f"words; got {list(words.shape)}", span)
    return words, value.shape


def _scalar(name: str, dtype_name: str, value: Any, span: Any, dtypes: dict[str, dt.DType]) -> int | float | bool:
    import torch

    dtype = dt.DTYPES.get(dtype_name) or dtypes.get(dtype_name) or dt.f32
    if isinstance(value, torch.Tensor):
        raise ArgumentError(f"'{name}' is a scalar parameter; got a tensor", span,
                            hint="pass a Python number (.item())")
    if dtype.kind == "bool":
        if not isinstance(value, bool):
            raise ArgumentError(f"'{name}' must be a bool, got {type(value).__name__}", span)
        return value
    if dtype.is_int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgumentError(f"'{name}' must be an int ({dtype.name}), got {type(value).__name__}", span)
        half = 2 ** (dtype.bits - 1)
        lo, hi = (0, 2 * half - 1) if dtype.kind == "uint" else (-half, half - 1)
        if not lo <= value <= hi:
            raise ArgumentError(f"'{name}' = {value} is out of range for {dtype.name}", span)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"'{name}' must be a number ({dtype.name}), got {type(value).__name__}", span)
    return float(value)
