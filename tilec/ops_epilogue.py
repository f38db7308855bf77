"""The fused epilogue every ``tilec.ops.linear`` kernel shares: optional bias, then an activation.

The activation name is the only user text that reaches a spec here, and only through this table.
"""

from __future__ import annotations

from tilec.errors import ArgumentError

ACTIVATIONS = {None: "{}", "silu": "silu({})", "gelu": "gelu({})", "relu": "maximum({}, 0.0)"}


def check_activation(activation: str | None) -> None:
    if activation not in ACTIVATIONS:
        raise ArgumentError(f"unknown activation '{activation}'", hint="one of: silu, gelu, relu, or None")


def epilogue(value: str, has_bias: bool, activation: str | None) -> str:
    """Spec text for ``activation(value + bias[n])`` (bias only when ``has_bias``), parenthesised."""
    check_activation(activation)
    return "(" + ACTIVATIONS[activation].format(f"{value} + bias[n]" if has_bias else value) + ")"


def bias_param(has_bias: bool) -> str:
    return "bias: Tensor[N, T], " if has_bias else ""
