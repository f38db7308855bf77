"""Per-operation lowerings: one function per IR expression node, registered by node type.

Each lowering returns a Triton expression as text.  Loads are hoisted into
named statements by the emitter (so a reader sees ``a_tile = tl.load(...)``);
everything else nests, parenthesised.  Numbers are written with ``repr`` of a
parsed ``int``/``float``, never copied from the spec's text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from tilec.ir import dtypes as dt
from tilec.ir import nodes as ir
from tilec.ir.types import TileType

if TYPE_CHECKING:
    from tilec.codegen.triton_emit import Emitter

Lowering = Callable[["Emitter", ir.Expr], str]
LOWERINGS: dict[type, Lowering] = {}


def lowers(node_type: type) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        LOWERINGS[node_type] = fn
        return fn
    return register


def literal(value: int | float | bool) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return repr(int(value))
    value = float(value)
    if math.isinf(value):
        return 'float("inf")' if value > 0 else 'float("-inf")'
    if math.isnan(value):
        return 'float("nan")'
    return repr(value)


def arg(em: Emitter, e: ir.Expr) -> str:
    """An expression in argument position: no outer parentheses needed."""
    return strip_parens(em.expr(e))


def identity(op: str, dtype: dt.DType) -> str:
    """The neutral element of a reduction, written for ``dtype``."""
    if op == "sum":
        return "0.0" if dtype.is_float else "0"
    if dtype.is_float:
        return literal(-math.inf if op == "max" else math.inf)
    bits = dtype.bits if dtype.kind == "int" else dtype.bits + 1
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if dtype.kind == "uint":
        lo, hi = 0, 2**dtype.bits - 1
    return literal(lo if op == "max" else hi)


@lowers(ir.Const)
def _const(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Const)
    return literal(e.value)


@lowers(ir.ScalarArg)
@lowers(ir.DimValue)
@lowers(ir.GridValue)
@lowers(ir.Var)
def _name(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, (ir.ScalarArg, ir.DimValue, ir.GridValue, ir.Var))
    return em.names[e.name]


@lowers(ir.Load)
def _load(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Load)
    return em.load(e)


@lowers(ir.QuantLoad)
def _quant_load(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.QuantLoad)
    from tilec.codegen.quant_load import emit_quant_load  # imports this module's helpers

    return emit_quant_load(em, e)


@lowers(ir.ScaledDot)
def _scaled_dot(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.ScaledDot)
    from tilec.codegen.scaled_dot import emit_scaled_dot  # imports this module's helpers

    return emit_scaled_dot(em, e)


@lowers(ir.GroupScale)
def _group_scale(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.GroupScale)
    from tilec.codegen.quant_load import emit_group_scale

    return emit_group_scale(em, e)


@lowers(ir.TilePositions)
def _positions(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.TilePositions)
    offs = em.offsets[e.tile]
    return f"{offs}.to(tl.int32)" if em.int64 else offs


@lowers(ir.Unary)
def _unary(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Unary)
    return f"({'-' if e.op == 'neg' else '~'}{em.expr(e.operand)})"


@lowers(ir.Binary)
@lowers(ir.Compare)
def _binary(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, (ir.Binary, ir.Compare))
    if isinstance(e, ir.Binary) and e.op in ("+", "-") and isinstance(e.left, ir.Cast) and \
            isinstance(e.right, ir.Const) and e.type.dtype == e.left.type.dtype:
        shift = float(e.right.value) * (1.0 if e.op == "-" else -1.0)
        folded = magic_cast(em, e.left, shift)  # (code - c).to(T): the magic's own subtraction takes c
        if folded is not None:
            return folded
    return f"({em.expr(e.left)} {e.op} {em.expr(e.right)})"


# A small non-negative integer c becomes a 16-bit float without a conversion instruction: OR-ed into the
# mantissa of 2**p (f16 1024.0 = 0x6400, bf16 128.0 = 0x4300) it is the float 2**p + c, exactly, for
# c < 2**p; one subtraction (paired, HADD2) gives c.  Triton's own u8 -> bf16 cast costs a byte extract
# (PRMT) and an I2F per element (decode attention over int4 codes: 18.4 -> 13.9 instructions per byte).
# The interpreter cannot bitcast to bf16 (no get_bf16), so on CPU only the f16 form is used.
_MAGIC = {"f16": (0x6400, 1024.0), "bf16": (0x4300, 128.0)}


def _code_bound(e: ir.Expr) -> int | None:
    """An exclusive upper bound of a non-negative integer tile, where one is plain to see."""
    dtype = e.type.dtype
    if not dtype.is_int:
        return None
    if isinstance(e, ir.Binary) and e.op == "&":
        for mask in (e.left, e.right):
            if isinstance(mask, ir.Const) and isinstance(mask.value, int) and 0 <= mask.value < 2 ** 15 and \
                    (dtype.kind == "uint" or mask.value < 2 ** (dtype.bits - 1)):
                return mask.value + 1
    if dtype.kind == "uint" and dtype.bits <= 8:
        return 2**dtype.bits
    return None


def magic_cast(em: Emitter, e: ir.Cast, shift: float = 0.0) -> str | None:
    """``(x.to(T) - shift)`` by the 2**p magic (see _MAGIC), or None where it does not apply exactly."""
    magic = _MAGIC.get(e.type.dtype.name)
    bound = _code_bound(e.operand)
    if magic is None or bound is None or e.rounding != "native" or (e.type.dtype.name == "bf16" and em.target == "cpu"):
        return None
    bits, base = magic
    # 2**p + c exact needs c < 2**p; base + shift must be a float of T and the result an integer T holds
    if bound > base or not float(shift).is_integer() or abs(shift) > base:
        return None
    field = _byte_field(e.operand) if em.target == "cuda" and _elements(em, e.type) % 4 == 0 else None
    if field is None:
        biased = f"({em.expr(e.operand)}.to(tl.uint16) | {hex(bits)}).to({e.type.dtype.triton}, bitcast=True)"
    else:
        biased = _byte_field_asm(em.expr(field[0]), field[1], field[2], bits, e.type.dtype.triton)
    return f"({biased} - {literal(base + shift)})" if base + shift else biased


def _elements(em: Emitter, ttype: TileType) -> int:
    """The tile's element count (its blocks are constants of the specialisation)."""
    full = dict(em.kernel.full_blocks)
    tiles = em.kernel.tile_vars()
    count = 1
    for axis in ttype.axes:
        count *= 1 if axis.kind == "one" else full[axis.name] if axis.kind == "full" else tiles[axis.name].block or 0
    return count


