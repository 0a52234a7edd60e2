"""Norms, activations (Snake, GELU, ELU), the parallel adapter and the Conformer: parity,
streaming, dtypes, training and config errors."""

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten

from convert.parity import copy_mlx_to_torch
from mlx_speech.layers import activations as macts
from mlx_speech.layers.adapter import ParallelAdapter
from mlx_speech.layers.conformer import Conformer, ConformerBlock
from mlx_speech.layers.norms import LayerNorm, LayerScale, RMSNorm
from torch_ref.layers import activations as tacts
from torch_ref.layers.adapter import ParallelAdapter as TParallelAdapter
from torch_ref.layers.conformer import Conformer as TConformer
from torch_ref.layers.conformer import ConformerBlock as TConformerBlock
from torch_ref.layers.norms import LayerNorm as TLayerNorm
from torch_ref.layers.norms import LayerScale as TLayerScale
from torch_ref.layers.norms import RMSNorm as TRMSNorm

ATOL = 1e-5


def perturb(module, rng, sigma=0.1):
    module.load_weights([(k, v + mx.array(rng.standard_normal(v.shape).astype(np.float32) * sigma))
                         for k, v in tree_flatten(module.parameters())])
    mx.eval(module.parameters())
    return module


def twins(mlx_cls, torch_cls, rng, **kw):
    m = perturb(mlx_cls(**kw), rng)
    t = torch_cls(**kw).eval()
    copy_mlx_to_torch(m, t)
    return m, t


def run_torch(t, x, **kw):
    with torch.no_grad():
        return t(torch.from_numpy(x), **kw).numpy()


# --- norms ----------------------------------------------------------------------------------


NORM_CASES = [
    pytest.param(LayerNorm, TLayerNorm, dict(dim=24), id="layernorm"),
    pytest.param(LayerNorm, TLayerNorm, dict(dim=24, eps=1e-8, bias=False), id="layernorm_nobias"),
    pytest.param(LayerNorm, TLayerNorm, dict(dim=24, affine=False), id="layernorm_plain"),
    pytest.param(RMSNorm, TRMSNorm, dict(dim=24, eps=1e-6), id="rmsnorm"),
    pytest.param(LayerScale, TLayerScale, dict(dim=24, init=0.3), id="layerscale"),
]


@pytest.mark.parametrize("mcls,tcls,kw", NORM_CASES)
def test_norm_parity_and_names(rng, mcls, tcls, kw):
    m, t = twins(mcls, tcls, rng, **kw)
    assert {k for k, _ in tree_flatten(m.parameters())} == set(t.state_dict())
    x = (rng.standard_normal((2, 7, 24)) * 3 + 1).astype(np.float32)
    assert np.abs(np.array(m(mx.array(x))) - run_torch(t, x)).max() <= ATOL


