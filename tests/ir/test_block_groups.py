"""Block-scaled formats fix their block (OCP MX: 32, nvfp4: 16): another group is refused, never read wrongly."""

from __future__ import annotations

import pytest
import torch

import tilec
from tilec.errors import ArgumentError, TileTypeError

SPEC = """
def k(w: Tensor[N, K, {fmt}], s: Tensor[N, G, u8], x: Tensor[M, K, f16], out: Tensor[M, N, f16], group: i32):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += x[m, k] @ dequantize(w[n, k], s, None, {group}).to(f16).T
        out[m, n] = acc.to(f16)
"""


@pytest.mark.parametrize("fmt,block,wrong", [("nvfp4", 16, 32), ("mxfp4", 32, 16), ("mxfp8_e4m3", 32, 64)])
def test_a_literal_group_other_than_the_block_is_a_located_error(fmt: str, block: int, wrong: int) -> None:
    with pytest.raises(TileTypeError) as info:
        tilec.compile(SPEC.format(fmt=fmt, group=wrong), name="g.tile")
    text = str(info.value)
    assert "g.tile:6:" in text and f"the group must be {block}, not {wrong}" in text and "^" in text
    tilec.compile(SPEC.format(fmt=fmt, group=block), name="g.tile")  # the block itself is fine


def test_a_scalar_group_other_than_the_block_is_refused_before_launch() -> None:
    k = tilec.compile(SPEC.format(fmt="mxfp4", group="group"), name="g.tile").k
    qw = tilec.quantize(torch.randn(8, 64), "mxfp4")
    x, out = torch.randn(2, 64).half(), torch.full((2, 8), float("nan")).half()
    with pytest.raises(ArgumentError, match="its group must be 32, not 16"):
        k(qw, qw.scales, x, out, 16)
    assert torch.isnan(out).all()  # nothing ran
    k(qw, qw.scales, x, out, 32)
    ref = x.double() @ qw.dequantize().double().T
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10