def _byte_field(e: ir.Expr) -> tuple[ir.Expr, int, int] | None:
    """(x, s, m) where ``e`` is ``(x >> s) & m`` or ``x & m`` of a uint8 tile x (x itself: m = 255)."""
    if e.type.dtype.name != "u8":
        return None
    x, shift, mask = e, 0, 0xFF
    if isinstance(e, ir.Binary) and e.op == "&" and isinstance(e.right, ir.Const):
        value = e.right.value
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
            return None
        x, mask = e.left, value
    if isinstance(x, ir.Binary) and x.op == ">>" and isinstance(x.right, ir.Const):
        value = x.right.value
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 8:
            return None
        shift = value
        x = x.left
    if x.type.dtype.name != "u8":
        return None
    return x, shift, mask & (0xFF >> shift)


def _byte_field_asm(x: str, shift: int, mask: int, magic: int, dtype: str) -> str:
    """The magic floats ``2**p + ((x >> shift) & mask)`` of a uint8 tile, four codes per instruction group.

    Triton packs four u8 elements into one register (element i in byte i) and takes four 16-bit results
    as two (elements 0, 1 and 2, 3, low half first).  One byte permute spreads the word's bytes as
    (0, 2, 1, 3); then each result register is one shift and one AND-OR: its halves' low bytes are bytes
    (0, 1), or (2, 3) after a further 8-bit shift.  The permute is shared by every field of the same
    bytes (ptxas merges it).  Each result lane depends on its own byte only (``mask <= 0xFF >> shift``),
    so the result does not depend on which elements Triton groups (it pads a thread's last group with undef
    values).  Triton's elementwise form extracts, widens and repacks every byte (PRMT, SHF, PRMT, LOP3 per
    element pair); decode attention over int4 codes: 14.2 -> 12.3 instructions per cache byte (sm_90,
    Triton 3.9)."""
    assert 0 <= shift < 8 and 0 <= mask <= 0xFF >> shift, (shift, mask)
    lanes = f"{mask * 0x00010001:#x}, {magic * 0x00010001:#x}"
    first = f"shr.b32 u, t, {shift}; " if shift else "mov.b32 u, t; "
    asm = ("{ .reg .b32 t, u, w; prmt.b32 t, $2, 0, 0x3120; " + first + f"shr.b32 w, t, {shift + 8}; "
           f"lop3.b32 $0, u, {lanes}, 0xea; lop3.b32 $1, w, {lanes}, 0xea; }}")
    return f'tl.inline_asm_elementwise("{asm}", "=r,=r,r", [{x}], dtype={dtype}, is_pure=True, pack=4)'


@lowers(ir.Where)
def _where(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Where)
    return f"tl.where({arg(em, e.cond)}, {arg(em, e.then)}, {arg(em, e.otherwise)})"


@lowers(ir.Cast)
def _cast(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Cast)
    magic = magic_cast(em, e) if e.type.rank else None
    if magic is not None:
        return magic
    x = em.expr(e.operand)
    if e.rounding == "rne_bits":
        em.line("# f32 -> bf16 rounding to nearest even on the bits (the interpreter's own cast truncates)")
        x = em.bind(x, "wide")
        bits = em.bind(f"{x}.to(tl.uint32, bitcast=True)", "bits")
        rounded = em.bind(f"tl.where({x} != {x}, 0x7FC00000, {bits} + (0x7FFF + (({bits} >> 16) & 1)))", "rounded")
        return em.bind(f"({rounded} >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)", "as_bf16")
    if isinstance(e.operand, (ir.Const, ir.ScalarArg, ir.DimValue)):
        return f"tl.cast({x}, {e.type.dtype.triton})"  # scalars may be plain Python numbers
    return f"{x}.to({e.type.dtype.triton})"


