"""RoPE, KV cache, multi-head attention: numpy references, MLX <-> torch_ref parity, streaming."""

import mlx.core as mx
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten

from convert.parity import copy_mlx_to_torch
from mlx_speech.layers import attention as mattn
from mlx_speech.layers import rope as mrope
from mlx_speech.layers.kv_cache import KVCache
from torch_ref.layers import attention as tattn
from torch_ref.layers import rope as trope
from torch_ref.layers.kv_cache import KVCache as TKVCache
from mlx_speech.precision import PARITY_DTYPE, tolerance



def parity_tol() -> tuple[float, float]:
    """(rtol, atol) from the one policy (mlx_speech/precision.py) for MLX on the suite's device
    (TF32 off on a GPU, set by conftest) against torch_ref on the CPU."""
    return tolerance(PARITY_DTYPE, mx.default_device())


def perturb(module, rng, sigma=0.1):
    """Move every parameter off its init so norms / biases / scales are really compared."""
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


# --- RoPE -----------------------------------------------------------------------------------


def rope_reference(x, offset, interleaved, max_period=10000.0):
    """Explicit float64 RoPE on (..., T, Dh)."""
    D = x.shape[-1]
    inv = max_period ** (-np.arange(0, D, 2) / D)
    ang = (offset + np.arange(x.shape[-2]))[:, None] * inv[None]
    c, s = np.cos(ang), np.sin(ang)
    x = x.astype(np.float64)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out
    a, b = x[..., : D // 2], x[..., D // 2:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)


@pytest.mark.parametrize("interleaved", [True, False], ids=["interleaved", "rotate_half"])
@pytest.mark.parametrize("offset", [0, 37], ids=["offset0", "offset37"])
def test_rope_matches_numpy_formula(rng, interleaved, offset):
    x = rng.standard_normal((2, 3, 40, 16)).astype(np.float32)
    ref = rope_reference(x, offset, interleaved)
    m = mrope.RotaryEmbedding(head_dim=16, interleaved=interleaved)(mx.array(x), offset=offset)
    t = trope.RotaryEmbedding(head_dim=16, interleaved=interleaved)(torch.from_numpy(x),
                                                                     offset=offset)
    assert np.abs(np.array(m) - ref).max() < 1e-5
    assert np.abs(t.numpy() - ref).max() < 1e-5
    assert np.abs(np.array(m) - t.numpy()).max() < 1e-6


def test_rope_parity_at_far_positions(rng):
    # Angles ~5000 rad: both sides must derive the same float32 inverse frequencies.
    x = rng.standard_normal((1, 2, 8, 32)).astype(np.float32)
    m = np.array(mrope.apply_rope(mx.array(x), offset=5000, interleaved=True))
    t = trope.apply_rope(torch.from_numpy(x), offset=5000, interleaved=True).numpy()
    assert np.abs(m - t).max() < 1e-5


def test_rope_is_relative(rng):
    # q . k after RoPE depends only on the position difference.
    q = rng.standard_normal((1, 1, 1, 16)).astype(np.float32)
    k = rng.standard_normal((1, 1, 1, 16)).astype(np.float32)
    dots = []
    for start in (0, 11, 250):
        rq = mrope.apply_rope(mx.array(q), offset=start + 5)
        rk = mrope.apply_rope(mx.array(k), offset=start)
        dots.append(float((rq * rk).sum()))
    assert np.allclose(dots, dots[0], atol=1e-5)


def test_rotate_half_equals_interleaved_after_permutation(rng):
    D = 16
    perm = mrope.interleaved_to_rotate_half_perm(D)
    assert perm.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15]
    inv = mrope.rotate_half_to_interleaved_perm(D)
    assert (perm[inv] == np.arange(D)).all() and (inv[perm] == np.arange(D)).all()
    assert (trope.interleaved_to_rotate_half_perm(D) == perm).all()
    assert (trope.rotate_half_to_interleaved_perm(D) == inv).all()
    x = rng.standard_normal((2, 2, 9, D)).astype(np.float32)
    inter = np.array(mrope.apply_rope(mx.array(x), offset=3, interleaved=True))
    half = np.array(mrope.apply_rope(mx.array(x[..., perm]), offset=3, interleaved=False))
    assert np.abs(half - inter[..., perm]).max() < 1e-6


