"""The kernel object users hold: checked at definition, specialised and compiled per launch key.

A call binds and validates the arguments (:mod:`tilec.runtime.args`), picks a
schedule (pinned values over the default rule), derives the specialisation
key (dtype bindings, schedule, divisibility facts, unit strides, 64-bit
indexing, target) and launches the cached compiled kernel for that key:
compiled Triton for CUDA tensors, Triton's interpreter for CPU tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tilec.codegen.triton_emit import GeneratedKernel, emit
from tilec.errors import ArgumentError, Source
from tilec.frontend import ast
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.build import build_kernel
from tilec.ir.schedule import Schedule
from tilec.ir.signature import analyze_signature
from tilec.passes.defer_group_scale import group_scalars, scalar_facts
from tilec.passes.pipeline import Lowered, lower
from tilec.runtime import args as argbind
from tilec.runtime.schedule import Overrides, default_schedule, merge, overrides

_INT32_LIMIT = 2**31


@dataclass
class Compiled:
    """One specialisation: its lowered IR, generated source and (lazily) the callable function."""

    lowered: Lowered
    generated: GeneratedKernel
    schedule: Schedule
    target: str
    arch: int | None = None  # GPU compute capability the passes lowered for (None: no arch-specific lowering)
    _fn: Any = field(default=None, repr=False)
    _respecialize: Any = field(default=None, repr=False)  # arch -> Compiled with every other choice kept

    def for_arch(self, arch: int) -> Compiled:
        """The same specialisation lowered for GPU compute capability ``arch`` (e.g. 100 for sm_100)."""
        if arch == self.arch or self._respecialize is None:
            return self
        return self._respecialize(arch)  # type: ignore[no-any-return]

    @property
    def source(self) -> str:
        return self.generated.source

    def fn(self) -> Any:
        if self._fn is None:
            from tilec.runtime.interpreter import interpreted
            from tilec.runtime.loader import load

            jit_fn = load(self.generated.source, self.generated.abi.fn_name)
            self._fn = interpreted(jit_fn) if self.target == "cpu" else jit_fn
        return self._fn


class Kernel:
    """A tile-language kernel.  Call it with tensors to launch; ``triton_code`` shows what runs."""

    def __init__(self, kdef: ast.KernelDef, source: Source, schedule: Schedule | Mapping[str, object] | None = None):
        self.name = kdef.name
        self.source = source
        self._kdef = kdef
        self.signature = analyze_signature(kdef)
        self._irs: dict[tuple[tuple[str, dt.DType], ...], ir.Kernel] = {}
        checked = self.ir()  # every spec error surfaces here, at definition time
        stored = {s.tensor for s in ir.walk_stmts(checked.body.body) if isinstance(s, ir.Store)}
        loaded: set[str] = set()
        self._groups: list[argbind.GroupedLoad] = []  # checked at every launch: scales match K and the group
        online = False  # a softmax over a key loop (passes/online_softmax)
        for stmt in ir.walk_stmts(checked.body.body):
            if isinstance(stmt, (ir.Assign, ir.Store)):
                for e in ir.walk_exprs(stmt.value):
                    online |= isinstance(e, ir.Softmax)
                    if isinstance(e, ir.Load):
                        loaded.add(e.tensor)
                    elif isinstance(e, ir.QuantLoad):
                        loaded |= {name for name in (e.tensor, e.scale, e.zero) if name is not None}
                        param = checked.param(e.tensor)
                        if e.group is not None and isinstance(param, ir.PackedParam):
                            self._groups.append(argbind.GroupedLoad.of(e, param))
        self.outputs = frozenset(stored)
        self._packed = frozenset(p.name for p in self.signature.params if p.kind == "packed")
        self.inputs = frozenset(p.name for p in self.signature.params if p.kind not in ("scalar", "dim")) - (
            stored - loaded)
        self._pinned: Overrides = overrides(schedule)
        self._compiled: dict[tuple[object, ...], Compiled] = {}
        self._launch_cache: dict[tuple[object, ...], Compiled] = {}  # cheap per-call key -> Compiled
        self._group_scalars = group_scalars(checked)  # scalars whose divisibility a specialisation may use
        # float scalars whose sign a specialisation may use (passes/online_softmax: a positive scale), in kernels
        # with a softmax over a key loop only: elsewhere the sign changes nothing and would only compile twice
        self._float_scalars = tuple(p.name for p in self.signature.params if online and p.kind == "scalar"
                                    and p.dtype in dt.DTYPES and dt.DTYPES[p.dtype].is_float)

    def __repr__(self) -> str:
        params = ", ".join(p.name for p in self.signature.params)
        return f"<tilec.Kernel {self.name}({params}) from {self.source.name}>"

    # ----------------------------------------------------------------- IR
    def ir(self, dtypes: Mapping[str, dt.DType] | None = None) -> ir.Kernel:
        """The checked IR for the given dtype-variable bindings (unbound ones default to f16)."""
        bindings = tuple(sorted((v, (dtypes or {}).get(v, dt.f16)) for v in self.signature.dtype_vars))
        if bindings not in self._irs:
            self._irs[bindings] = build_kernel(self._kdef, self.source, dict(bindings))
        return self._irs[bindings]

    def as_torch_op(self, name: str | None = None, namespace: str = "tilec") -> Any:
        """Register as ``torch.ops.<namespace>.<name>`` (outputs allocated and returned; see torch_ops)."""
        from tilec.runtime.torch_ops import register_op

        return register_op(self, name, namespace)

    def pin(self, schedule: Schedule | Mapping[str, object] | None) -> None:
        """Pin a schedule (or part of one) for every later launch; None unpins."""
        self._pinned = overrides(schedule)
        self._launch_cache.clear()

    # ------------------------------------------------------- specialisation
    def specialize(self, dims: Mapping[str, int] | None, dtypes: Mapping[str, dt.DType] | None = None, *,
                   target: str = "cuda", schedule: Schedule | Mapping[str, object] | None = None,
                   unit_strides: frozenset[tuple[str, int]] | None = None, int64: bool = False,
                   arch: int | None = None, scalars: Mapping[str, object] | None = None) -> Compiled:
        """Compile for concrete sizes (``dims``), or generically (``dims=None``: every mask kept).

        ``unit_strides`` defaults to contiguous tensors (last axis stride 1).  ``arch`` is the GPU's compute
        capability as one number (90: sm_90, 100: sm_100); passes that depend on it (block-scaled products
        become ``tl.dot_scaled`` from 100 on) read it, whatever the target: target "cpu" with ``arch=100``
        runs the sm_100 lowering in Triton's interpreter.  None: the lowering every GPU can run.
        ``scalars``: launch values of scalar arguments; only the power-of-two divisibility of group sizes
        and which float scalars are positive are used (and keyed on).
        """
        kir = self.ir(dtypes)
        sizes = dict(dims) if dims is not None else {d: 1024 for d in self.signature.dims}
        # default rule, then what the kernel pins, then what this call pins
        pow2 = scalar_facts(self._group_scalars, scalars or {})
        chosen = merge(merge(default_schedule(kir, sizes, target, arch, dict(pow2)), self._pinned),
                       overrides(schedule))
        if unit_strides is None:
            unit_strides = frozenset((p.name, len(p.dims) - 1) for p in kir.tensors)
        positive = _positive(self._float_scalars, scalars or {})
        key = (target, arch, tuple(kir.type_bindings), chosen.key(), _facts_key(kir, chosen, dims), unit_strides,
               int64, pow2, positive)
        compiled = self._compiled.get(key)
        if compiled is None:
            lowered = lower(kir, chosen, dims, target, arch, dict(pow2), positive)
            generated = emit(lowered.kernel, chosen, lowered.facts, unit_strides=unit_strides, int64=int64,
                             target=target, computed_loop_bounds=not _interpreter_needs_int_bounds(target))

            def respecialize(new_arch: int, strides: frozenset[tuple[str, int]] = unit_strides) -> Compiled:
                return self.specialize(dims, dtypes, target=target, schedule=schedule, unit_strides=strides,
                                       int64=int64, arch=new_arch, scalars=scalars)

            compiled = self._compiled[key] = Compiled(lowered, generated, chosen, target, arch,
                                                      _respecialize=respecialize)
        return compiled

    def triton_code(self, *args: Any, target: str = "cuda", schedule: Schedule | Mapping[str, object] | None = None,
                    **sizes: Any) -> str:
        """The generated Triton for given tensors (``k.triton_code(a, b, out)``) or given sizes and
        dtypes (``k.triton_code(M=37, N=65, K=70, T="bf16")``)."""
        if args:
            bound = argbind.bind(self.signature, args, sizes, self.outputs)
            return self._for_launch(bound, schedule).source
        dtypes = {k: dt.DTYPES[str(v)] for k, v in sizes.items() if k in self.signature.dtype_vars}
        dims = {k: int(v) for k, v in sizes.items() if k not in self.signature.dtype_vars}
        unknown = set(dims) - set(self.signature.dims)
        if unknown:
            raise ArgumentError(f"{self.name} has no dimension {', '.join(sorted(unknown))}",
                                hint="dimensions: " + ", ".join(self.signature.dims))
        return self.specialize(dims or None, dtypes, target=target, schedule=schedule).source

    # ----------------------------------------------------------------- launch
    def __call__(self, *args: Any, schedule: Schedule | Mapping[str, object] | None = None, **kwargs: Any) -> None:
        bound = argbind.bind(self.signature, args, kwargs, self.outputs)
        argbind.check_groups(self.signature, self._groups, bound)
        compiled = self._for_launch(bound, schedule)
        launch(compiled, bound)

    def _for_launch(self, bound: argbind.Bound, schedule: Schedule | Mapping[str, object] | None) -> Compiled:
        unit = frozenset((name, axis) for name, t in bound.tensors.items()
                         for axis, stride in enumerate(t.stride()) if stride == 1)
        # Packed words may also be addressed as bytes (the tl.dot_scaled lowering): 4 offsets per word.
        int64 = any(_max_offset(t) * (4 if name in self._packed else 1) >= _INT32_LIMIT
                    for name, t in bound.tensors.items())
        arch = device_arch(bound.device) if bound.target == "cuda" else None
        # Everything the schedule rule and the facts depend on; repeated shapes skip sympy entirely.
        pow2 = scalar_facts(self._group_scalars, bound.scalars) if self._group_scalars else ()
        positive = _positive(self._float_scalars, bound.scalars)
        fast_key = (bound.target, arch, tuple(bound.dims.items()), tuple(bound.dtypes.items()), unit, int64,
                    repr(sorted(overrides(schedule).items())), repr(sorted(self._pinned.items())), pow2, positive)
        compiled = self._launch_cache.get(fast_key)
        if compiled is None:
            compiled = self.specialize(bound.dims, bound.dtypes, target=bound.target, schedule=schedule,
                                       unit_strides=unit, int64=int64, arch=arch, scalars=bound.scalars)
            self._launch_cache[fast_key] = compiled
        return compiled


def _positive(names: tuple[str, ...], scalars: Mapping[str, object]) -> frozenset[str]:
    """The float scalars whose launch value is > 0 (a NaN, a tensor or a missing value: not known)."""
    return frozenset(n for n in names if isinstance(v := scalars.get(n), (int, float)) and not isinstance(v, bool)
                     and v > 0)


def _interpreter_needs_int_bounds(target: str) -> bool:
    if target != "cpu":
        return False
    from tilec.runtime.interpreter import loop_bounds_must_be_ints

    return loop_bounds_must_be_ints()


def launch(compiled: Compiled, bound: argbind.Bound) -> None:
    abi = compiled.generated.abi
    grid = 1
    for dim, block in abi.grid_tiles:
        grid *= -(-bound.dims[dim] // block)
    points = 1
    for dim in abi.grid_points:
        points *= bound.dims[dim]
    if grid == 0 or points == 0:
        return  # no output tile: nothing to compute
    # An empty input does not make the problem empty: K = 0 still gives every output tile its epilogue (a
    # zero sum, plus bias, ...).  Its loads never run (zero trip counts) or are masked (empty whole axes).
    positional: list[Any] = []
    constexprs: dict[str, int] = {}
    device = next(iter(bound.tensors.values())).device
    for arg in abi.args:
        if arg.kind == "tensor":
            positional.append(bound.tensors[arg.source])
        elif arg.kind == "table":
            positional.append(value_table(arg.source, bound.device))
        elif arg.kind == "scalar":
            positional.append(bound.scalars[arg.source])
        elif arg.kind == "dim":
            positional.append(bound.dims[arg.source])
        elif arg.kind == "stride":
            positional.append(bound.tensors[arg.source].stride(arg.axis))
        elif arg.kind == "trip_count":
            tiles = -(-bound.dims[arg.source] // arg.value)
            positional.append(-(-tiles // arg.split))  # a split loop walks its share of the tiles
        elif arg.kind == "workspace":  # split-K partial sums: every split of every tile writes its own
            import torch

            positional.append(torch.empty(grid * points * abi.split_k * arg.value, dtype=getattr(torch, arg.dtype),
                                          device=device))
        elif arg.kind == "arrivals":  # split-K: per-tile counters, zero at launch (the last split resets them)
            positional.append(arrival_counters(device, grid * points))
        else:
            constexprs[arg.name] = arg.value
    fn = compiled.fn()
    if compiled.target == "cpu":
        from tilec.runtime.interpreter import interpreted_language, scalar_arguments

        with interpreted_language():
            fn[(grid, points, abi.split_k)](*scalar_arguments(positional), **constexprs)
    else:
        fn[(grid, points, abi.split_k)](*positional, **constexprs, num_warps=compiled.schedule.num_warps,
                                num_stages=compiled.schedule.num_stages)


_ARCHS: dict[str, int] = {}


def device_arch(device: Any) -> int:
    """The compute capability of a CUDA tensor's device as one number (sm_90 -> 90), read once per device.

    Only called for CUDA tensors, so ``import tilec`` and CPU launches never initialise CUDA.
    """
    key = str(device)
    if key not in _ARCHS:
        import torch

        major, minor = torch.cuda.get_device_capability(device)
        _ARCHS[key] = 10 * major + minor
    return _ARCHS[key]


_COUNTERS: dict[tuple[str, int], Any] = {}


def arrival_counters(device: Any, count: int) -> Any:
    """Zeroed int32 split-K arrival counters for ``count`` tiles.

    On a GPU one buffer per (device, stream) is reused: every launch leaves it zeroed (the last split of
    each tile resets its counter), and launches on one stream run in order, so no memset per call.  On the
    CPU (the interpreter, which an exception can stop mid-grid) every launch gets fresh zeros.
    """
    import torch

    if device.type != "cuda":
        return torch.zeros(count, dtype=torch.int32, device=device)
    key = (str(device), torch.cuda.current_stream(device).cuda_stream)
    counters = _COUNTERS.get(key)
    if counters is None or counters.numel() < count:
        counters = _COUNTERS[key] = torch.zeros(max(count, 1024), dtype=torch.int32, device=device)
    return counters


_TABLES: dict[tuple[str, str], Any] = {}


def value_table(fmt: str, device: Any) -> Any:
    """Every code's value of ``fmt`` as float32 (index = code), cached per device."""
    key = (fmt, str(device))
    if key not in _TABLES:
        from tilec import formats

        found = formats.get(fmt)
        if isinstance(found, formats.MXFormat):  # MX elements carry an implicit 2**element_exp (mxint8: 2**-6)
            values = found.element.values() * 2.0**found.element_exp
        elif isinstance(found, formats.NVFP4Format):
            values = found.element.values()
        else:
            values = found.values()  # type: ignore[union-attr]
        _TABLES[key] = values.to(device)
    return _TABLES[key]


