"""Cross-attention, its memory cache and the cross-attention decoder stack: MLX <-> torch_ref
parity (with a memory mask, GQA, RoPE between steps and frames), step-by-step decoding with
the caches equals the full causal pass, the memory keys are projected once, and bad inputs."""

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from convert.parity import copy_mlx_to_torch
from mlx_speech.layers import attention as mattn
from mlx_speech.layers import transformer as mtr
from mlx_speech.layers.kv_cache import CrossKVCache

torch = pytest.importorskip("torch")
from torch_ref.layers import attention as tattn  # noqa: E402
from torch_ref.layers import transformer as ttr  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def twins(mlx_cls, torch_cls, rng, **kw):
    m = mlx_cls(**kw)
    m.load_weights([(k, v + mx.array(rng.standard_normal(v.shape).astype(np.float32) * 0.1))
                    for k, v in tree_flatten(m.parameters())])
    t = torch_cls(**kw).eval()
    copy_mlx_to_torch(m, t)
    return m, t


def _mask(rng, B, S):
    lengths = rng.integers(1, S + 1, size=B)
    lengths[0] = S
    return np.arange(S)[None, :] < lengths[:, None]


@pytest.mark.parametrize("kw", [dict(rope=True), dict(rope=False, num_kv_heads=2, bias=True),
                                dict(rope=True, memory_dim=24)], ids=["rope", "gqa_bias", "memdim"])
def test_cross_attention_parity(rng, kw):
    m, t = twins(mattn.CrossAttention, tattn.CrossAttention, rng, dim=32, num_heads=4, **kw)
    B, T, S = 3, 5, 7
    x = rng.standard_normal((B, T, 32)).astype(np.float32)
    mem = rng.standard_normal((B, S, kw.get("memory_dim", 32))).astype(np.float32)
    mask = _mask(rng, B, S)
    got = np.array(m(mx.array(x), mx.array(mem), mask=mx.array(mask), offset=3))
    with torch.no_grad():
        want = t(torch.from_numpy(x), torch.from_numpy(mem), mask=torch.from_numpy(mask),
                 offset=3).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # padded memory frames do not matter
    mem2 = np.where(mask[..., None], mem, 100.0).astype(np.float32)
    got2 = np.array(m(mx.array(x), mx.array(mem2), mask=mx.array(mask), offset=3))
    np.testing.assert_allclose(got, got2, atol=1e-5)


def test_cross_cache_is_projected_once(rng):
    m = mattn.CrossAttention(dim=16, num_heads=2, rope=True)
    x = mx.array(rng.standard_normal((1, 1, 16)).astype(np.float32))
    mem = mx.array(rng.standard_normal((1, 4, 16)).astype(np.float32))
    cache = m.make_cache()
    a = m(x, mem, cache=cache, offset=2)
    assert cache.filled and cache.keys.shape == (1, 2, 4, 8)
    keys = cache.keys
    b = m(x, None, cache=cache, offset=2)  # no memory needed once filled
    assert cache.keys is keys
    np.testing.assert_allclose(np.array(a), np.array(b), atol=0)
    cache.reset()
    assert not cache.filled


@pytest.mark.parametrize("kw", [dict(cross_rope=True, final_norm=True),
                                dict(cross_rope=False, layer_scale=0.1, num_kv_heads=2,
                                     ffn_type="gated", activation="silu")],
                         ids=["rope_final_norm", "layer_scale_gqa_gated"])
def test_decoder_parity_and_step_equals_full_pass(rng, kw):
    m, t = twins(mtr.TransformerDecoder, ttr.TransformerDecoder, rng, num_layers=2, dim=32,
                 num_heads=4, ffn_dim=48, **kw)
    B, T, S = 2, 6, 5
    x = rng.standard_normal((B, T, 32)).astype(np.float32)
    mem = rng.standard_normal((B, S, 32)).astype(np.float32)
    mask = _mask(rng, B, S)
    full = np.array(m(mx.array(x), mx.array(mem), memory_mask=mx.array(mask)))
    with torch.no_grad():
        want = t(torch.from_numpy(x), torch.from_numpy(mem),
                 memory_mask=torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(full, want, atol=1e-4)
    for lib, model, wrap, back in ((mx, m, mx.array, np.array),
                                   (torch, t, torch.from_numpy, lambda a: a.numpy())):
        cache = model.make_cache()
        steps = []
        with torch.no_grad():
            for i in range(T):  # the memory only on the first step
                steps.append(back(model.step(wrap(x[:, i:i + 1]), cache,
                                             wrap(mem) if i == 0 else None,
                                             memory_mask=wrap(mask))))
        np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
        assert cache[0][0].offset == T and cache[0][1].filled


def test_decoder_names_and_bad_inputs(rng):
    m = mtr.TransformerDecoder(num_layers=1, dim=16, num_heads=2, ffn_dim=32, layer_scale=0.1)
    names = {k for k, _ in tree_flatten(m.parameters())}
    assert {"layers.0.norm_cross.weight", "layers.0.cross_attn.q_proj.weight",
            "layers.0.cross_attn.k_proj.weight", "layers.0.layer_scale_cross.scale"} <= names
    x = mx.zeros((1, 2, 16))
    with pytest.raises(ValueError, match="needs a memory"):
        m(x)
    with pytest.raises(ValueError, match=r"\(B, S, 16\) memory"):
        m(x, mx.zeros((1, 3, 8)))
    with pytest.raises(ValueError, match="key padding mask"):
        m(x, mx.zeros((1, 3, 16)), memory_mask=mx.ones((1, 4), dtype=mx.bool_))
    with pytest.raises(ValueError, match="query rows"):
        m(x, mx.zeros((2, 3, 16)))
    with pytest.raises(ValueError, match="same shape"):
        CrossKVCache().set(mx.zeros((1, 2, 3, 4)), mx.zeros((1, 2, 3, 5)))
    with pytest.raises(ValueError, match="memory_dim"):
        mattn.CrossAttention(dim=16, num_heads=2, memory_dim=0)
