"""Bad launch arguments are rejected before anything runs (the poisoned output stays untouched)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tilec
from tilec.errors import ArgumentError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def rmsnorm() -> tilec.Kernel:
    return tilec.compile(EXAMPLES / "rmsnorm.tile").rmsnorm


def _args(m: int = 5, n: int = 24, dtype: torch.dtype = torch.float16) -> dict[str, object]:
    return {"x": torch.randn(m, n, dtype=dtype), "w": torch.randn(n, dtype=dtype),
            "y": torch.full((m, n), float("nan"), dtype=dtype), "eps": 1e-6}


BAD = [
    ("wrong-rank", {"x": torch.randn(5, 24, 1, dtype=torch.float16)}, "'x' must have 2 dimensions"),
    ("dtype-var-mismatch", {"w": torch.randn(24, dtype=torch.bfloat16)}, "'w' must be float16"),
    ("dim-mismatch", {"w": torch.randn(25, dtype=torch.float16)}, "dimension N is 24 from x.shape[1] but 25"),
    ("unsupported-dtype", {"x": torch.randn(5, 24, dtype=torch.complex64)}, "which the tile language does not"),
    ("scalar-as-tensor", {"eps": torch.tensor(1e-6)}, "'eps' is a scalar parameter"),
    ("tensor-as-scalar", {"w": 3.0}, "'w' must be a torch.Tensor"),
    ("aliasing-output", {"y": torch.full((1, 24), float("nan"), dtype=torch.float16).expand(5, 24)},
     "output 'y' has stride 0"),
    ("mixed-devices", {"x": torch.randn(5, 24, dtype=torch.float16, device="meta")},
     "'w' is on cpu but earlier tensors are on meta"),
    ("unsupported-device", {name: torch.empty(shape, dtype=torch.float16, device="meta")
                            for name, shape in (("x", (5, 24)), ("w", (24,)), ("y", (5, 24)))},
     "tensors on meta are not supported"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_arguments_rejected_before_launch(rmsnorm: tilec.Kernel, case: tuple[str, dict, str]) -> None:
    _, changes, fragment = case
    args = _args()
    args.update(changes)
    with pytest.raises(ArgumentError) as info:
        rmsnorm(**args)
    assert fragment in str(info.value)
    y = args["y"]
    assert isinstance(y, torch.Tensor)
    if y.device.type == "cpu":
        assert torch.isnan(y).all()  # nothing was launched


def test_argument_errors_point_at_the_declaration(rmsnorm: tilec.Kernel) -> None:
    args = _args()
    args["x"] = torch.randn(5, dtype=torch.float16)
    with pytest.raises(ArgumentError) as info:
        rmsnorm(**args)
    assert str(info.value).startswith(f"{EXAMPLES / 'rmsnorm.tile'}:2:13: ArgumentError")


def test_missing_extra_and_duplicate_arguments(rmsnorm: tilec.Kernel) -> None:
    args = _args()
    with pytest.raises(ArgumentError, match="missing 'eps'"):
        rmsnorm(args["x"], args["w"], args["y"])
    with pytest.raises(ArgumentError, match="no parameter 'bias'"):
        rmsnorm(**args, bias=1)
    with pytest.raises(ArgumentError, match="two values for 'x'"):
        rmsnorm(args["x"], **args)
    with pytest.raises(ArgumentError, match="takes 4 arguments"):
        rmsnorm(1, 2, 3, 4, 5)


def test_strided_views_and_empty_problems(rmsnorm: tilec.Kernel) -> None:
    base = torch.randn(24, 10, dtype=torch.float16)
    x = base.t()  # 10 x 24, non-unit last stride
    w = torch.randn(24, dtype=torch.float16)
    y = torch.full((10, 24), float("nan"), dtype=torch.float16)
    rmsnorm(x, w, y, 1e-6)
    xf = x.double()
    ref = xf * torch.rsqrt((xf * xf).mean(dim=1, keepdim=True) + 1e-6) * w.double()
    assert (y.double() - ref).abs().max() / ref.abs().max() < 2 * 2.0**-10
    empty = torch.empty(0, 24, dtype=torch.float16)
    rmsnorm(empty, w, empty.clone(), 1e-6)  # nothing to do, and no error


def test_schedule_pinned_per_call_and_per_kernel(rmsnorm: tilec.Kernel) -> None:
    args = _args(m=9)
    rmsnorm(**args, schedule={"m": 2})
    assert not torch.isnan(args["y"]).any()  # type: ignore[arg-type]
    code = rmsnorm.triton_code(M=9, N=24, T="f16", schedule={"m": 2, "num_warps": 2})
    assert "BLOCK_M=2" in code and "num_warps=2" in code
    rmsnorm.pin({"m": 8})
    try:
        assert "BLOCK_M=8" in rmsnorm.triton_code(M=9, N=24, T="f16")
    finally:
        rmsnorm.pin(None)
    with pytest.raises(tilec.ScheduleError, match="not a power of two"):
        rmsnorm(**_args(), schedule={"m": 3})


def test_group_scales_must_cover_k_in_groups_of_group() -> None:
    """A group size that disagrees with the scales' columns would read them out of bounds: caught before launch."""
    import re

    w4a16 = tilec.compile(EXAMPLES / "w4a16.tile").w4a16_linear
    qt = tilec.quantize(torch.randn(8, 200), "uint4", group_size=64)  # 4 groups, the last partial
    assert qt.zeros is not None
    x, out = torch.randn(2, 200).half(), torch.full((2, 8), float("nan")).half()
    with pytest.raises(tilec.ArgumentError, match=re.escape("'scale' has 4 group columns, but K = 200 in groups "
                                                            "of 32 needs 7")) as info:
        w4a16(x, qt, qt.scales.half(), qt.zeros, out, 32)
    assert info.value.hint is not None and "group_size" in info.value.hint
    with pytest.raises(tilec.ArgumentError, match="must be positive, got 0"):
        w4a16(x, qt, qt.scales.half(), qt.zeros, out, 0)
    assert torch.isnan(out).all()  # nothing launched
    w4a16(x, qt, qt.scales.half(), qt.zeros, out, 64)  # the right group size launches
    assert torch.isfinite(out).all()
    w4a8 = tilec.compile(EXAMPLES / "w4a8.tile").w4a8_linear
    q2 = tilec.quantize(torch.randn(8, 200), "uint4", group_size=128, two_level=True)
    assert q2.zeros is not None
    with pytest.raises(tilec.ArgumentError, match="'s2' has 2 group columns"):
        w4a8(torch.zeros(2, 200, dtype=torch.int8), q2, q2.scales, q2.zeros, torch.ones(2), q2.channel_scales,
             out, 64)