def test_norms_match_definitions(rng):
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    ln = np.array(LayerNorm(dim=16, eps=1e-5)(mx.array(x)))
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    assert np.abs(ln - ref).max() < 1e-5
    rms = np.array(RMSNorm(dim=16, eps=1e-5)(mx.array(x)))
    assert np.abs(rms - x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5)).max() < 1e-5
    half = LayerNorm(dim=16)
    half.set_dtype(mx.bfloat16)
    y = half(mx.array(x).astype(mx.bfloat16))
    assert y.dtype == mx.bfloat16 and np.abs(np.array(y.astype(mx.float32)) - ref).max() < 0.05


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm, TLayerNorm, TRMSNorm])
def test_norm_errors(cls):
    with pytest.raises(ValueError, match="dim must be a positive int"):
        cls(dim=0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        cls(dim=4, eps=0.0)
    with pytest.raises(ValueError, match="last axis 4"):
        norm = cls(dim=4)
        norm(mx.zeros((2, 3)) if cls in (LayerNorm, RMSNorm) else torch.zeros(2, 3))


# --- activations ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(macts.ACTIVATIONS))
def test_activation_parity(name):
    x = np.linspace(-12, 12, 4001, dtype=np.float32).reshape(1, -1, 1)
    m = np.array(macts.get_activation(name)(mx.array(x)))
    t = tacts.get_activation(name)(torch.from_numpy(x)).numpy()
    assert np.abs(m - t).max() <= max(ATOL, 2e-7 * 12), name


def test_gelu_and_elu_match_definitions():
    x = np.linspace(-8, 8, 2001).astype(np.float32)
    gelu = np.array(macts.gelu(mx.array(x)))
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert np.abs(gelu - ref).max() < 2e-6
    erf_ref = np.array([math.erf(v) for v in x])
    assert np.abs(np.array(macts.erf(mx.array(x))) - erf_ref).max() < 1e-6
    elu = np.array(macts.ELU(alpha=0.7)(mx.array(x)))
    assert np.abs(elu - np.where(x > 0, x, 0.7 * np.expm1(x))).max() < 1e-6
    for mmod, tmod in ((macts.ELU(alpha=0.7), tacts.ELU(alpha=0.7)),
                       (macts.GELU(), tacts.GELU()),
                       (macts.GELU(approximate="tanh"), tacts.GELU(approximate="tanh"))):
        assert np.abs(np.array(mmod(mx.array(x))) - tmod(torch.from_numpy(x)).numpy()).max() < 2e-6
    tanh = np.array(macts.GELU(approximate="tanh")(mx.array(x)))
    assert np.abs(tanh - torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
                  ).max() < 1e-5
    for dtype in (mx.float16, mx.bfloat16):
        low = macts.gelu(mx.array(x).astype(dtype))
        assert low.dtype == dtype
        assert np.abs(np.array(low.astype(mx.float32)) - ref).max() < 0.07


def test_exp_fast_matches_exp_and_has_exact_gradient():
    x = np.concatenate([np.linspace(-80, 0, 100001), [-1e30, -np.inf]]).astype(np.float32)
    y = np.array(macts.exp_fast(mx.array(x)))
    ref = np.exp(x.astype(np.float64))
    assert np.abs(y - ref).max() < 1e-6 and y[-1] == 0.0 and y[-2] == 0.0
    keep = ref > 1e-30
    rel = np.abs(y - ref)[keep] / ref[keep]
    rel_mx = np.abs(np.array(mx.exp(mx.array(x))) - ref)[keep] / ref[keep]
    # float32 x * log2(e) already carries ~|x| * 6e-8 relative error: as good as mx.exp.
    assert rel.max() < 1.2 * rel_mx.max() + 1e-7, (rel.max(), rel_mx.max())
    xs = mx.array(x[-1000:])
    g = mx.grad(lambda v: macts.exp_fast(v).sum())(xs)
    assert np.array_equal(np.array(g), np.array(macts.exp_fast(xs)))


def test_gelu_cpu_kernels_accuracy_specials_and_gradient():
    # the vectorised CPU GELU over a wide range, incl. |x| far past the erf clamp
    x = np.concatenate([np.linspace(-12, 12, 48001),
                        [-1e4, -100.0, -6.0, -5.66, 5.66, 6.0, 100.0, 1e4]]).astype(np.float32)
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    with mx.stream(mx.cpu):
        y = np.array(macts.gelu_cpu(mx.array(x)))
        special = np.array(macts.gelu_cpu(mx.array([np.inf, -np.inf, np.nan], dtype=mx.float32)))
        auto = np.array(macts.get_activation("gelu")(mx.array(x)))
        xs = mx.array(x[:48001])
        g = np.array(mx.grad(lambda v: macts.gelu_cpu(v).sum())(xs))
        g_old = np.array(mx.grad(lambda v: macts.gelu(v).sum())(xs))
        strided = mx.array(x[:48000]).reshape(240, 200).T  # non-contiguous input
        assert np.array_equal(np.array(macts.gelu_cpu(strided)),
                              np.array(macts.gelu_cpu(mx.contiguous(strided))))
    assert np.abs(y - ref).max() < 1.5e-6
    assert np.array_equal(y, auto)
    assert y[-8] == 0.0 and y[-7] == 0.0 and y[-1] == x[-1] and y[-2] == x[-2]  # exact tails
    assert special[0] == np.inf and np.isnan(special[1:]).all()
    tx = torch.tensor(x[:48001].astype(np.float64), requires_grad=True)
    torch.nn.functional.gelu(tx).sum().backward()
    assert np.abs(g - tx.grad.numpy()).max() < 1e-6  # explicit Phi + x phi, not autodiff
    assert np.abs(g_old - tx.grad.numpy()).max() < 2e-5  # (autodiff of the rational erf form)


def test_cpu_kernel_cache_is_bounded_per_shape():
    # streaming feeds many chunk lengths: the per-shape compiled kernels stay bounded (LRU)
    cache = macts._gelu_from_arg_k
    with mx.stream(mx.cpu):
        for n in range(1, cache._size + 8):
            mx.eval(macts.gelu_cpu(mx.zeros((1, n, 3))))
        first = list(cache._cache)[0]
        mx.eval(macts.gelu_cpu(mx.zeros(first[0][0])))  # a hit moves to the back
    assert len(cache._cache) == cache._size
    assert list(cache._cache)[-1] == first


def test_exp2_fast_accuracy_masks_nan_and_gradient():
    t = np.concatenate([np.linspace(-130, 0, 130001), [-1e30, -np.inf, np.nan]]).astype(np.float32)
    with mx.stream(mx.cpu):
        y = np.array(macts.exp2_fast(mx.array(t)))
        ts = mx.array(t[:130001])
        g = np.array(mx.grad(lambda v: macts.exp2_fast(v).sum())(ts))
        # a softmax mask: -inf / huge negative scores get exactly 0 weight
        s = mx.array([[0.0, -np.inf, -1e30, -3.0]], dtype=mx.float32)
        w = np.array(macts.exp_fast(s - mx.max(s, axis=-1, keepdims=True)))
    ref = np.exp2(t[:130001].astype(np.float64))
    keep = ref > 2.0 ** -126
    assert (np.abs(y[:130001] - ref)[keep] / ref[keep]).max() < 3e-7
    assert (y[:130001][~keep] <= 2.0 ** -126).all()
    assert y[-3] == 0.0 and y[-2] == 0.0 and np.isnan(y[-1])
    assert w[0, 1] == 0.0 and w[0, 2] == 0.0 and w[0, 0] == 1.0
    assert np.abs(w[0, 3] - math.exp(-3.0)) < 1e-7
    assert (np.abs(g - np.log(2) * ref)[keep] / (np.log(2) * ref[keep])).max() < 3e-7


def test_snake_parity_layout_and_formula(rng):
    m, t = twins(macts.Snake, tacts.Snake, rng, channels=6)
    alpha = np.array(m.alpha)
    assert alpha.shape == (6,) and set(t.state_dict()) == {"alpha"}
    x = rng.standard_normal((2, 50, 6)).astype(np.float32) * 3  # MLX (B, T, C)
    ym = np.array(m(mx.array(x)))
    yt = run_torch(t, np.ascontiguousarray(x.transpose(0, 2, 1))).transpose(0, 2, 1)  # (B, C, T)
    ref = x + 1.0 / (alpha + 1e-9) * np.sin(alpha * x) ** 2
    assert np.abs(ym - yt).max() <= ATOL and np.abs(ym - ref).max() <= ATOL
    with pytest.raises(ValueError, match="6 channels"):
        m(mx.zeros((2, 6, 5)))
    with pytest.raises(ValueError, match=r"\(B, 6, T\)"):
        t(torch.zeros(2, 5, 6))
    with pytest.raises(ValueError, match="unknown activation 'swish9'"):
        macts.get_activation("swish9")


def test_snake_cpu_kernel_accuracy_and_gradient(rng):
    """The CPU kernel's polynomial sine: within 2e-6 of float64 for |alpha x| up to ~1e3, and
    its custom gradient equals autodiff of the mx.sin formula."""
    x = mx.array((rng.standard_normal((2, 300, 5)) * np.array([0.1, 1, 10, 100, 300])).astype(np.float32))
    alpha = mx.array(rng.uniform(0.05, 3.0, 5).astype(np.float32))
    xd, ad = np.array(x).astype(np.float64), np.array(alpha).astype(np.float64)
    ref = xd + 1.0 / (ad + 1e-9) * np.sin(ad * xd) ** 2
    assert np.abs(np.array(macts.snake_cpu(x, alpha)) - ref).max() <= 2e-6 * np.abs(ref).max()
    w = mx.array(rng.standard_normal((2, 300, 5)).astype(np.float32))
    g_fast = mx.grad(lambda a, b: (macts.snake_cpu(a, b) * w).sum(), argnums=(0, 1))(x, alpha)
    g_ref = mx.grad(lambda a, b: (macts.snake(a, b) * w).sum(), argnums=(0, 1))(x, alpha)
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-3)


