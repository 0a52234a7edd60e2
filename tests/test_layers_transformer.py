"""Transformer layer / stack: MLX <-> torch_ref parity, KV-cache streaming, dtypes, training."""

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten

from convert.parity import copy_mlx_to_torch
from mlx_speech.layers.kv_cache import ring_views
from mlx_speech.layers.transformer import Transformer, TransformerLayer
from torch_ref.layers.transformer import Transformer as TTransformer
from torch_ref.layers.transformer import TransformerLayer as TTransformerLayer

ATOL = 1e-5

# Mimi's transformer shape (moshi mimi_202407), scaled down.
MIMI_LIKE = dict(norm="layer", attn_bias=False, ffn_bias=False, rope=True,
                 rope_interleaved=True, max_period=10000.0, causal=True, layer_scale=0.01,
                 ffn_type="mlp", activation="gelu")


def perturb(module, rng, sigma=0.1):
    module.load_weights([(k, v + mx.array(rng.standard_normal(v.shape).astype(np.float32) * sigma))
                         for k, v in tree_flatten(module.parameters())])
    mx.eval(module.parameters())
    return module


def twins(rng, **kw):
    m = perturb(Transformer(**kw), rng)
    t = TTransformer(**kw).eval()
    copy_mlx_to_torch(m, t)
    return m, t


def run_torch(t, x, **kw):
    with torch.no_grad():
        return t(torch.from_numpy(x), **kw).numpy()


BASE = dict(num_layers=2, dim=32, num_heads=4, ffn_dim=64)

PARITY_CASES = [
    pytest.param(MIMI_LIKE | dict(context=6), id="mimi_like"),
    pytest.param(dict(norm="rms", ffn_type="gated", activation="silu", num_kv_heads=2,
                      final_norm=True), id="swiglu_rms_gqa"),
    pytest.param(dict(attn_bias=True, ffn_bias=True, rope_interleaved=False,
                      activation="gelu_tanh", norm_eps=1e-6), id="bias_rotate_half"),
    pytest.param(dict(causal=False, rope=False, final_norm=True, activation="relu"),
                 id="bidirectional_norope"),
]


@pytest.mark.parametrize("kw", PARITY_CASES)
def test_transformer_parity(rng, kw):
    m, t = twins(rng, **(BASE | kw))
    x = rng.standard_normal((2, 17, 32)).astype(np.float32)
    err = np.abs(np.array(m(mx.array(x))) - run_torch(t, x)).max()
    assert err <= ATOL, err


def test_parameter_names_match_moshi_layout():
    m = Transformer(**(BASE | MIMI_LIKE))
    names = sorted(k for k, _ in tree_flatten(m.parameters()) if k.startswith("layers.0."))
    assert names == sorted(f"layers.0.{n}" for n in [
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
        "self_attn.out_proj.weight", "linear1.weight", "linear2.weight",
        "layer_scale_1.scale", "layer_scale_2.scale"])
    assert np.allclose(np.array(m.layers[1].layer_scale_2.scale), 0.01)
    t = TTransformer(**(BASE | MIMI_LIKE))
    assert set(t.state_dict()) == {k for k, _ in tree_flatten(m.parameters())}


STREAM_CASES = [
    pytest.param(None, 1, id="unbounded-chunk1"),
    pytest.param(None, 3, id="unbounded-chunk3"),
    pytest.param(None, 8, id="unbounded-chunk8"),
    pytest.param(5, 1, id="window5-chunk1"),
    pytest.param(5, 2, id="window5-chunk2"),
    pytest.param(5, 7, id="window5-chunk7"),
]


@pytest.mark.parametrize("context,chunk", STREAM_CASES)
def test_streaming_equals_full_pass(rng, context, chunk):
    # total length 21 > context: the window slides during the stream.
    m, t = twins(rng, **(BASE | MIMI_LIKE | dict(context=context, final_norm=True)))
    x = rng.standard_normal((2, 21, 32)).astype(np.float32)
    full = np.array(m(mx.array(x)))
    cm, ct = m.make_cache(), t.make_cache()
    assert len(cm) == len(ct) == 2
    outs_m, outs_t = [], []
    for s in range(0, 21, chunk):
        outs_m.append(np.array(m.step(mx.array(x[:, s:s + chunk]), cm)))
        with torch.no_grad():
            outs_t.append(t.step(torch.from_numpy(x[:, s:s + chunk]), ct).numpy())
    assert np.abs(np.concatenate(outs_m, 1) - full).max() < 1e-5
    assert np.abs(np.concatenate(outs_t, 1) - full).max() <= ATOL
    if context is not None:
        assert all(c.length <= context for c in cm)