def _max_offset(t: Any) -> int:
    """An upper bound of the element offsets a kernel may form for ``t`` (cheap when the storage is small)."""
    storage = t.untyped_storage().nbytes() // max(t.element_size(), 1)
    if storage < _INT32_LIMIT:
        return storage
    span = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()) if size > 0)
    return t.storage_offset() + span + 1


def _facts_key(kernel: ir.Kernel, schedule: Schedule, dims: Mapping[str, int] | None) -> tuple[object, ...]:
    """What the masks pass will know: divisibility of each tiled dimension and each whole-axis size."""
    if dims is None:
        return ("generic",)
    divisible = []
    for name, tv in kernel.tile_vars().items():
        size = int(tv.extent.subs({s: dims[s.name] for s in tv.extent.free_symbols}))
        block = schedule.blocks.get(name, 1)
        # Both facts, apart: the split condition holds for the split loop only (masks.facts_for), so folding
        # it into one bit for every tile variable gave "M = 16 in one 16-row tile, 2 splits" (rows divisible:
        # no row mask) the key of a ragged M, whose launch then reused the unmasked kernel.
        divisible.append((name, size % block == 0, (size // block) % schedule.split_k == 0))
    from tilec.passes.pipeline import full_blocks_for

    full = full_blocks_for(kernel, dims)
    exact = tuple((d, b, (int(d) if d.isdigit() else dims[d]) == b) for d, b in sorted(full.items()))
    return (tuple(divisible), exact)