def test_snake_learns_alpha(rng):
    snake = macts.Snake(channels=4)
    x = mx.array(rng.standard_normal((2, 64, 4)).astype(np.float32))
    target = macts.snake(x, mx.array([0.5, 1.5, 2.0, 3.0]))
    step = nn.value_and_grad(snake, lambda s: mx.mean((s(x) - target) ** 2))
    opt = optim.Adam(learning_rate=5e-2)
    losses = []
    for _ in range(10):
        loss, grads = step(snake)
        opt.update(snake, grads)
        mx.eval(snake.parameters(), opt.state)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# --- parallel adapter -----------------------------------------------------------------------


def test_adapter_starts_as_zero_contribution(rng):
    adapter = ParallelAdapter(dim=16, bottleneck=4)
    x = mx.array(rng.standard_normal((2, 9, 16)).astype(np.float32))
    assert float(mx.abs(adapter(x)).max()) == 0.0
    tadapter = TParallelAdapter(dim=16, bottleneck=4)
    with torch.no_grad():
        assert float(tadapter(torch.randn(2, 9, 16)).abs().max()) == 0.0


def test_adapter_parity(rng):
    m, t = twins(ParallelAdapter, TParallelAdapter, rng, dim=16, bottleneck=4, scale=0.5,
                 activation="relu")
    assert {k for k, _ in tree_flatten(m.parameters())} == {
        "norm.weight", "norm.bias", "down.weight", "down.bias", "up.weight", "up.bias"}
    x = rng.standard_normal((2, 9, 16)).astype(np.float32)
    assert np.abs(np.array(m(mx.array(x))) - run_torch(t, x)).max() <= ATOL