RING_CASES = [
    pytest.param(MIMI_LIKE, [2] * 15, id="mimi_like-chunk2"),
    pytest.param(MIMI_LIKE, [1, 1, 3, 2, 7, 1, 5, 4, 6], id="mimi_like-growing-chunks"),
    pytest.param(dict(norm="rms", ffn_type="gated", activation="silu", num_kv_heads=2,
                      final_norm=True, rope_interleaved=False), [3] * 10, id="swiglu_gqa"),
]


@pytest.mark.parametrize("kw,chunks", RING_CASES)
def test_ring_cache_step_equals_full_pass(rng, kw, chunks):
    """The compiled ring-cache step gives the full causal pass (window 5 < stream length,
    chunk lengths that grow force the rings to be re-laid out)."""
    m = perturb(Transformer(**(BASE | kw | dict(context=5))), rng)
    x = rng.standard_normal((2, sum(chunks), 32)).astype(np.float32)
    full = np.array(m(mx.array(x)))
    ring, outs, s = m.make_ring_cache(), [], 0
    for c in chunks:
        outs.append(np.array(m.step(mx.array(x[:, s:s + c]), ring)))
        s += c
    assert np.abs(np.concatenate(outs, 1) - full).max() < 1e-5
    assert ring.offset == sum(chunks) and ring.capacity >= 5 + max(chunks)


def test_ring_step_uses_new_weights_and_checks_its_input(rng):
    m = perturb(Transformer(**(BASE | MIMI_LIKE | dict(context=5))), rng)
    x = mx.array(rng.standard_normal((1, 2, 32)).astype(np.float32))
    m.step(x, m.make_ring_cache())  # compiled with the first weights
    perturb(m, rng)
    assert np.abs(np.array(m.step(x, m.make_ring_cache())) - np.array(m(x))).max() < 1e-5
    ring = m.make_ring_cache()
    m.step(x, ring)
    with pytest.raises(ValueError, match="reset"):
        m.step(mx.concatenate([x, x]), ring)  # another batch size mid-stream
    with pytest.raises(ValueError, match="context"):
        Transformer(**BASE).make_ring_cache()  # unbounded
    view = ring_views(ring.keys, ring.values, mx.array(ring.offset), 2, 5)[0]
    with pytest.raises(ValueError, match="key padding mask"):
        m.layers[0].self_attn(x, cache=view, mask=mx.ones((1, view.keys.shape[2]), dtype=mx.bool_))
    with pytest.raises(ValueError, match="context"):
        Transformer(**(BASE | dict(causal=False, context=5))).make_ring_cache()


def test_sliding_window_changes_the_output(rng):
    # Sanity for the window test above: with context < T the result really differs.
    m = perturb(Transformer(**(BASE | dict(context=4))), rng)
    u = Transformer(**BASE)
    u.load_weights(tree_flatten(m.parameters()))
    x = mx.array(rng.standard_normal((1, 12, 32)).astype(np.float32))
    a, b = np.array(m(x)), np.array(u(x))
    assert np.abs(a[:, :4] - b[:, :4]).max() < 1e-6
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-3


def test_key_padding_mask_ignores_padding(rng):
    m, t = twins(rng, **(BASE | dict(causal=False)))
    x = rng.standard_normal((2, 10, 32)).astype(np.float32)
    x_pad = x.copy()
    x_pad[1, 7:] = 100.0  # garbage in padded frames must not leak into real ones
    key_mask = np.ones((2, 10), bool)
    key_mask[1, 7:] = False
    y = np.array(m(mx.array(x_pad), mask=mx.array(key_mask)))
    alone = np.array(m(mx.array(x[1:, :7])))
    assert np.abs(y[1, :7] - alone[0]).max() < 1e-5
    yt = run_torch(t, x_pad, mask=torch.from_numpy(key_mask))
    assert np.abs(y[key_mask] - yt[key_mask]).max() <= ATOL
    assert np.allclose(y, yt, rtol=1e-5, atol=ATOL)  # padded frames carry ~100


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16], ids=["bf16", "fp16"])
def test_low_precision_close_to_fp32(rng, dtype):
    m = perturb(Transformer(**(BASE | MIMI_LIKE | dict(context=8))), rng)
    x = mx.array(rng.standard_normal((2, 16, 32)).astype(np.float32))
    ref = np.array(m(x))
    m.set_dtype(dtype)
    y = m(x.astype(dtype))
    assert y.dtype == dtype
    err = np.abs(np.array(y.astype(mx.float32)) - ref).max() / np.abs(ref).max()
    assert err < (3e-2 if dtype == mx.bfloat16 else 5e-3), err