def test_permuted_projections_give_same_attention(rng):
    # The HF Mimi conversion: permute q/k rows per head, switch to rotate-half; output unchanged.
    kw = dict(dim=32, num_heads=4, num_kv_heads=2, causal=True, bias=True)
    a = perturb(mattn.MultiHeadAttention(**kw, rope_interleaved=True), rng)
    b = mattn.MultiHeadAttention(**kw, rope_interleaved=False)
    perm = mrope.interleaved_to_rotate_half_perm(8)
    weights = {k: np.array(v) for k, v in tree_flatten(a.parameters())}
    for name, heads in (("q_proj", 4), ("k_proj", 2)):
        for leaf in ("weight", "bias"):
            key = f"{name}.{leaf}"
            weights[key] = mrope.permute_head_rows(weights[key], num_heads=heads, perm=perm)
    b.load_weights([(k, mx.array(v)) for k, v in weights.items()])
    x = mx.array(rng.standard_normal((2, 12, 32)).astype(np.float32))
    assert np.abs(np.array(a(x)) - np.array(b(x))).max() < 1e-5
    back = mrope.permute_head_rows(weights["q_proj.weight"], num_heads=4,
                                   perm=mrope.rotate_half_to_interleaved_perm(8))
    assert np.array_equal(back, np.array(a.q_proj.weight))


def test_rope_bad_config():
    with pytest.raises(ValueError, match="even head_dim"):
        mrope.RotaryEmbedding(head_dim=7)
    with pytest.raises(ValueError, match="even head_dim"):
        trope.RotaryEmbedding(head_dim=7)
    with pytest.raises(ValueError, match="max_period"):
        mrope.RotaryEmbedding(head_dim=8, max_period=0.5)
    with pytest.raises(ValueError, match=r"\(B, H, T, 8\)"):
        mrope.RotaryEmbedding(head_dim=8)(mx.zeros((2, 5, 8)))


# --- KV cache -------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_cls,lib", [(KVCache, "mlx"), (TKVCache, "torch")],
                         ids=["mlx", "torch"])
@pytest.mark.parametrize("context", [None, 5], ids=["unbounded", "window5"])
def test_kv_cache_keeps_the_right_positions(cache_cls, lib, context):
    cache = cache_cls(context=context, step=4)
    for T in (3, 1, 4, 2, 1):
        start = cache.offset
        pos = np.arange(start, start + T, dtype=np.float32).reshape(1, 1, T, 1)
        k = pos * np.ones((2, 3, 1, 2), np.float32)
        arr = mx.array(k) if lib == "mlx" else torch.from_numpy(k)
        keys, values = cache.update_and_fetch(arr, arr * 2)
        keys = np.array(keys) if lib == "mlx" else keys.numpy()
        values = np.array(values) if lib == "mlx" else values.numpy()
        assert np.array_equal(values, 2 * keys) and keys.shape[:2] == (2, 3)
        assert cache.offset == start + T
        expected_first = 0 if context is None else max(0, start - context)
        assert keys[0, 0, :, 0].tolist() == list(range(expected_first, start + T))
        assert cache.key_start == cache.offset - cache.length
    assert cache.offset == 11
    cache.reset()
    assert cache.offset == 0 and cache.length == 0


def test_kv_cache_errors():
    with pytest.raises(ValueError, match="context"):
        KVCache(context=0)
    with pytest.raises(ValueError, match="context"):
        TKVCache(context=-3)
    c = KVCache()
    c.update_and_fetch(mx.zeros((1, 2, 3, 4)), mx.zeros((1, 2, 3, 4)))
    with pytest.raises(ValueError, match="reset"):
        c.update_and_fetch(mx.zeros((2, 2, 1, 4)), mx.zeros((2, 2, 1, 4)))
    with pytest.raises(ValueError, match="same shape"):
        c.update_and_fetch(mx.zeros((1, 2, 1, 4)), mx.zeros((1, 2, 1, 5)))


# --- attention ------------------------------------------------------------------------------