def test_adapter_trains_beside_a_frozen_layer(rng):
    frozen = nn.Linear(16, 16)
    frozen.freeze()
    adapter = ParallelAdapter(dim=16, bottleneck=8)
    x = mx.array(rng.standard_normal((4, 10, 16)).astype(np.float32))
    target = mx.array(rng.standard_normal((4, 10, 16)).astype(np.float32)) * 0.3 + frozen(x)

    def loss_fn(a):
        return mx.mean((frozen(x) + a(x) - target) ** 2)

    step = nn.value_and_grad(adapter, loss_fn)
    opt = optim.Adam(learning_rate=1e-2)
    before = np.array(frozen.weight)
    losses = []
    for _ in range(10):
        loss, grads = step(adapter)
        opt.update(adapter, grads)
        mx.eval(adapter.parameters(), opt.state)
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert np.array_equal(before, np.array(frozen.weight))


@pytest.mark.parametrize("cls", [ParallelAdapter, TParallelAdapter])
def test_adapter_errors(cls):
    with pytest.raises(ValueError, match="bottleneck must be a positive int"):
        cls(dim=16, bottleneck=0)
    with pytest.raises(ValueError, match="unknown activation"):
        cls(dim=16, bottleneck=4, activation="nope")


# --- conformer ------------------------------------------------------------------------------


