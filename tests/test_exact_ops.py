"""The order-independent operators of the portable entropy path (lalic_cli.portable.ops):
each against its float counterpart (error bounds), and exactness: the same bits under a
shuffled summation order, other thread counts, and other memory layouts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lalic_cli.portable import ops


def rand(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def rel_err(got, want):
    return float((got - want).abs().max() / want.abs().max())


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.int64), b.view(torch.int64))


def test_pow2_is_exact():
    e = torch.arange(-1022, 1024)
    assert torch.equal(ops.pow2(e), torch.tensor([math.ldexp(1.0, int(i)) for i in e], dtype=torch.float64))


def test_quantize_bounds_and_grid():
    x = rand(1000, scale=37.0)
    q, s = ops.quantize(x, 22)
    assert q.abs().max() <= 2**22 and q.abs().max() > 2**21
    assert torch.equal(q, q.round())
    assert float((q * 2.0**-s - x).abs().max()) <= 2.0 ** (-s - 1)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 300.0])
def test_linear_matches_float(scale):
    x, w, b = rand(64, 96, seed=1, scale=scale), rand(40, 96, seed=2) * 0.1, rand(40, seed=3)
    got = ops.linear(x, ops.QuantWeight(w, b))
    want = x @ w.t() + b
    # x carries 22 bits and w 17 bits of their maxima: the error stays near 2^-17 of the scale
    assert rel_err(got, want) < 3e-5


def test_linear_is_independent_of_summation_order():
    """Permuting the reduction dimension reorders every sum; the bits must not change."""
    x, w = rand(33, 257, seed=4), rand(19, 257, seed=5)
    perm = torch.randperm(257, generator=torch.Generator().manual_seed(0))
    a = ops.linear(x, ops.QuantWeight(w))
    b = ops.linear(x[:, perm], ops.QuantWeight(w[:, perm]))
    assert same_bits(a, b)


def test_results_do_not_depend_on_thread_count():
    x, w = rand(512, 320, seed=6), rand(640, 320, seed=7)
    img, kw = rand(1, 48, 24, 20, seed=8), rand(32, 48, 3, 3, seed=9)
    before = torch.get_num_threads()
    outs = []
    try:
        for n in (1, max(2, before)):
            torch.set_num_threads(n)
            outs.append((ops.linear(x, ops.QuantWeight(w)), ops.conv2d(img, ops.QuantWeight(kw), padding=1)))
    finally:
        torch.set_num_threads(before)
    assert same_bits(outs[0][0], outs[1][0]) and same_bits(outs[0][1], outs[1][1])


def test_results_do_not_depend_on_memory_layout():
    img, kw = rand(2, 16, 12, 10, seed=10), rand(8, 16, 5, 5, seed=11)
    w = ops.QuantWeight(kw)
    a = ops.conv2d(img, w, padding=2)
    b = ops.conv2d(img.contiguous(memory_format=torch.channels_last), w, padding=2)
    assert same_bits(a, b.contiguous())


@pytest.mark.parametrize("stride,padding,groups,k", [(1, 1, 1, 3), (2, 2, 1, 5), (1, 2, 16, 5), (1, 0, 1, 1), (1, 2, 4, 5)])
def test_conv2d_matches_float(stride, padding, groups, k):
    x = rand(2, 16, 13, 11, seed=12)
    cout = 16 if groups == 16 else 24
    w, b = rand(cout, 16 // groups, k, k, seed=13) * 0.2, rand(cout, seed=14)
    got = ops.conv2d(x, ops.QuantWeight(w, b), stride=stride, padding=padding, groups=groups)
    want = F.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
    assert got.shape == want.shape
    assert rel_err(got, want) < 3e-5


@pytest.mark.parametrize("k,padding", [(5, 2), (3, 1)])
def test_conv_transpose2d_matches_float(k, padding):
    x = rand(2, 12, 5, 7, seed=15)
    w, b = rand(12, 20, k, k, seed=16) * 0.2, rand(20, seed=17)
    got = ops.conv_transpose2d(x, ops.QuantWeight(w, b), stride=2, padding=padding, output_padding=1)
    want = F.conv_transpose2d(x, w, b, stride=2, padding=padding, output_padding=1)
    assert got.shape == want.shape == (2, 20, 10, 14)
    assert rel_err(got, want) < 3e-5


def test_layer_norm_matches_float():
    x = rand(7, 9, 128, seed=18, scale=5.0) + 3.0
    g, b = rand(128, seed=19), rand(128, seed=20)
    got = ops.layer_norm(x, g, b, 1e-5)
    want = F.layer_norm(x, (128,), g, b, 1e-5)
    assert rel_err(got, want) < 1e-5


def test_layer_norm_is_independent_of_channel_order():
    x = rand(50, 96, seed=21)
    perm = torch.randperm(96, generator=torch.Generator().manual_seed(1))
    ones, zeros = torch.ones(96, dtype=torch.float64), torch.zeros(96, dtype=torch.float64)
    a = ops.layer_norm(x, ones, zeros, 1e-6)
    b = ops.layer_norm(x[:, perm], ones, zeros, 1e-6)
    assert same_bits(a[:, perm], b)


def test_exp_and_sigmoid_match_libm():
    x = torch.linspace(-700, 700, 200001, dtype=torch.float64)
    got, want = ops.exp(x), torch.exp(x)
    assert float(((got - want) / want).abs().max()) < 1e-14
    s = torch.linspace(-40, 40, 10001, dtype=torch.float64)
    assert float((ops.sigmoid(s) - torch.sigmoid(s)).abs().max()) < 1e-15


def test_exp_known_values():
    """Hand-checked anchors: e^0 = 1 exactly, e^1 and e^-1 to the last ulp or two."""
    v = ops.exp(torch.tensor([0.0, 1.0, -1.0, math.log(2.0)], dtype=torch.float64))
    assert float(v[0]) == 1.0
    assert math.isclose(float(v[1]), math.e, rel_tol=4e-16)
    assert math.isclose(float(v[2]), 1 / math.e, rel_tol=4e-16)
    assert math.isclose(float(v[3]), 2.0, rel_tol=4e-16)


def test_bound_on_terms_is_enforced():
    w = ops.QuantWeight(torch.ones(1, ops.MAX_TERMS + 1))
    with pytest.raises(ValueError, match="exact bound"):
        ops.linear(torch.ones(1, ops.MAX_TERMS + 1), w)


def test_non_finite_input_is_an_error():
    with pytest.raises(ValueError, match="non-finite"):
        ops.quantize(torch.tensor([1.0, float("nan")]))


@pytest.mark.parametrize("T", [1, 2, 63, 64, 65, 200, 1000])
@pytest.mark.parametrize("decay", [0.5, 5.0, 30.0])
def test_biwkv_matches_the_formula(T, decay):
    """Against the naive O(T^2) float64 formula, for decays far beyond a global scan's reach."""
    from lalic_cli.ops.biwkv import biwkv_reference

    B, C = 2, 5
    w = rand(C, seed=30) * decay / T
    u = rand(C, seed=31) / T
    k = rand(B, T, C, seed=32, scale=4.0)
    v = rand(B, T, C, seed=33)
    got = ops.biwkv(w, u, k, v)
    want = biwkv_reference(w, u, k, v)
    assert rel_err(got, want) < 1e-5


