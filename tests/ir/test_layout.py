"""CuTe layout algebra: literal examples from the CuTe docs, and the laws checked by enumeration.

Every layout here is small (size <= 64), so each property is checked on every index against a
naive evaluation written in this file (explicit colexicographic enumeration of the leaves).
"""

from __future__ import annotations

import itertools

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tilec.ir.layout import (
    Layout,
    LayoutError,
    blocked_product,
    coalesce,
    compatible,
    complement,
    composition,
    flatten,
    idx2crd,
    left_inverse,
    logical_divide,
    logical_product,
    make_layout,
    make_layout_from_shape,
    raked_product,
    right_inverse,
    tiled_divide,
    zipped_divide,
)
from tilec.ir.layout_core import leaves, unflatten

L = Layout
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------
# naive references


def table(layout: Layout) -> list[int]:
    """Offsets of layout on range(size): enumerate the flat leaves, the first one fastest."""
    shapes, strides = leaves(layout.shape), leaves(layout.stride)
    out = []
    for rev in itertools.product(*(range(s) for s in reversed(shapes))):
        out.append(sum(c * d for c, d in zip(rev[::-1], strides)))
    return out


def extended(layout: Layout, x: int) -> int:
    """layout(x) for any x >= 0: the flat leaves split x colexicographically, the last leaf unbounded."""
    shapes, strides = leaves(layout.shape), leaves(layout.stride)
    total = 0
    for k, (s, d) in enumerate(zip(shapes, strides)):
        c = x if k == len(shapes) - 1 else x % s
        x //= s
        total += c * d
    return total


def assert_same_function(r: Layout, f, n: int) -> None:
    got = table(r)
    assert len(got) == n
    assert got == [f(i) for i in range(n)], f"{r}"


# ----------------------------------------------------------------------------
# strategies


@st.composite
def structures(draw, k: int):
    """A random nesting of the leaf indices 0..k-1 (in order): 0, (0,), (0,(1,2)), ((0,1),2)..."""

    def build(lo: int, hi: int, depth: int):
        n = hi - lo
        if n == 1 and (depth > 0 or draw(st.booleans())):
            return lo
        if n == 1:
            return (lo,)
        if depth >= 2:
            return tuple(range(lo, hi))
        cuts = sorted(draw(st.sets(st.integers(lo + 1, hi - 1), max_size=n - 1)))
        bounds = [lo, *cuts, hi]
        parts = []
        for a, b in itertools.pairwise(bounds):
            parts.append(a if b - a == 1 else build(a, b, depth + 1))
        return tuple(parts)

    return build(0, k, 0)


def _arrange(draw, shapes: list[int], strides: list[int]) -> Layout:
    shape_of = draw(structures(len(shapes)))
    flat_profile = leaves(shape_of)
    return Layout(unflatten([shapes[i] for i in flat_profile], shape_of),
                  unflatten([strides[i] for i in flat_profile], shape_of))


POW2 = (1, 2, 4, 8)
ANY = (1, 2, 3, 4, 5, 6)


@st.composite
def layouts(draw, extents=ANY, strides=None, max_size=64, max_modes=4):
    strides = st.integers(0, 12) if strides is None else strides
    k = draw(st.integers(1, max_modes))
    shapes, size = [], 1
    for _ in range(k):
        s = draw(st.sampled_from([e for e in extents if size * e <= max_size]))
        shapes.append(s)
        size *= s
    return _arrange(draw, shapes, [draw(strides) for _ in shapes])


def pow2_layouts(max_size=64, strides=(0, 1, 2, 4, 8, 16)):
    return layouts(extents=POW2, strides=st.sampled_from(strides), max_size=max_size)


@st.composite
def chain_layouts(draw, extents=ANY, gaps=(1, 1, 2, 3), max_size=64):
    """Injective, complementable layouts: sorted by stride each stride is a multiple of the extent so far."""
    k = draw(st.integers(1, 3))
    shapes, strides, current, size = [], [], 1, 1
    for _ in range(k):
        s = draw(st.sampled_from([e for e in extents if size * e <= max_size]))
        d = current * draw(st.sampled_from(gaps))
        shapes.append(s)
        strides.append(d)
        current, size = s * d, size * s
    perm = draw(st.permutations(range(k)))
    return _arrange(draw, [shapes[i] for i in perm], [strides[i] for i in perm])