CONF = dict(num_layers=2, dim=32, num_heads=4, ffn_dim=64, kernel_size=7)

CONF_CASES = [
    pytest.param(dict(), id="bidirectional"),
    pytest.param(dict(causal=True, context=6, layer_scale=0.5), id="causal_window_layerscale"),
    pytest.param(dict(rope_interleaved=False, bias=False, num_kv_heads=2, kernel_size=31),
                 id="k31_gqa_nobias"),
]


@pytest.mark.parametrize("kw", CONF_CASES)
def test_conformer_parity(rng, kw):
    m, t = twins(Conformer, TConformer, rng, **(CONF | kw))
    x = rng.standard_normal((2, 24, 32)).astype(np.float32)
    assert np.abs(np.array(m(mx.array(x))) - run_torch(t, x)).max() <= ATOL


def test_conformer_names():
    names = {k for k, _ in tree_flatten(ConformerBlock(dim=8, num_heads=2, ffn_dim=16,
                                                       layer_scale=0.1).parameters())}
    assert {"ffn1.norm.weight", "ffn1.linear1.weight", "ffn2.linear2.bias",
            "norm_attn.weight", "self_attn.q_proj.weight", "conv.norm_in.weight",
            "conv.pointwise_in.weight", "conv.depthwise.weight", "conv.norm.weight",
            "conv.pointwise_out.weight", "norm_out.bias", "layer_scale_conv.scale"} <= names
    assert set(TConformerBlock(dim=8, num_heads=2, ffn_dim=16, layer_scale=0.1).state_dict()) \
        == names


def test_conformer_padding_does_not_leak(rng):
    m, t = twins(Conformer, TConformer, rng, **CONF)
    x = rng.standard_normal((2, 20, 32)).astype(np.float32)
    x[1, 14:] = 50.0
    mask = np.ones((2, 20), bool)
    mask[1, 14:] = False
    y = np.array(m(mx.array(x), mask=mx.array(mask)))
    alone = np.array(m(mx.array(x[1:, :14])))
    assert np.abs(y[1, :14] - alone[0]).max() < 1e-4
    yt = run_torch(t, x, mask=torch.from_numpy(mask))
    assert np.abs(y[mask] - yt[mask]).max() <= ATOL


@pytest.mark.parametrize("chunk", [1, 3, 8], ids=["chunk1", "chunk3", "chunk8"])
def test_causal_conformer_streaming_equals_full(rng, chunk):
    m, t = twins(Conformer, TConformer, rng, **(CONF | dict(causal=True, context=5)))
    x = rng.standard_normal((2, 17, 32)).astype(np.float32)
    full = np.array(m(mx.array(x)))
    for _ in range(2):  # make_cache() starts a fresh stream, also for the conv buffers
        cm, ct = m.make_cache(), t.make_cache()
        outs_m, outs_t = [], []
        for s in range(0, 17, chunk):
            outs_m.append(np.array(m.step(mx.array(x[:, s:s + chunk]), cm)))
            with torch.no_grad():
                outs_t.append(t.step(torch.from_numpy(x[:, s:s + chunk]), ct).numpy())
        assert np.abs(np.concatenate(outs_m, 1) - full).max() < 1e-5
        assert np.abs(np.concatenate(outs_t, 1) - full).max() <= ATOL