def test_torch_bf16_runs_close(rng):
    m, t = twins(rng, **(BASE | MIMI_LIKE))
    x = rng.standard_normal((2, 9, 32)).astype(np.float32)
    ref = run_torch(t, x)
    t = t.to(torch.bfloat16)
    with torch.no_grad():
        y = t(torch.from_numpy(x).to(torch.bfloat16)).float().numpy()
    assert np.abs(y - ref).max() / np.abs(ref).max() < 3e-2


@pytest.mark.parametrize("ffn_type", ["mlp", "gated"])
def test_gradients_flow(rng, ffn_type):
    mx.random.seed(0)
    model = Transformer(**(BASE | dict(ffn_type=ffn_type, layer_scale=0.1, final_norm=True)))
    x = mx.array(rng.standard_normal((2, 12, 32)).astype(np.float32))
    target = mx.array(rng.standard_normal((2, 12, 32)).astype(np.float32))

    def loss_fn(model):
        return mx.mean((model(x) - target) ** 2)

    step = nn.value_and_grad(model, loss_fn)
    opt = optim.Adam(learning_rate=1e-2)
    losses = []
    for _ in range(8):
        loss, grads = step(model)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        losses.append(loss.item())
    flat = dict(tree_flatten(grads))
    assert all(float(mx.abs(g).max()) > 0 for g in flat.values()), "a parameter got no gradient"
    assert losses[-1] < 0.9 * losses[0], losses


def test_torch_gradients_flow(rng):
    torch.manual_seed(0)
    model = TTransformer(**(BASE | dict(layer_scale=0.1)))
    x = torch.from_numpy(rng.standard_normal((2, 12, 32)).astype(np.float32))
    target = torch.from_numpy(rng.standard_normal((2, 12, 32)).astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = torch.mean((model(x) - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())
    assert losses[-1] < 0.9 * losses[0], losses


def test_layer_alone_matches_torch(rng):
    kw = dict(dim=32, num_heads=2, ffn_dim=48, layer_scale=0.5, context=3)
    m = perturb(TransformerLayer(**kw), rng)
    t = TTransformerLayer(**kw).eval()
    copy_mlx_to_torch(m, t)
    x = rng.standard_normal((2, 11, 32)).astype(np.float32)
    assert np.abs(np.array(m(mx.array(x))) - run_torch(t, x)).max() <= ATOL


@pytest.mark.parametrize("cls", [Transformer, TTransformer], ids=["mlx", "torch"])
def test_bad_config_is_a_clear_error(cls):
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        cls(**(BASE | dict(dim=30)))
    with pytest.raises(ValueError, match="ffn_type"):
        cls(**(BASE | dict(ffn_type="moe")))
    with pytest.raises(ValueError, match="unknown activation"):
        cls(**(BASE | dict(activation="swish2")))
    with pytest.raises(ValueError, match="unknown norm"):
        cls(**(BASE | dict(norm="batch")))
    with pytest.raises(ValueError, match="num_layers"):
        cls(**(BASE | dict(num_layers=0)))
    with pytest.raises(ValueError, match="ffn_dim"):
        cls(**(BASE | dict(ffn_dim=0)))
    model = cls(**BASE)
    with pytest.raises(ValueError, match="cache has 1 entries for 2 layers"):
        model(mx.zeros((1, 2, 32)) if cls is Transformer else torch.zeros(1, 2, 32),
              cache=model.make_cache()[:1])
    with pytest.raises(ValueError, match="needs a cache"):
        model.step(mx.zeros((1, 2, 32)) if cls is Transformer else torch.zeros(1, 2, 32), None)