def test_biwkv_is_independent_of_batch_position_and_threads():
    """Each sequence's result is its own: the same bits alone, inside a batch, and under
    another thread count."""
    B, T, C = 3, 300, 7
    w, u = rand(C, seed=34) * 3 / T, rand(C, seed=35) / T
    k, v = rand(B, T, C, seed=36, scale=3.0), rand(B, T, C, seed=37)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.biwkv(w, u, k, v)
        torch.set_num_threads(max(2, before))
        two = ops.biwkv(w, u, k, v)
    finally:
        torch.set_num_threads(before)
    assert same_bits(one, two)
    # v enters on a grid of the whole tensor's maximum: rescale a lone sequence to the same grid
    alone = ops.biwkv(w, u, k[1:2], v[1:2] * (v.abs().max() / v[1:2].abs().max()))
    assert rel_err(alone, one[1:2] * (v.abs().max() / v[1:2].abs().max())) < 1e-5


@pytest.mark.parametrize("B,T,C,decay", [(1, 1, 3, 1.0), (2, 2, 3, 30.0), (2, 65, 5, 3.0), (1, 300, 17, 0.1), (2, 200, 5, 30.0)])
def test_biwkv_kernel_gives_the_reference_bits(B, T, C, decay):
    """The C++ kernel is the same sequence of IEEE operations as the PyTorch code."""
    from lalic_cli.kernels import load_extension

    if load_extension("exact") is None:
        pytest.skip("the portable BiWKV kernel could not be built here")
    w, u = rand(C, seed=40) * decay / T, rand(C, seed=41) / T
    k, v = rand(B, T, C, seed=42, scale=4.0), rand(B, T, C, seed=43)
    assert same_bits(ops.biwkv(w, u, k, v, impl="torch"), ops.biwkv(w, u, k, v, impl="kernel"))