@lowers(ir.View)
def _view(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.View)
    parts = ", ".join(":" if p is not None else "None" for p in e.pattern)
    return f"{em.expr(e.operand)}[{parts}]"


@lowers(ir.Trans)
def _trans(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Trans)
    return f"tl.trans({em.expr(e.operand)})"


@lowers(ir.Full)
def _full(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Full)
    shape = em.shape(e.type)
    if e.value == 0:
        return f"tl.zeros({shape}, dtype={e.type.dtype.triton})"
    return f"tl.full({shape}, {literal(e.value)}, dtype={e.type.dtype.triton})"


@lowers(ir.Reduce)
def _reduce(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Reduce)
    x = arg(em, e.operand)
    if e.guard:
        mask = em.axis_mask(e.operand.type, e.axis)
        x = f"tl.where({mask}, {x}, {identity(e.op, e.operand.type.dtype)})"
    return f"tl.{e.op}({x}, axis={e.axis})"


@lowers(ir.Dot)
def _dot(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Dot)
    a, b = arg(em, e.a), arg(em, e.b)
    zero = "0.0" if e.a.type.dtype.is_float else "0"
    if e.guard_a:  # zero the padding of the contracted axis (see passes/masks.py)
        a = f"tl.where({em.axis_mask(e.a.type, 1)}, {a}, {zero})"
    if e.guard_b:
        b = f"tl.where({em.axis_mask(e.b.type, 0)}, {b}, {zero})"
    from tilec.codegen import quant_int8  # imports this module's helpers

    a = quant_int8.permute_activations(em, e, a)  # where the weights come in a permuted K order
    args = [a, b]
    if e.acc is not None:
        args.append(arg(em, e.acc))
    if e.a.type.dtype == dt.f32:
        args.append('input_precision="ieee"')  # f32 means f32: no silent tf32
    if e.type.dtype == dt.i32:  # Triton 3.6 assumes f32 even with an int32 accumulator: say it
        args.append("out_dtype=tl.int32")
    return f"tl.dot({', '.join(args)})"


# Math: f16/bf16 operands are computed in f32 and rounded once (Triton's libdevice-free builtins).
_UNARY_MATH = {"exp": "tl.exp", "exp2": "tl.exp2", "log": "tl.log", "log2": "tl.log2", "sqrt": "tl.sqrt",
               "rsqrt": "tl.rsqrt", "abs": "tl.abs", "sigmoid": "tl.sigmoid"}


@lowers(ir.Math)
def _math(em: Emitter, e: ir.Expr) -> str:
    assert isinstance(e, ir.Math)
    args = [arg(em, a) for a in e.args]
    half = e.type.dtype.is_half
    if half:
        args = [f"{a}.to(tl.float32)" if a.isidentifier() or a.endswith(")") else f"({a}).to(tl.float32)"
                for a in args]
    if e.fn in ("maximum", "minimum"):
        code = f"tl.{e.fn}({args[0]}, {args[1]}, propagate_nan=tl.PropagateNan.ALL)"
    elif e.fn == "fma":  # a * b + c rounded once (passes/online_softmax.py: the scale after the row max)
        code = f"tl.fma({args[0]}, {args[1]}, {args[2]})"
    elif e.fn in _UNARY_MATH:
        code = f"{_UNARY_MATH[e.fn]}({args[0]})"
    else:
        x = em.bind(args[0], "x")  # the formulas below use their operand more than once
        if e.fn == "silu":
            code = f"({x} * tl.sigmoid({x}))"
        elif e.fn == "gelu":  # exact (erf) GELU, as torch.nn.functional.gelu
            code = f"(0.5 * {x} * (1.0 + tl.erf({x} * 0.7071067811865476)))"
        else:  # tanh from exp, with a series near 0 where 1 - e^(-2|x|) would cancel
            code = (f"tl.where(tl.abs({x}) < 0.05, {x} * (1.0 - {x} * {x} * (0.3333333333333333 - 0.13333333333333333"
                    f" * {x} * {x})), tl.where({x} < 0, -1.0, 1.0) * (1.0 - tl.exp(-2.0 * tl.abs({x})))"
                    f" / (1.0 + tl.exp(-2.0 * tl.abs({x}))))")
    return f"{code}.to({e.type.dtype.triton})" if half else code


def strip_parens(code: str) -> str:
    """Drop one pair of redundant outer parentheses."""
    if code.startswith("(") and code.endswith(")"):
        depth = 0
        for i, c in enumerate(code):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(code) - 1:
                return code
        return code[1:-1]
    return code