def attention_reference(params, x, *, num_heads, num_kv_heads, causal, context, interleaved,
                        key_mask=None):
    """Explicit float64 attention with an explicit (T, S) mask."""
    B, T, D = x.shape
    Dh = D // num_heads

    def lin(name, h):
        w = params[f"{name}.weight"].astype(np.float64)
        out = h @ w.T
        return out + params[f"{name}.bias"] if f"{name}.bias" in params else out

    def heads(h, n):
        return h.reshape(B, T, n, Dh).transpose(0, 2, 1, 3)

    q = rope_reference(heads(lin("q_proj", x), num_heads), 0, interleaved)
    k = rope_reference(heads(lin("k_proj", x), num_kv_heads), 0, interleaved)
    v = heads(lin("v_proj", x), num_kv_heads)
    rep = num_heads // num_kv_heads
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    pos = np.arange(T)
    delta = pos[:, None] - pos[None, :]
    allowed = np.ones((T, T), bool)
    if causal:
        allowed &= delta >= 0
        if context is not None:
            allowed &= delta < context
    elif context is not None:
        allowed &= np.abs(delta) < context
    allowed = np.broadcast_to(allowed, (B, 1, T, T))
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    scores = np.where(allowed, q @ k.transpose(0, 1, 3, 2) / np.sqrt(Dh), -np.inf)
    with np.errstate(invalid="ignore"):
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w = np.nan_to_num(w / w.sum(-1, keepdims=True))
    o = (w @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
    return lin("out_proj", o)


ATTN_CASES = [
    pytest.param(dict(), id="causal"),
    pytest.param(dict(num_kv_heads=2), id="gqa"),
    pytest.param(dict(num_kv_heads=1, bias=True), id="mqa_bias"),
    pytest.param(dict(context=5), id="window5"),
    pytest.param(dict(causal=False), id="bidirectional"),
    pytest.param(dict(causal=False, context=4), id="bidirectional_window4"),
    pytest.param(dict(rope_interleaved=False, context=7), id="rotate_half_window7"),
]


@pytest.mark.parametrize("kw", ATTN_CASES)
@pytest.mark.parametrize("padded", [False, True], ids=["full", "keypad"])
def test_attention_parity_and_reference(rng, kw, padded):
    cfg = dict(dim=32, num_heads=4) | kw
    m, t = twins(mattn.MultiHeadAttention, tattn.MultiHeadAttention, rng, **cfg)
    x = rng.standard_normal((2, 19, 32)).astype(np.float32)
    key_mask = None
    if padded:
        key_mask = np.ones((2, 19), bool)
        key_mask[1, 13:] = False
    ym = np.array(m(mx.array(x), mask=None if key_mask is None else mx.array(key_mask)))
    yt = run_torch(t, x, mask=None if key_mask is None else torch.from_numpy(key_mask))
    params = {k: np.array(v).astype(np.float64) for k, v in tree_flatten(m.parameters())}
    ref = attention_reference(
        params, x.astype(np.float64), num_heads=4, num_kv_heads=cfg.get("num_kv_heads") or 4,
        causal=cfg.get("causal", True), context=cfg.get("context"),
        interleaved=cfg.get("rope_interleaved", True), key_mask=key_mask)
    assert np.allclose(ym, yt, *parity_tol()), np.abs(ym - yt).max()
    assert np.abs(ym - ref).max() <= 1e-4


def test_query_without_visible_key_is_zero(rng):
    # Left padding + causal: the first query of row 1 sees only a padded key.
    m, t = twins(mattn.MultiHeadAttention, tattn.MultiHeadAttention, rng, dim=16, num_heads=2,
                 bias=True)
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    key_mask = np.ones((2, 6), bool)
    key_mask[1, :2] = False
    ym = np.array(m(mx.array(x), mask=mx.array(key_mask)))
    yt = run_torch(t, x, mask=torch.from_numpy(key_mask))
    bias = np.array(m.out_proj.bias)
    assert np.abs(ym[1, :2] - bias).max() < 1e-6  # zero attention output -> out_proj bias
    assert np.isfinite(ym).all() and np.allclose(ym, yt, *parity_tol())


@pytest.mark.parametrize("mask_kind", ["none", "causal", "array"])
@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_sdpa_paths_agree(rng, mask_kind, kv_heads):
    # The explicit (CPU) path and mx.fast agree, also when queries < keys (cache).
    q = mx.array(rng.standard_normal((2, 4, 5, 8)).astype(np.float32))
    k = mx.array(rng.standard_normal((2, kv_heads, 9, 8)).astype(np.float32))
    v = mx.array(rng.standard_normal((2, kv_heads, 9, 8)).astype(np.float32))
    mask = {"none": None, "causal": "causal",
            "array": mx.array(rng.random((2, 1, 5, 9)) > 0.3)}[mask_kind]
    a = mattn.scaled_dot_product_attention(q, k, v, scale=0.3, mask=mask, fused=True)
    b = mattn.scaled_dot_product_attention(q, k, v, scale=0.3, mask=mask, fused=False)
    assert np.abs(np.array(a) - np.array(b)).max() < 1e-5
    # Training on the CPU backend differentiates the explicit path: same gradients.
    w = mx.array(rng.standard_normal((2, 4, 5, 8)).astype(np.float32))

    def grads(fused):
        def f(q, k, v):
            out = mattn.scaled_dot_product_attention(q, k, v, scale=0.3, mask=mask, fused=fused)
            return (out * w).sum()
        return mx.grad(f, argnums=(0, 1, 2))(q, k, v)

    for ga, gb in zip(grads(True), grads(False)):
        assert np.abs(np.array(ga) - np.array(gb)).max() < 1e-5


STREAM_CASES = [
    pytest.param(dict(), 1, id="unbounded-chunk1"),
    pytest.param(dict(), 4, id="unbounded-chunk4"),
    pytest.param(dict(num_kv_heads=2), 3, id="gqa-chunk3"),
    pytest.param(dict(context=6), 1, id="window6-chunk1"),
    pytest.param(dict(context=6), 5, id="window6-chunk5"),
    pytest.param(dict(context=6), 9, id="window6-chunk9"),
]


@pytest.mark.parametrize("kw,chunk", STREAM_CASES)
def test_attention_cache_equals_full_pass(rng, kw, chunk):
    m, t = twins(mattn.MultiHeadAttention, tattn.MultiHeadAttention, rng, dim=32, num_heads=4,
                 **kw)
    x = rng.standard_normal((2, 23, 32)).astype(np.float32)
    full = np.array(m(mx.array(x)))
    cm, ct = m.make_cache(), t.make_cache()
    outs_m, outs_t = [], []
    for s in range(0, 23, chunk):
        outs_m.append(np.array(m(mx.array(x[:, s:s + chunk]), cache=cm)))
        outs_t.append(run_torch(t, x[:, s:s + chunk], cache=ct))
    assert cm.offset == ct.offset == 23
    assert np.abs(np.concatenate(outs_m, 1) - full).max() < 1e-5
    assert np.allclose(np.concatenate(outs_t, 1), full, *parity_tol())


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16], ids=["bf16", "fp16"])
def test_attention_low_precision_close_to_fp32(rng, dtype):
    m = perturb(mattn.MultiHeadAttention(dim=32, num_heads=4, context=8), rng)
    x = mx.array(rng.standard_normal((2, 20, 32)).astype(np.float32))
    ref = np.array(m(x))
    m.set_dtype(dtype)
    y = m(x.astype(dtype))
    assert y.dtype == dtype
    err = np.abs(np.array(y.astype(mx.float32)) - ref).max()
    assert err < (5e-2 if dtype == mx.bfloat16 else 1e-2), err