def test_log_tanh_softplus_erfc_match_libm():
    x = torch.logspace(-300, 300, 20001, dtype=torch.float64)
    assert float((ops.log(x) - torch.log(x)).abs().max()) < 1e-12
    assert float(ops.log(torch.tensor(1.0, dtype=torch.float64))) == 0.0
    y = torch.linspace(-30, 30, 6001, dtype=torch.float64)
    assert float((ops.tanh(y) - torch.tanh(y)).abs().max()) < 1e-15
    assert float((ops.softplus(y) - F.softplus(y)).abs().max()) < 1e-14
    z = torch.linspace(-6, 6, 6001, dtype=torch.float64)
    assert float(((ops.erfc(z) - torch.erfc(z)) / torch.erfc(z)).abs().max()) < 1.2e-7  # the fit's bound


def test_portable_coder_tables_match_compressai_closely():
    """The portable tables come from portable code; they may differ from CompressAI's float
    ones by a count or two out of 65536, never in shape, offsets or lengths."""
    import copy

    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    from lalic_cli.portable.coder_tables import portable_bottleneck_tables, portable_gaussian_tables

    torch.manual_seed(0)
    eb = EntropyBottleneck(8)
    with torch.no_grad():
        eb.quantiles.add_(torch.randn_like(eb.quantiles) * 0.3)
    eb.update(force=True)
    gc = GaussianConditional(None)
    from compressai.models.base import get_scale_table

    gc.update_scale_table(get_scale_table())
    gc.update()
    for ref, build in ((eb, portable_bottleneck_tables), (gc, portable_gaussian_tables)):
        offset, cdf, cdf_length = build(copy.deepcopy(ref))[-3:]
        assert cdf.shape == ref._quantized_cdf.shape
        assert torch.equal(offset, ref._offset) and torch.equal(cdf_length, ref._cdf_length)
        assert int((cdf.long() - ref._quantized_cdf.long()).abs().max()) <= 4


def test_sqrt_is_correctly_rounded():
    """Against Python's math.sqrt (IEEE-754's correctly rounded square root), where
    PyTorch's own CPU sqrt is one ulp off for about 1 % of inputs."""
    x = rand(20000, seed=50).abs() * 10 + 1e-3
    want = torch.tensor([math.sqrt(v) for v in x.tolist()], dtype=torch.float64)
    assert same_bits(ops.sqrt(x), want)


def _needs_kernel():
    from lalic_cli.kernels import load_extension

    if load_extension("exact") is None:
        pytest.skip("the portable kernel could not be built here")