def test_conformer_low_precision_and_training(rng):
    model = perturb(Conformer(**(CONF | dict(causal=True))), rng)
    x = mx.array(rng.standard_normal((2, 16, 32)).astype(np.float32))
    ref = np.array(model(x))
    model.set_dtype(mx.bfloat16)
    y = model(x.astype(mx.bfloat16))
    assert y.dtype == mx.bfloat16
    assert np.abs(np.array(y.astype(mx.float32)) - ref).max() / np.abs(ref).max() < 5e-2
    model.set_dtype(mx.float32)
    target = mx.array(rng.standard_normal((2, 16, 32)).astype(np.float32))
    step = nn.value_and_grad(model, lambda mdl: mx.mean((mdl(x) - target) ** 2))
    opt = optim.Adam(learning_rate=3e-3)
    losses = []
    for _ in range(6):
        loss, grads = step(model)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        losses.append(loss.item())
    assert all(float(mx.abs(g).max()) > 0 for _, g in tree_flatten(grads))
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("cls", [Conformer, TConformer], ids=["mlx", "torch"])
def test_conformer_errors(cls):
    with pytest.raises(ValueError, match="must be odd"):
        cls(**(CONF | dict(kernel_size=8)))
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        cls(**(CONF | dict(num_heads=5)))
    with pytest.raises(ValueError, match="num_layers"):
        cls(**(CONF | dict(num_layers=0)))
    model = cls(**CONF)
    x = mx.zeros((1, 2, 32)) if cls is Conformer else torch.zeros(1, 2, 32)
    with pytest.raises(ValueError, match="causal=True"):
        model.step(x, model.make_cache())
    with pytest.raises(ValueError, match="make_cache"):
        model.step(x, None)


def test_elu_cpu_kernels_accuracy_specials_and_gradient():
    x = np.concatenate([np.linspace(-120, 8, 64001), -np.logspace(-12, 1.5, 501),
                        np.logspace(-30, 3, 101)]).astype(np.float32)
    exact = np.where(x > 0, x, np.expm1(np.minimum(x, 0).astype(np.float64)))
    with mx.stream(mx.cpu):
        y = np.array(macts.elu_cpu(mx.array(x)))
        auto = np.array(macts.elu(mx.array(x)))
        nan = np.array(macts.elu_cpu(mx.array([np.nan], dtype=mx.float32)))
        xs = mx.array(x)
        w = mx.arange(1, x.size + 1).astype(mx.float32)
        g = np.array(mx.grad(lambda v: (macts.elu_cpu(v) * w).sum())(xs)) / np.array(w)
        strided = mx.array(x[:64000]).reshape(320, 200).T  # non-contiguous input
        ys = np.array(macts.elu_cpu(strided))
        half = np.array(macts.elu_cpu(mx.array(x[:1000]).astype(mx.float16)))
        empty = macts.elu_cpu(mx.zeros((0, 3)))
    assert np.abs(y - exact).max() < 3e-7 and np.array_equal(auto, y)
    assert np.array_equal(y[x > 0], x[x > 0])  # positive inputs exact, even 1e-30
    assert (y[x < -1e-6] < 0).all() and y.min() >= -1.0 and np.isnan(nan).all()
    # exp(x) as out + 1 (torch's ELU backward too): absolute error ~1 ulp of 1
    g_ref = np.where(x > 0, 1.0, np.exp(np.minimum(x, 0).astype(np.float64)))
    assert np.abs(g - g_ref).max() < 2e-7 and np.all(g[x > 0] == 1.0)
    assert np.array_equal(ys, y[:64000].reshape(320, 200).T)
    assert half.dtype == np.float16 and np.abs(half - exact[:1000]).max() < 2e-3 * 120
    assert empty.shape == (0, 3)