GROUP_EXPR = """
def wq(x: Tensor[M, K, f16], w: Tensor[N, K, uint4], scale: Tensor[N, G, f16], zero: Tensor[N, G, u8],
       out: Tensor[M, N, f16], half_group: i32):
    for m, n in tiles(M, N):
        acc = zeros([m, n], f32)
        for k in tiles(K):
            acc += x[m, k] @ dequantize(w[n, k], scale, zero, {group}).T
        out[m, n] = acc.to(f16)
"""


@pytest.mark.parametrize("group,bad_scalar,size,needed,zero_scalar", [("half_group * 2", 16, 32, 7, 0),
                                                                     ("K // 2 - half_group", 30, 70, 3, 100),
                                                                     ("(half_group + 0)", 32, 32, 7, 0)])
def test_group_expressions_are_checked_like_scalar_groups(group: str, bad_scalar: int, size: int, needed: int,
                                                          zero_scalar: int) -> None:
    """A group written as an expression of scalars and dimensions is evaluated at launch and checked too (it
    used to go unchecked: scales with too few columns reached the kernel)."""
    kernel = tilec.compile(GROUP_EXPR.format(group=group), name="wq.tile").wq
    qt = tilec.quantize(torch.randn(8, 200), "uint4", group_size=64)  # 4 group columns
    assert qt.zeros is not None
    x, out = torch.randn(2, 200).half(), torch.full((2, 8), float("nan")).half()
    with pytest.raises(tilec.ArgumentError, match=f"'scale' has 4 group columns, but K = 200 in groups of "
                                                  f"{size} needs {needed}"):
        kernel(x, qt, qt.scales.half(), qt.zeros, out, bad_scalar)
    with pytest.raises(tilec.ArgumentError, match="must be positive, got 0"):
        kernel(x, qt, qt.scales.half(), qt.zeros, out, zero_scalar)
    assert torch.isnan(out).all()  # nothing launched