def test_attention_bad_config_and_inputs():
    for cls in (mattn.MultiHeadAttention, tattn.MultiHeadAttention):
        with pytest.raises(ValueError, match="not divisible by num_heads"):
            cls(dim=30, num_heads=4)
        with pytest.raises(ValueError, match="num_kv_heads"):
            cls(dim=32, num_heads=4, num_kv_heads=3)
        with pytest.raises(ValueError, match="even head_dim"):
            cls(dim=12, num_heads=4)
        with pytest.raises(ValueError, match="context"):
            cls(dim=32, num_heads=4, context=0)
        with pytest.raises(ValueError, match="dropout"):
            cls(dim=32, num_heads=4, dropout=1.5)
    m = mattn.MultiHeadAttention(dim=16, num_heads=2, causal=False)
    with pytest.raises(ValueError, match=r"\(B, T, 16\)"):
        m(mx.zeros((2, 5, 8)))
    with pytest.raises(ValueError, match="causal=True"):
        m(mx.zeros((1, 3, 16)), cache=KVCache())
    with pytest.raises(ValueError, match="key padding mask"):
        m(mx.zeros((2, 5, 16)), mask=mx.ones((2, 4), dtype=mx.bool_))
    t = tattn.MultiHeadAttention(dim=16, num_heads=2)
    with pytest.raises(ValueError, match="key padding mask"):
        t(torch.zeros(2, 5, 16), mask=torch.ones(2, 5))