def test_sigmoid_cpu_kernels_accuracy_specials_and_gradient():
    x = np.concatenate([np.linspace(-90, 90, 72001), -np.logspace(-12, 2, 301),
                        np.logspace(-30, 2, 101), [0.0, -0.0]]).astype(np.float32)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    with mx.stream(mx.cpu):
        y = np.array(macts.sigmoid_cpu(mx.array(x)))
        auto = np.array(macts.sigmoid(mx.array(x)))
        silu = np.array(macts.get_activation("silu")(mx.array(x)))
        special = np.array(macts.sigmoid_cpu(mx.array([np.inf, -np.inf, np.nan], dtype=mx.float32)))
        xs = mx.array(x)
        w = mx.arange(1, x.size + 1).astype(mx.float32)
        g = np.array(mx.grad(lambda v: (macts.sigmoid_cpu(v) * w).sum())(xs)) / np.array(w)
        strided = mx.array(x[:72000]).reshape(360, 200).T  # non-contiguous input
        ys = np.array(macts.sigmoid_cpu(strided))
        half = macts.sigmoid_cpu(mx.array(x[:1000]).astype(mx.bfloat16))
        empty = macts.sigmoid_cpu(mx.zeros((0, 3)))
    assert np.abs(y - exact).max() < 1.5e-7 and np.array_equal(auto, y)
    # relative: float32 x * log2(e) carries ~|x| * 6e-8 relative error into the tail (as in
    # exp_fast); past 1e-30 the float32 exponent runs out (mx.sigmoid flushes there too)
    keep = exact > 1e-30
    assert (np.abs(y - exact)[keep] / exact[keep] <= 1e-6 + 8e-8 * np.abs(x[keep])).all()
    assert y[-1] == 0.5 and y[-2] == 0.5 and ((y >= 0) & (y <= 1)).all()
    assert special[0] == 1.0 and special[1] == 0.0 and np.isnan(special[2])
    assert np.abs(silu - x * exact).max() < 1.5e-7 * 90
    g_ref = exact * (1.0 - exact)
    assert np.abs(g - g_ref).max() < 2e-7
    assert np.array_equal(ys, y[:72000].reshape(360, 200).T)
    assert half.dtype == mx.bfloat16 and np.abs(np.array(half.astype(mx.float32)) - exact[:1000]).max() < 8e-3
    assert empty.shape == (0, 3)


def test_few_rows_linear_matches_plain_linear_and_its_gradient(monkeypatch):
    from mlx_speech.layers import linear
    from mlx_speech.layers.linear import Linear, few_rows_applies

    # the chunked path, as on BLAS builds without our few-row sgemm
    monkeypatch.setattr(linear, "few_rows_kernel", lambda: False)
    mx.random.seed(3)
    for bias in (True, False):
        lin = Linear(512, 1536, bias=bias)
        plain = nn.Linear(512, 1536, bias=bias)
        plain.update(lin.parameters())
        for shape in ((1, 512), (2, 512), (1, 2, 512), (2, 2, 512), (3, 512), (1, 9, 512)):
            x = mx.random.normal(shape)
            rows = x.size // 512
            assert few_rows_applies(rows, 1536, 512) == (rows <= 4)
            with mx.stream(mx.cpu):
                got, want = lin(x), plain(x)
                g_got = mx.grad(lambda w: lin.update({"weight": w})(x).sum())(lin.weight)
                g_want = mx.grad(lambda w: plain.update({"weight": w})(x).sum())(plain.weight)
            assert got.shape == want.shape == (*shape[:-1], 1536)
            assert np.abs(np.array(got) - np.array(want)).max() < 1e-4
            assert np.abs(np.array(g_got) - np.array(g_want)).max() < 1e-5
    # below the work threshold, or N not a multiple of the chunk: the plain call
    assert not few_rows_applies(2, 512, 512) and not few_rows_applies(2, 1000, 2048)
    assert not few_rows_applies(0, 1536, 512)