@pytest.mark.parametrize("split", [1, 2])
def test_group_expressions_compute_the_right_columns(split: int) -> None:
    """dequantize(..., half_group * 2): the group is one expression in the code (k // (half_group * 2), never
    k // half_group * 2, which reads columns past the scales), on the per-weight and deferred-scale paths."""
    kernel = tilec.compile(GROUP_EXPR.format(group="half_group * 2"), name="wq.tile").wq
    gen = torch.Generator().manual_seed(12)
    qt = tilec.quantize(torch.randn(40, 200, generator=gen), "uint4", group_size=64)
    assert qt.zeros is not None
    ref_w = qt.dequantize().double()
    for block in (16, 64):  # K block 64 divides the group: the scale follows each tile's product
        x, out = torch.randn(3, 200, generator=gen).half(), torch.full((3, 40), float("nan")).half()
        kernel(x, qt, qt.scales.half(), qt.zeros, out, 32, schedule={"m": 16, "n": 16, "k": block, "split_k": split})
        ref = x.double() @ ref_w.T
        assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 2 * 2.0**-10


def test_packed_words_must_cover_the_qtensors_shape() -> None:
    """A QTensor whose words are too few (sliced, or packed at another width) would be read out of bounds."""
    from dataclasses import replace

    from tilec.ir.packing import PackedLayout

    w4a16 = tilec.compile(EXAMPLES / "w4a16.tile").w4a16_linear
    qt = tilec.quantize(torch.randn(8, 200), "uint4", group_size=64)  # 25 words per row
    x, out = torch.randn(2, 200).half(), torch.full((2, 8), float("nan")).half()
    bad = [(replace(qt, packed=(qt.packed[0][:, :20],)), r"needs \[8, 25\] packed words; got \[8, 20\]"),
           (replace(qt, packed=(qt.packed[0][:4],)), r"needs \[8, 25\] packed words; got \[4, 25\]"),
           (replace(qt, layout=PackedLayout(8)), "expects 4-bit codes, but its QTensor's layout packs 8")]
    for weight, message in bad:
        with pytest.raises(tilec.ArgumentError, match=message):
            w4a16(x, weight, qt.scales.half(), qt.zeros, out, 64)
    assert torch.isnan(out).all()  # nothing launched
    padded = torch.zeros(8, 32, dtype=torch.int32)  # extra words past the stream are allowed (never read)
    padded[:, :25] = qt.packed[0]
    w4a16(x, replace(qt, packed=(padded,)), qt.scales.half(), qt.zeros, out, 64)
    ref = x.double() @ qt.dequantize().double().T
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 2e-3


def test_the_group_must_be_the_one_the_weight_was_quantised_with() -> None:
    """K = 200 in groups of 50 or of 64 both need 4 scale columns: the column check passes, every read is in
    bounds, and the result was garbage (relative error 0.8).  The QTensor's group_size decides."""
    w4a16 = tilec.compile(EXAMPLES / "w4a16.tile").w4a16_linear
    qt = tilec.quantize(torch.randn(8, 200), "uint4", group_size=64)
    x, out = torch.randn(2, 200).half(), torch.full((2, 8), float("nan")).half()
    with pytest.raises(tilec.ArgumentError, match="'w' was quantised in groups of 64, but the kernel's group is 50"):
        w4a16(x, qt, qt.scales.half(), qt.zeros, out, 50)
    assert torch.isnan(out).all()
    per_channel = tilec.quantize(torch.randn(8, 200), "uint4", group_size=None)
    for group in (200, 256, 4096):  # every group size >= K is one group per row: the same codes
        w4a16(x, per_channel, per_channel.scales.half(), per_channel.zeros, out, group)
        ref = x.double() @ per_channel.dequantize().double().T
        assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 2e-3
