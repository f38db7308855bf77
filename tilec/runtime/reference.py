"""The float64 reference: a spec's ``example`` block evaluated on whole tensors.

An example states the mathematics (``out = gelu(a @ b + bias) + res``) with
no tiles, blocks or masks; this evaluator runs it in float64 with torch on the
CPU.  Casts to floating dtypes are ignored (the reference is exact arithmetic),
so the comparison measures everything the kernel rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from tilec.errors import Span, TileNameError, TileSyntaxError, TileTypeError
from tilec.frontend import ast
from tilec.ir.dtypes import DTYPES


def evaluate(body: tuple[ast.Stmt, ...], env: Mapping[str, Any]) -> dict[str, Any]:
    """Run the statements; returns every name they assign."""
    scope = dict(env)
    assigned: dict[str, Any] = {}
    for stmt in body:
        if not isinstance(stmt, ast.Assign) or not isinstance(stmt.target, ast.Name):
            raise TileSyntaxError("an example body holds only assignments `name = expression`", _span(stmt))
        value = _eval(stmt.value, scope)
        scope[stmt.target.id] = assigned[stmt.target.id] = value
    return assigned


def _functions() -> dict[str, Callable[..., Any]]:
    import torch
    import torch.nn.functional as F

    return {
        "exp": torch.exp, "exp2": torch.exp2, "log": torch.log, "log2": torch.log2, "sqrt": torch.sqrt,
        "rsqrt": torch.rsqrt, "abs": torch.abs, "silu": F.silu, "gelu": F.gelu, "sigmoid": torch.sigmoid,
        "tanh": torch.tanh, "maximum": torch.maximum, "minimum": torch.minimum, "where": torch.where,
        "causal": _causal,
    }


def _causal(scores: Any) -> Any:
    """``causal(s)``: scores [..., M, N] with -inf where key j lies after query i's position i + N - M (the last
    query aligned with the last key, as FlashAttention does)."""
    import torch

    m, n = scores.shape[-2:]
    i = torch.arange(m)[:, None]
    j = torch.arange(n)[None, :]
    return scores.masked_fill(j > i + (n - m), -math.inf)


_REDUCTIONS = {"sum", "max", "min", "mean", "softmax"}


def _eval(node: ast.Expr, env: Mapping[str, Any]) -> Any:
    import torch

    if isinstance(node, (ast.Int, ast.Float, ast.Bool)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        if node.id == "inf":
            return math.inf
        raise TileNameError(f"name '{node.id}' is not defined in this example", node.span)
    if isinstance(node, ast.UnaryOp) and node.op in ("-", "+"):
        value = _eval(node.operand, env)
        return -value if node.op == "-" else value
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y,
            "@": lambda x, y: x @ y, "//": lambda x, y: x // y, "%": lambda x, y: x % y,
        }
        if node.op not in ops:
            raise TileSyntaxError(f"'{node.op}' is not supported in examples", node.span)
        return ops[node.op](a, b)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        a, b = _eval(node.operands[0], env), _eval(node.operands[1], env)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[node.ops[0]]
    if isinstance(node, ast.Attribute) and node.attr == "T":
        value = _eval(node.value, env)
        return value.mT if value.dim() > 2 else value.T  # batched: the last two axes
    if isinstance(node, ast.Subscript):
        value = _eval(node.value, env)
        index = tuple(None if isinstance(i, ast.NoneLit) else slice(None) for i in node.indices)
        return value[index]
    if isinstance(node, ast.Call):
        return _call(node, env, torch)
    raise TileSyntaxError("this expression is not supported in an example", _span(node))


def _call(node: ast.Call, env: Mapping[str, Any], torch: Any) -> Any:
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "to":
        value = _eval(func.value, env)
        target = func_dtype(node.args[0], env) if node.args else None
        if target is not None and not target.is_float:
            return value.to(getattr(torch, target.torch_name)).to(torch.float64)
        return value
    if not isinstance(func, ast.Name):
        raise TileSyntaxError("only builtins can be called in an example", _span(func))
    args = [_eval(a, env) for a in node.args]
    kwargs = {k.name: _eval(k.value, env) for k in node.keywords}
    args = [torch.as_tensor(a, dtype=torch.float64) if isinstance(a, (int, float)) else a for a in args]
    if func.id in _REDUCTIONS:
        axis = kwargs.get("axis", args[1] if len(args) > 1 else None)
        x = args[0]
        if func.id == "softmax":
            return torch.softmax(x, dim=-1 if axis is None else int(axis))
        dims = tuple(range(x.dim())) if axis is None else int(axis)
        if func.id in ("max", "min"):
            return getattr(torch, "amax" if func.id == "max" else "amin")(x, dim=dims)
        return getattr(torch, func.id)(x, dim=dims)
    fns = _functions()
    if func.id not in fns:
        raise TileNameError(f"unknown function '{func.id}' in an example", func.span)
    return fns[func.id](*args)


def func_dtype(node: ast.Expr, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in DTYPES:
            return DTYPES[node.id]
        bound = env.get(node.id)
        if bound is not None and getattr(bound, "torch_name", None):
            return bound
    raise TileTypeError("expected a dtype", _span(node))


def _span(node: object) -> Span:
    span = getattr(node, "span", None)
    assert isinstance(span, Span)
    return span