def test_few_rows_path_leaves_rows_too_wide_for_the_small_kernel(monkeypatch):
    """Up to 7168 inputs per call (rows x K) the chunked path applies; wider rows stay plain
    GEMMs (the small kernel then reads the weight at half the rate), and results match."""
    from mlx_speech.layers import linear

    monkeypatch.setattr(linear, "few_rows_kernel", lambda: False)

    assert linear.few_rows_applies(2, 1024, 3584) and linear.few_rows_applies(4, 8192, 1024)
    assert not linear.few_rows_applies(2, 1024, 8192)
    assert not linear.few_rows_applies(4, 2048, 2048)
    mx.random.seed(5)
    with mx.stream(mx.cpu):
        for rows, N, K in ((2, 1024, 3584), (4, 8192, 1024), (1, 384, 6144)):
            x, w = mx.random.normal((rows, K)), mx.random.normal((N, K))
            ref = np.array(x, dtype=np.float64) @ np.array(w, dtype=np.float64).T
            assert np.abs(np.array(linear.few_rows_matmul(x, w)) - ref).max() < 1e-3


def test_chunked_few_rows_path_is_off_behind_our_sgemm(monkeypatch):
    from mlx_speech.layers import linear

    monkeypatch.setattr(linear, "few_rows_kernel", lambda: True)
    assert not linear.few_rows_applies(2, 1536, 512) and not linear.few_rows_applies(4, 8192, 1024)


def test_linear_custom_gradient_matches_autodiff():
    """The CPU training path (row-major weight gradient) gives autodiff's values, eager and
    inside mx.compile, with and without bias, for 1-D to 3-D inputs; the weight is then updated
    from that gradient without surprises."""
    from mlx_speech.layers.linear import Linear

    mx.random.seed(4)
    for bias in (True, False):
        lin = Linear(64, 96, bias=bias)
        plain = nn.Linear(64, 96, bias=bias)
        plain.update(lin.parameters())
        for shape in ((64,), (37, 64), (3, 37, 64)):
            x = mx.random.normal(shape)
            t = mx.random.normal((*shape[:-1], 96))

            def loss(model, x):
                return ((model(x) - t) ** 2).sum() + (model(x) * x.sum()).mean()

            with mx.stream(mx.cpu):
                (lv, lg), (pv, pg) = (nn.value_and_grad(m, loss)(m, x) for m in (lin, plain))
                dx_got = mx.grad(lambda x: loss(lin, x))(x)
                dx_want = mx.grad(lambda x: loss(plain, x))(x)
                comp = mx.compile(lambda x: nn.value_and_grad(lin, loss)(lin, x)[1]["weight"])(x)
            assert abs(float(lv) - float(pv)) < 1e-3 * max(1.0, abs(float(pv)))
            for k in pg:
                np.testing.assert_allclose(np.array(lg[k]), np.array(pg[k]), rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(np.array(comp), np.array(pg["weight"]), rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(np.array(dx_got), np.array(dx_want), rtol=1e-4, atol=1e-3)


def test_cpu_kernels_inside_an_outer_compile_match_eager():
    # the trainer compiles value_and_grad, so the kernels run inline there with their clamp
    # bounds as computed inputs; values beyond every clamp are included
    x = mx.array(np.concatenate([np.linspace(-200, 12, 4001), [0.0, -1e-8, 1e-8]]).astype(np.float32))
    w = mx.array(np.random.default_rng(0).standard_normal(x.size).astype(np.float32))
    for fn, arg in ((macts.gelu_cpu, x), (macts.elu_cpu, x), (macts.exp2_fast, -mx.abs(x))):
        def loss(v, fn=fn):
            return (fn(v) * w).sum()
        with mx.stream(mx.cpu):
            eager = mx.value_and_grad(loss)(arg)
            compiled = mx.compile(mx.value_and_grad(loss))(arg)
            out_e, out_c = fn(arg), mx.compile(fn)(arg)
        assert np.array_equal(np.array(out_e), np.array(out_c))
        assert abs(eager[0].item() - compiled[0].item()) <= 1e-5 * abs(eager[0].item()) + 1e-6
        assert np.allclose(np.array(eager[1]), np.array(compiled[1]), rtol=1e-6, atol=1e-7)