def _edge_values() -> torch.Tensor:
    """Ties, signed zeros, the clamps of exp and values far outside them."""
    edges = [0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.5, -0.3, 699.9, 700.1, -700.1, -1e3, 1e-300, -1e-300]
    return torch.cat([torch.tensor(edges, dtype=torch.float64), rand(50000, seed=51, scale=40.0)])


def test_elementwise_kernels_give_the_reference_bits():
    _needs_kernel()
    x = _edge_values()
    for op in (ops.exp, ops.sigmoid):
        assert same_bits(op(x, impl="torch"), op(x, impl="kernel")), op.__name__
    for s in (-3, 0, 5):
        y = x * 2.0 ** -s
        (a, sa), (b, sb) = ops.quantize(y, impl="torch"), ops.quantize(y, impl="kernel")
        assert sa == sb and same_bits(a, b)
    f32 = rand(3, 64, 7, 5, seed=52).float()
    (a, sa), (b, sb) = ops.quantize(f32, impl="torch"), ops.quantize(f32, impl="kernel")
    assert sa == sb and same_bits(a, b)


def test_kernel_quantize_rejects_non_finite_input():
    _needs_kernel()
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            ops.quantize(torch.tensor([1.0, bad, 2.0]), impl="kernel")


@pytest.mark.parametrize("shape,scale", [((300, 96), 1.0), ((2, 40, 128), 1e-3), ((7, 320), 50.0), ((3, 5, 1), 1.0)])
def test_layer_norm_kernel_gives_the_reference_bits(shape, scale):
    _needs_kernel()
    x = rand(*shape, seed=53, scale=scale).float()
    g, b = rand(shape[-1], seed=54), rand(shape[-1], seed=55)
    assert same_bits(ops.layer_norm(x, g, b, 1e-6, impl="torch"), ops.layer_norm(x, g, b, 1e-6, impl="kernel"))


@pytest.mark.parametrize("k,padding,bias", [(5, 2, True), (3, 1, False), (5, 0, True)])
def test_depthwise_kernel_and_bias_give_the_reference_bits(k, padding, bias):
    _needs_kernel()
    c = 12
    x = rand(2, c, 9, 7, seed=56)
    w = ops.QuantWeight(rand(c, 1, k, k, seed=57), rand(c, seed=58) if bias else None)
    got = ops.conv2d(x, w, padding=padding, groups=c, impl="kernel")
    assert same_bits(ops.conv2d(x, w, padding=padding, groups=c, impl="torch"), got)
    # and against PyTorch's own float64 convolution, to the bound of the other conv tests
    want = F.conv2d(x, rand(c, 1, k, k, seed=57), rand(c, seed=58) if bias else None, padding=padding, groups=c)
    assert rel_err(got, want) < 3e-5


def test_one_dim_depthwise_kernel_matches_the_reference():
    """A 1 x 5 kernel on a 1 x T map, as the 1-D OmniShift runs."""
    _needs_kernel()
    c = 6
    x = F.pad(rand(2, c, 1, 40, seed=59), (2, 2))
    w = ops.QuantWeight(rand(c, 1, 1, 5, seed=60))
    assert same_bits(ops.conv2d(x, w, groups=c, impl="torch"), ops.conv2d(x, w, groups=c, impl="kernel"))


def test_stacked_linears_give_the_bits_of_separate_ones():
    """One GEMM over stacked weights: every output is the integer sum its own weight gives."""
    x = rand(2, 50, 32, seed=61)
    ws = [ops.QuantWeight(rand(n, 32, seed=62 + n), rand(n, seed=70 + n) if n != 8 else None) for n in (16, 8, 24)]
    stacked = ops.linear_many(x, ops.QuantStack(ws))
    for got, w in zip(stacked, ws):
        assert got.shape == (2, 50, w.shape[0])
        assert same_bits(got, ops.linear(x, w))
    with pytest.raises(ValueError, match="input width"):
        ops.QuantStack([ops.QuantWeight(rand(4, 3)), ops.QuantWeight(rand(4, 5))])
