"""Structural invariants of the IR, checked between passes.

A failure here is a tilec bug (a pass broke an invariant), never a user error,
so it raises AssertionError-like ``IRVerificationError`` with the offending node.
"""

from __future__ import annotations

from tilec.ir import nodes as ir
from tilec.ir.types import broadcast_axes


class IRVerificationError(AssertionError):
    pass


def verify(kernel: ir.Kernel) -> None:
    tiles = kernel.tile_vars()
    for name, tv in tiles.items():
        _require(tv.block is not None, f"tile {name} has no block after tiling")
    defined: set[str] = set()
    for stmt in ir.walk_stmts(kernel.body.body):
        if isinstance(stmt, ir.Assign):
            _expr(stmt.value, defined)
            defined.add(stmt.name)
        elif isinstance(stmt, ir.Store):
            param = kernel.param(stmt.tensor)
            _require(isinstance(param, ir.TensorParam), f"store into non-tensor {stmt.tensor}")
            _expr(stmt.value, defined)
            _require(stmt.value.type.dtype == param.dtype, f"store of {stmt.value.type} into {param.dtype} tensor")


def _expr(e: ir.Expr, defined: set[str]) -> None:
    for node in ir.walk_exprs(e):
        if isinstance(node, ir.Var):
            _require(node.name in defined, f"{node.name} used before assignment")
        elif isinstance(node, (ir.Binary, ir.Compare)):
            _require(node.left.type.dtype == node.right.type.dtype, f"operand dtypes differ in {node.op}")
            _require(broadcast_axes(node.left.type.axes, node.right.type.axes) is not None, "operands do not broadcast")
        elif isinstance(node, ir.ScaledDot):
            _require(node.a.type.axes[1] == node.b.type.axes[1], "scaled dot contracted axes differ")
            _require(node.acc is None or node.acc.type == node.type, "scaled dot accumulator type differs")
        elif isinstance(node, ir.Dot):
            _require(node.a.type.dtype == node.b.type.dtype, "dot operand dtypes differ")
            _require(node.a.type.axes[1] == node.b.type.axes[0], "dot contracted axes differ")
            if node.acc is not None:
                _require(node.acc.type == node.type, "dot accumulator type differs")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise IRVerificationError(message)
