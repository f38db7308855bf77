"""Rewrites that keep Triton's CPU interpreter exact (target "cpu" only).

IR in, IR out.  Triton 3.9's interpreter mishandles bf16 (probed; see
../shared/triton-notes.md and docs/architecture.md):

- ``tl.dot`` on bf16 multiplies the raw 16-bit patterns, and so do elementwise
  ``*``, ``+``, ``maximum``... on bf16 tensors;
- ``.to(tl.bfloat16)`` from f32 truncates instead of rounding to nearest even.

f16 is exact.  So for bf16 this pass computes every arithmetic node in f32 and
rounds back once with an explicit integer round-to-nearest-even on the bits
(``Cast(rounding="rne_bits")``), which is what the GPU computes for one bf16
operation.  Before: ``Binary('+', x: bf16, y: bf16) : bf16``; after:
``Cast(Binary('+', Cast(x, f32), Cast(y, f32)) : f32, bf16, rne_bits)``.
Products take bf16 operands upcast to f32 (exact), with f32 accumulation either way.

Triton 3.6's interpreter has no ``tl.dot_scaled`` at all, and 3.9's reads nvfp4's e4m3 scales as e8m0: a
block-scaled product lowered for sm_100 (passes/block_scaled_dot.py, forced on the CPU with ``arch=100``)
is refused with a BackendError where the interpreter cannot run it exactly.
"""

from __future__ import annotations

from dataclasses import replace

from tilec.errors import BackendError
from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.passes.rewrite import map_exprs

_ARITHMETIC = (ir.Unary, ir.Binary, ir.Math, ir.Where, ir.Reduce, ir.Full, ir.QuantLoad)


def interpreter_workarounds(kernel: ir.Kernel) -> ir.Kernel:
    return map_exprs(kernel, _exact_bf16)


def _f32(e: ir.Expr) -> ir.Expr:
    if e.type.dtype != dt.bf16:
        return e
    if isinstance(e, ir.Const):
        return ir.Const(float(e.value), e.type.with_dtype(dt.f32), e.span)
    return ir.Cast(e, e.type.with_dtype(dt.f32), e.span)


def _to_bf16(e: ir.Expr) -> ir.Expr:
    """Round an expression to bf16 exactly (from any dtype, through f32)."""
    if e.type.dtype != dt.f32:
        e = ir.Cast(e, e.type.with_dtype(dt.f32), e.span)
    return ir.Cast(e, e.type.with_dtype(dt.bf16), e.span, rounding="rne_bits")


def interpreter_runs_dot_scaled() -> bool:
    """Triton 3.9's interpreter emulates ``tl.dot_scaled``; 3.6's has no such operation (probed)."""
    from triton.runtime.interpreter import InterpreterBuilder

    return hasattr(InterpreterBuilder, "create_dot_scaled")


def interpreter_decodes_e4m3_scales() -> bool:
    """Whether the interpreter's ``tl.dot_scaled`` reads fp8_e4m3 (nvfp4) scales as e4m3.  Triton 3.9's reads
    every scale as e8m0 (probed: the e4m3 scale 2.0, code 0x40, becomes 2**-63); asked of its scale
    decoder directly, so a Triton that fixes it is used as soon as it exists."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    decode = getattr(interpreter, "_dot_scaled_scale_to_f32", None)
    if decode is None or not interpreter_runs_dot_scaled():
        return False
    try:
        value = decode(interpreter.TensorHandle(np.array([0x40], dtype=np.uint8), tl.float8e4nv), tl.bfloat16)
        return float(np.asarray(value).reshape(-1)[0]) == 2.0
    except Exception:  # a changed private API: assume the worst
        return False


def _exact_bf16(e: ir.Expr) -> ir.Expr:
    if isinstance(e, ir.ScaledDot) and not interpreter_runs_dot_scaled():
        raise BackendError("this Triton's CPU interpreter cannot run tl.dot_scaled (Triton 3.6's has no such "
                           "operation), so the sm_100 lowering of this product cannot run on the CPU", e.span,
                           hint="specialise without arch=100 on the CPU (the dequantising lowering), or use "
                                "Triton >= 3.9")
    if isinstance(e, ir.ScaledDot) and e.block == 16 and not interpreter_decodes_e4m3_scales():
        raise BackendError("this Triton's CPU interpreter reads tl.dot_scaled's e4m3 (nvfp4) scales as e8m0, so "
                           "the sm_100 lowering of this nvfp4 product would compute wrong values on the CPU",
                           e.span, hint="specialise without arch=100 on the CPU (the dequantising lowering)")
    if isinstance(e, ir.Cast) and e.type.dtype.is_fp8 and not e.operand.type.dtype.is_fp8:
        # Triton 3.9's interpreter misrounds float -> fp8 (about 3% of values) and does not saturate.
        raise BackendError("converting to fp8 inside a kernel is not exact in Triton's CPU interpreter", e.span,
                           hint="encode fp8 inputs on the host (tensor.to(torch.float8_e4m3fn)); on CUDA tensors "
                                "this kernel runs as written")
    if isinstance(e, ir.Dot) and e.a.type.dtype == dt.bf16:
        return replace(e, a=_f32(e.a), b=_f32(e.b))
    if isinstance(e, ir.Compare) and e.left.type.dtype == dt.bf16:
        return replace(e, left=_f32(e.left), right=_f32(e.right))
    if isinstance(e, ir.Cast) and e.type.dtype == dt.bf16 and e.rounding == "native":
        return _to_bf16(e.operand)
    if isinstance(e, _ARITHMETIC) and e.type.dtype == dt.bf16:
        wide = e.type.with_dtype(dt.f32)
        if isinstance(e, (ir.Unary, ir.Reduce)):
            widened: ir.Expr = replace(e, operand=_f32(e.operand), type=wide)
        elif isinstance(e, ir.Binary):
            widened = replace(e, left=_f32(e.left), right=_f32(e.right), type=wide)
        elif isinstance(e, ir.Math):
            widened = replace(e, args=tuple(_f32(a) for a in e.args), type=wide)
        elif isinstance(e, ir.Where):
            widened = replace(e, then=_f32(e.then), otherwise=_f32(e.otherwise), type=wide)
        else:
            widened = replace(e, type=wide)
        return _to_bf16(widened)
    return e