@st.composite
def covering(draw, min_size: int):
    """A power-of-two layout whose size is at least min_size (a last mode is appended when needed)."""
    a = draw(pow2_layouts(max_size=16))
    if a.size >= min_size:
        return a
    extra = 1 << max(0, (-(-min_size // a.size) - 1).bit_length())
    return make_layout(a, L(extra, draw(st.sampled_from((1, 2, 4, 16)))))


@st.composite
def compact_layouts(draw, max_modes=2):
    """Bijections onto range(size): compact strides over a random mode order, then nested."""
    k = draw(st.integers(1, max_modes))
    shapes = [draw(st.sampled_from((1, 2, 3, 4))) for _ in range(k)]
    perm = draw(st.permutations(range(k)))
    strides, acc = [0] * k, 1
    for i in perm:
        strides[i] = acc
        acc *= shapes[i]
    return L(tuple(shapes), tuple(strides)) if k > 1 else L(shapes[0], strides[0])


# ----------------------------------------------------------------------------
# the Layout value


def test_str_and_properties():
    a = L((4, 2), (2, 1))
    assert str(a) == "(4,2):(2,1)"
    assert str(L(8, 1)) == "8:1"
    assert str(L(((2, 2), 3), ((24, 2), 8))) == "((2,2),3):((24,2),8)"
    assert (a.size, a.rank, a.depth, a.cosize) == (8, 2, 1, 8)
    b = L((2, (3, 4)), (1, (2, 12)))
    assert (b.size, b.rank, b.depth, b.cosize) == (24, 2, 2, 1 + 1 + 4 + 36)
    assert (L(5, 3).rank, L(5, 3).depth, L(5, 3).cosize) == (1, 0, 13)
    assert L([4, 2], [2, 1]) == a and hash(L([4, 2], [2, 1])) == hash(a)
    assert {a: 1}[L((4, 2), (2, 1))] == 1
    assert L((4, 2)) == L((4, 2), (1, 4))  # stride defaults to column-major
    assert repr(a) == "Layout((4, 2), (2, 1))"
    assert a[1] == L(2, 1) and b[1, 0] == L(3, 2) and b[1][1] == L(4, 12)
    assert a.modes() == (L(4, 2), L(2, 1)) and L(5, 3)[0] == L(5, 3)
    with pytest.raises(LayoutError):
        a[2]


def test_call():
    a = L((4, 2), (2, 1))
    assert [a(i) for i in range(8)] == [0, 2, 4, 6, 1, 3, 5, 7]
    assert a(1, 1) == a((1, 1)) == 3
    b = L((2, (3, 4)), (1, (2, 12)))
    assert b((1, (2, 3))) == 1 + 4 + 36
    assert b(1, 7) == b((1, (1, 2))) == 1 + 2 + 24  # an int coordinate for a nested mode
    assert b(1 + 2 * 7) == b(1, 7)
    assert L((2, 3), (1, 10))(8) == 40  # past size: the last mode continues (CuTe's convention)
    with pytest.raises(LayoutError):
        a(-1)
    with pytest.raises(LayoutError):
        a((1, 2, 3))


def test_construction_errors():
    for shape, stride in [((4, 2), (1,)), ((4, 2), 1), (0, 1), ((2, -1), (1, 2)), (2.0, 1), (2, 1.5), (4, (1, 2))]:
        with pytest.raises(LayoutError):
            L(shape, stride)


def test_make_layout_flatten_and_compact():
    assert make_layout(L(4, 1), L(2, 4)) == L((4, 2), (1, 4))
    assert make_layout(L((2, 2), (1, 2)), L(3, 4)) == L(((2, 2), 3), ((1, 2), 4))
    assert flatten(L(((2, 2), (3, (1, 5))), ((1, 2), (4, (0, 12))))) == L((2, 2, 3, 1, 5), (1, 2, 4, 0, 12))
    assert flatten(L(7, 3)) == L(7, 3)
    assert make_layout_from_shape((2, (3, 4))) == L((2, (3, 4)), (1, (2, 6)))
    assert make_layout_from_shape((2, (3, 4)), "row") == L((2, (3, 4)), (12, (4, 1)))
    assert make_layout_from_shape(5, "row") == L(5, 1)
    with pytest.raises(LayoutError):
        make_layout_from_shape((2, 3), "diagonal")


@SETTINGS
@given(layouts())
def test_call_agrees_with_enumeration(a):
    assert [a(i) for i in range(a.size)] == table(a)
    assert all(a(idx2crd(i, a.shape)) == a(i) for i in range(a.size))
    assert all(a(i) == extended(a, i) for i in range(a.size, a.size + 5))
    assert a.cosize == max(table(a)) + 1
    for order in ("col", "row"):
        c = make_layout_from_shape(a.shape, order)
        assert sorted(table(c)) == list(range(a.size))


# ----------------------------------------------------------------------------
# coalesce


def test_coalesce_examples():
    assert coalesce(L((2, (1, 6)), (1, (6, 2)))) == L(12, 1)
    assert coalesce(L((2, (1, 6)), (1, (6, 2))), (1, 1)) == L((2, 6), (1, 2))
    assert coalesce(L((2, 4), (1, 2))) == L(8, 1)
    assert coalesce(L((1, 1), (3, 5))) == L(1, 0)
    assert coalesce(L((4, 3), (0, 0))) == L(12, 0)
    assert coalesce(L((2, 3), (2, 1))) == L((2, 3), (2, 1))
    assert coalesce(L(((2, 2), (3, 1)), ((1, 2), (8, 3))), ((1, 1), 1)) == L(((2, 2), 3), ((1, 2), 8))


@SETTINGS
@given(layouts())
def test_coalesce_law(a):
    c = coalesce(a)
    assert c.size == a.size and c.depth <= 1
    assert table(c) == table(a)
    assert all(d != 1 for d in leaves(c.shape)) or c == L(1, 0)
    if isinstance(a.shape, tuple):
        by_mode = coalesce(a, (1,) * a.rank)
        assert by_mode.rank == a.rank and by_mode.depth <= 2
        assert table(by_mode) == table(a)
        assert all(table(m) == table(n) for m, n in zip(by_mode.modes(), a.modes()))


# ----------------------------------------------------------------------------
# composition


def test_composition_examples():
    assert composition(L((6, 2), (8, 2)), L((4, 3), (3, 1))) == L(((2, 2), 3), ((24, 2), 8))
    assert composition(L(20, 2), L((5, 4), (4, 1))) == L((5, 4), (8, 2))
    assert composition(L((10, 2), (16, 4)), L((5, 4), (1, 5))) == L((5, (2, 2)), (16, (80, 4)))
    a = L((12, (4, 8)), (59, (13, 1)))
    assert composition(a, (L(3, 4), L(8, 2))) == L((3, (2, 4)), (236, (26, 1)))
    assert composition(a, (3, 8)) == L((3, (4, 2)), (59, (13, 1)))
    assert composition(a, (None, L(4, 8))) == L((12, 4), (59, 2))
    assert composition(L((3, 6, 2, 8), (1, 3, 18, 36)), L(4, 72)) == L(4, 72)
    assert composition(L(8, 3), 4) == L(4, 3)
    assert composition(L((4, 3), (1, 5)), L(6, 0)) == L(6, 0)


def test_composition_symbolic_strides():
    w, x, y, z = sympy.symbols("w x y z", positive=True)
    a = L((3, 6, 2, 8), (w, x, y, z))
    assert composition(a, L(16, 9)) == L((2, 2, 4), (3 * x, y, z))
    k = sympy.Symbol("K", positive=True)
    rows = L((64, 32), (k, 1))  # a 64x32 tile of a row-major matrix with K columns
    tiled = logical_divide(rows, (L(16, 1), L(8, 1)))
    assert tiled == L(((16, 4), (8, 4)), ((k, 16 * k), (1, 8)))
    assert str(tiled) == "((16,4),(8,4)):((K,16*K),(1,8))"
    assert tiled((3, 1), (2, 1)) == 3 * k + 16 * k + 2 + 8
    with pytest.raises(LayoutError):
        complement(rows)


def test_composition_not_defined():
    with pytest.raises(LayoutError, match="stride divisibility"):
        composition(L((2, 3, 4), (1, 100, 1000)), L(3, 4))
    with pytest.raises(LayoutError, match="shape divisibility"):
        composition(L((4, 3), (1, 10)), L(6, 1))
    with pytest.raises(LayoutError):
        composition(L((4, 3), (1, 10)), (L(2, 1), L(3, 1), L(1, 0)))  # tiler longer than the layout


def overlapping(b: Layout) -> bool:
    """Sorted by stride, does a non-zero-stride mode start at or before the largest offset of those before it?"""
    modes = sorted((d, s) for s, d in zip(leaves(b.shape), leaves(b.stride)) if s > 1 and d != 0)
    return any(d <= sum((s2 - 1) * d2 for d2, s2 in modes[:k]) for k, (d, _) in enumerate(modes))


def test_composition_overlapping_tiler():
    assert composition(L(8, 1), L((2, 2), (1, 1))) == L((2, 2), (1, 1))
    assert composition(L((4, 4), (1, 10)), L((2, 2), (1, 1))) == L((2, 2), (1, 1))
    assert composition(L((2, 2), (0, 1)), L((4, 2), (1, 0))) == L(((2, 2), 2), ((0, 1), 0))
    with pytest.raises(LayoutError, match="not additive"):
        composition(L((2, 2), (0, 1)), L((2, 2), (1, 1)))  # A(1) + A(1) != A(2)
    with pytest.raises(LayoutError, match="not additive"):
        composition(L((6, 2), (6, 3)), L((3, 4), (2, 3)))  # injective B, yet 2*2 + 3*1 carries into A's mode 1


@SETTINGS
@given(pow2_layouts(), pow2_layouts())
def test_composition_law_pow2(a, b):
    try:
        r = composition(a, b)
    except LayoutError:  # powers of two always divide one another: only an overlapping B can fail
        assert overlapping(b)
        return
    assert compatible(b.shape, r.shape)
    ca = coalesce(a)
    assert_same_function(r, lambda i: extended(ca, b(i)), b.size)
    assert all(r(i) == a(b(i)) for i in range(b.size) if b(i) < a.size)


@SETTINGS
@given(layouts(), layouts(strides=st.integers(0, 8)))
def test_composition_law_any(a, b):
    try:
        r = composition(a, b)
    except LayoutError:
        return
    assert compatible(b.shape, r.shape)
    ca = coalesce(a)
    assert_same_function(r, lambda i: extended(ca, b(i)), b.size)


@SETTINGS
@given(st.data())
def test_composition_associative(data):
    c = data.draw(pow2_layouts(max_size=16, strides=(0, 1, 2, 4)).filter(lambda x: not overlapping(x)))
    b = data.draw(covering(c.cosize).filter(lambda x: not overlapping(x)))
    a = data.draw(covering(b.cosize))
    left, right = composition(composition(a, b), c), composition(a, composition(b, c))
    expected = [a(b(c(i))) for i in range(c.size)]
    assert table(left) == expected and table(right) == expected


@SETTINGS
@given(pow2_layouts(), st.data())
def test_composition_by_mode(a, data):
    tiles = pow2_layouts(max_size=8).filter(lambda t: not overlapping(t))
    tiler = tuple(data.draw(st.one_of(st.none(), st.sampled_from((1, 2, 4)), tiles))
                  for _ in range(data.draw(st.integers(1, a.rank))))
    r = composition(a, tiler)
    assert r.rank == a.rank
    for k, t in enumerate(tiler):
        expect = a[k] if t is None else composition(a[k], L(t, 1) if isinstance(t, int) else t)
        assert r[k] == expect


# ----------------------------------------------------------------------------
# complement


@pytest.mark.parametrize(
    "a, m, expected",
    [
        (L(4, 1), 24, L(6, 4)),
        (L(6, 4), 24, L(4, 1)),
        (L((4, 6), (1, 4)), 24, L(1, 0)),
        (L(4, 2), 24, L((2, 3), (1, 8))),
        (L((2, 4), (1, 6)), 24, L(3, 2)),
        (L((2, 2), (1, 6)), 24, L((3, 2), (2, 12))),
        (L(4, 2), (4, 6), L((2, 3), (1, 8))),  # a shape as cotarget: only its size counts
        (L((4, 2), (0, 1)), 8, L(4, 2)),  # stride-0 modes are ignored
    ],
)
def test_complement_examples(a, m, expected):
    assert complement(a, m) == expected


def test_complement_not_defined():
    for a in (L((2, 2), (1, 3)), L((4, 2), (1, 2)), L((2, 2), (1, 1)), L(3, -1)):
        with pytest.raises(LayoutError):
            complement(a, 24)
    assert complement(L(4, 2)) == L(2, 1)  # default cotarget: cosize(A) = 7


def _check_complement(a: Layout, r: Layout, m: int) -> None:
    img = set(table(a))
    values = table(r)
    assert all(x < y for x, y in itertools.pairwise(values))  # ordered (hence injective)
    assert all(v not in img for v in values[1:])  # disjoint from A's image but for 0
    assert make_layout(a, r).cosize >= m and a.size * r.size >= m


@SETTINGS
@given(chain_layouts(), st.integers(1, 4), st.integers(0, 8))
def test_complement_law(a, mult, extra):
    m = a.cosize * mult + extra
    r = complement(a, m)
    _check_complement(a, r, m)
    # A has no stride-0 modes: (A, R) is a bijection onto range(size(A) * size(R)).
    assert sorted(table(make_layout(a, r))) == list(range(a.size * r.size))


@SETTINGS
@given(layouts(strides=st.integers(0, 16)), st.integers(1, 200))
def test_complement_law_any(a, m):
    try:
        r = complement(a, m)
    except LayoutError:
        return
    _check_complement(a, r, m)


# ----------------------------------------------------------------------------
# divide


def test_logical_divide_examples():
    assert complement(L(4, 2), 24) == L((2, 3), (1, 8))
    assert logical_divide(L((4, 2, 3), (2, 1, 8)), L(4, 2)) == L(((2, 2), (2, 3)), ((4, 1), (2, 8)))
    a = L((9, (4, 8)), (59, (13, 1)))
    tiler = (L(3, 3), L((2, 4), (1, 8)))
    d = logical_divide(a, tiler)
    assert make_layout(d[0, 0], d[1, 0]) == L((3, (2, 4)), (177, (13, 2)))
    assert [[m.size for m in mode.modes()] for mode in d.modes()] == [[3, 3], [8, 4]]
    z = zipped_divide(a, tiler)
    assert [m.size for m in z[0].modes()] == [3, 8] and [m.size for m in z[1].modes()] == [3, 4]
    assert z[0] == composition(a, tiler)
    t = tiled_divide(a, tiler)
    assert t[0] == z[0] and t.rank == 3 and (t[1].size, t[2].size) == (3, 4)
    assert logical_divide(L(16, 1), 4) == L((4, 4), (1, 4))
    assert zipped_divide(L(16, 1), 4) == tiled_divide(L(16, 1), 4) == L((4, 4), (1, 4))


@SETTINGS
@given(pow2_layouts(), chain_layouts(extents=POW2, gaps=(1, 1, 2, 4), max_size=16))
def test_logical_divide_law(a, b):
    r = logical_divide(a, b)
    rest = complement(b, a.size)
    full = make_layout(b, rest)
    assert r == composition(a, full)
    assert r[0] == composition(a, b)  # the first mode is the tile
    ca = coalesce(a)
    assert_same_function(r[0], lambda i: extended(ca, b(i)), b.size)
    assert_same_function(r, lambda i: extended(ca, full(i)), b.size * rest.size)
    assert sorted(table(full)) == list(range(full.size)) and full.size >= a.size
    assert set(table(a)) <= set(table(r))  # the tiles cover A


@SETTINGS
@given(pow2_layouts(), st.data())
def test_zipped_divide_first_mode_is_composition(a, data):
    tiler = tuple(data.draw(st.one_of(st.sampled_from((1, 2, 4)), chain_layouts(extents=POW2, gaps=(1, 2), max_size=8)))
                  for _ in range(data.draw(st.integers(1, a.rank))))
    z = zipped_divide(a, tiler)
    assert z[0] == make_layout(*composition(a, tiler).modes()[: len(tiler)])
    assert z.size == logical_divide(a, tiler).size


# ----------------------------------------------------------------------------
# product


def test_logical_product_examples():
    a = L((2, 2), (4, 1))
    assert complement(a, 24) == L((2, 3), (2, 8))
    assert logical_product(a, L(6, 1)) == L(((2, 2), (2, 3)), ((4, 1), (2, 8)))
    assert logical_product(a, L((4, 2), (2, 1))) == L(((2, 2), (4, 2)), ((4, 1), (8, 2)))


def test_blocked_and_raked_examples():
    a, b = L((2, 5), (5, 1)), L((3, 4), (1, 3))  # a 2x5 row-major tile, repeated 3x4 column-major
    assert blocked_product(a, b) == L((6, (5, 4)), (5, (1, 30)))
    assert raked_product(a, b) == L(((3, 2), (4, 5)), ((10, 5), (30, 1)))


def test_logical_product_not_defined():
    # complement(2:3, 8) = (3,2):(1,6), and its first 4 elements are not a layout
    with pytest.raises(LayoutError, match="shape divisibility"):
        logical_product(L(2, 3), L(4, 1))


@SETTINGS
@given(chain_layouts(extents=POW2, gaps=(1, 1, 2, 4)), pow2_layouts(max_size=16))
def test_logical_product_law(a, b):
    try:
        r = logical_product(a, b)
    except LayoutError:  # all powers of two: only an overlapping B can fail
        assert overlapping(b)
        return
    assert r[0] == a and r.size == a.size * b.size
    rep = complement(a, a.size * b.cosize)
    assert compatible(b.shape, r[1].shape)
    assert_same_function(r[1], lambda i: rep(b(i)), b.size)
    if len(set(table(b))) == b.size:  # B injective -> the product is injective
        assert len(set(table(r))) == r.size


@SETTINGS
@given(compact_layouts(), layouts(extents=(1, 2, 3), strides=st.integers(0, 6), max_size=16, max_modes=2))
def test_blocked_and_raked_law(a, b):
    r = max(a.rank, b.rank)
    am = [*a.modes(), L(1, 0)][:r] if r > a.rank else list(a.modes())
    bm = [*b.modes(), L(1, 0)][:r] if r > b.rank else list(b.modes())
    blocked, raked = blocked_product(a, b), raked_product(a, b)
    assert blocked.size == raked.size == a.size * b.size
    for ac in itertools.product(*(range(m.size) for m in am)):
        for bc in itertools.product(*(range(m.size) for m in bm)):
            expect = a(ac if a.rank > 1 else ac[0]) + a.size * b(bc if b.rank > 1 else bc[0])
            bl = tuple(x + m.size * y for x, y, m in zip(ac, bc, am))
            rk = tuple(y + m.size * x for x, y, m in zip(ac, bc, bm))
            assert blocked(bl if r > 1 else bl[0]) == expect
            assert raked(rk if r > 1 else rk[0]) == expect


# ----------------------------------------------------------------------------
# inverses


def test_inverse_examples():
    assert right_inverse(L((4, 2), (2, 1))) == L((2, 4), (4, 1))
    assert right_inverse(L(4, 2)) == L(1, 0)
    assert right_inverse(L((2, 3), (1, 4))) == L(2, 1)
    assert left_inverse(L(4, 2)) == L((2, 4), (4, 1))


@SETTINGS
@given(layouts())
def test_right_inverse_law(a):
    r = right_inverse(a)
    assert all(a(r(i)) == i for i in range(r.size))
    if sorted(table(a)) == list(range(a.size)):
        assert r.size == a.size


@SETTINGS
@given(chain_layouts())
def test_left_inverse_law(a):
    li = left_inverse(a)
    assert all(li(a(i)) == i for i in range(a.size))
