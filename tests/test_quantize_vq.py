"""VectorQuantizer / EMACodebook: EMA state handling, k-means init, restart, STE, errors (MLX + torch_ref)."""

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten

from convert.parity import build_pair, compare
from mlx_speech.errors import CodesError
from mlx_speech.quantize import EMACodebook, VectorQuantizer
from mlx_speech.quantize.codes import sample_indices
from mlx_speech.specs.quantize import EMACodebookSpec, VQSpec
from torch_ref.quantize import EMACodebook as TEMACodebook
from torch_ref.quantize import VectorQuantizer as TVectorQuantizer

BUFFERS = {"codebook.embedding_sum", "codebook.cluster_usage", "codebook.initialized"}


def _latents(rng, b=2, f=30, d=16, scale=1.0):
    return (rng.standard_normal((b, f, d)) * scale).astype(np.float32)


def test_ema_state_is_saved_but_never_trained():
    vq = VectorQuantizer(dim=16, codebook_size=32, codebook_dim=8)
    saved = {k for k, _ in tree_flatten(vq.parameters())}
    trained = {k for k, _ in tree_flatten(vq.trainable_parameters())}
    assert BUFFERS <= saved
    assert not BUFFERS & trained
    assert {"in_proj.weight", "in_proj.bias", "out_proj.weight", "out_proj.bias"} <= trained
    vq.unfreeze()  # a full unfreeze (fine-tuning) must not make the EMA state trainable
    assert not BUFFERS & {k for k, _ in tree_flatten(vq.trainable_parameters())}
    tq = TVectorQuantizer(dim=16, codebook_size=32, codebook_dim=8)
    assert BUFFERS <= set(tq.state_dict())
    assert not BUFFERS & {k for k, _ in tq.named_parameters()}


def test_codebook_fold_is_moshi_formula_bit_exact(rng):
    """codebook == embedding_sum / clamp(cluster_usage, eps)[:, None], bit for bit, both sides."""
    k, d, eps = 64, 8, 1e-5
    emb = rng.standard_normal((k, d)).astype(np.float32)
    usage = rng.uniform(0, 3, k).astype(np.float32)
    usage[:5] = [0.0, 1e-7, eps, 2e-5, 1.0]
    expect = emb / np.maximum(usage, np.float32(eps))[:, None]
    m = EMACodebook(size=k, dim=d)
    m.load_weights([("embedding_sum", mx.array(emb)), ("cluster_usage", mx.array(usage))],
                   strict=False)
    t = TEMACodebook(size=k, dim=d)
    t.embedding_sum.copy_(torch.from_numpy(emb))
    t.cluster_usage.copy_(torch.from_numpy(usage))
    assert np.array_equal(np.array(m.codebook), expect)
    assert np.array_equal(t.codebook.numpy(), expect)


def test_eval_call_equals_encode_decode_and_is_pure(rng):
    mx.random.seed(0)
    vq = VectorQuantizer(dim=16, codebook_size=32, codebook_dim=4, l2_normalize=True,
                         ema=EMACodebookSpec(kmeans_init=False))
    vq.eval()
    x = mx.array(_latents(rng))
    before = np.array(vq.codebook.embedding_sum)
    out = vq(x)
    assert out.codes.dtype == mx.int32 and out.codes.shape == (2, 30)
    assert np.array_equal(np.array(out.codes), np.array(vq.encode(x)))
    assert np.array_equal(np.array(out.quantized), np.array(vq.decode(out.codes)))
    assert np.array_equal(before, np.array(vq.codebook.embedding_sum))


def test_kmeans_init_on_first_training_batch(rng):
    vq = VectorQuantizer(dim=8, codebook_size=16, ema=EMACodebookSpec(kmeans_iters=5))
    assert not vq.codebook.is_initialized()
    assert np.all(np.array(vq.codebook.embedding_sum) == 0)
    centers = rng.standard_normal((4, 8)).astype(np.float32) * 5
    x = centers[rng.integers(0, 4, 600)] + 0.01 * rng.standard_normal((600, 8)).astype(np.float32)
    out = vq(mx.array(x.reshape(2, 300, 8)))
    assert vq.codebook.is_initialized()
    # data variance is ~25 per dim; after k-means on 4 well-separated clusters the error is noise
    assert float(out.commit_loss) < 1e-3
    vq.eval()
    assert float(vq(mx.array(x.reshape(2, 300, 8))).commit_loss) < 1e-3


def test_dead_codes_restart_from_batch_vectors(rng):
    ema = EMACodebookSpec(kmeans_init=False, threshold_usage_ratio=0.5, decay=0.5)
    mx.random.seed(0)
    vq = VectorQuantizer(dim=4, codebook_size=64, ema=ema, seed=3)
    x = (rng.standard_normal((1, 200, 4)) * 0.1 + 3.0).astype(np.float32)  # far from N(0,1) codes
    out = vq(mx.array(x))
    assert float(out.metrics["expired"]) > 0.5
    usage = np.array(vq.codebook.cluster_usage)
    restarted = usage < usage.max()  # all 200 vectors went to one code; the 63 others died
    assert restarted.sum() == round(float(out.metrics["expired"]) * 64)
    codes = np.array(vq.codebook.codebook)[restarted]
    # restarted codes are batch vectors (to float rounding)
    d = np.abs(codes[:, None, :] - x[0][None]).max(-1).min(-1)
    assert d.max() < 1e-5


def test_straight_through_and_commitment_gradients(rng):
    mx.random.seed(0)
    vq = VectorQuantizer(dim=16, codebook_size=32, codebook_dim=4,
                         ema=EMACodebookSpec(kmeans_init=False, threshold_usage_ratio=0.0))
    x = mx.array(_latents(rng))
    target = mx.array(_latents(rng))

    def loss_fn(model, x):
        out = model(x)
        return mx.mean((out.quantized - target) ** 2) + out.commit_loss

    grad_fn = nn.value_and_grad(vq, loss_fn)
    opt = optim.Adam(learning_rate=1e-2)
    losses = []
    for _ in range(15):
        loss, grads = grad_fn(vq, x)
        flat = dict(tree_flatten(grads))
        assert not BUFFERS & set(flat)
        assert float(mx.abs(flat["in_proj.weight"]).sum()) > 0  # STE + commitment reach in_proj
        opt.update(vq, grads)
        mx.eval(vq.parameters(), opt.state)
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_bf16_latents(rng):
    mx.random.seed(0)
    vq = VectorQuantizer(dim=16, codebook_size=32, ema=EMACodebookSpec(kmeans_init=False))
    vq.eval()
    x = mx.array(_latents(rng)).astype(mx.bfloat16)
    out = vq(x)
    assert out.quantized.dtype == mx.bfloat16
    assert np.array_equal(np.array(out.codes), np.array(vq.encode(x)))


@pytest.mark.parametrize("cosine", [False, True], ids=["euclidean", "cosine"])
def test_parity_vq_training_steps(rng, cosine):
    ema = EMACodebookSpec(decay=0.8, threshold_usage_ratio=0.3, kmeans_iters=4)
    m, t = build_pair(VectorQuantizer, TVectorQuantizer, dim=12, codebook_size=24, codebook_dim=6,
                      l2_normalize=cosine, ema=ema, seed=5)
    m.train()
    t.train()
    for step in range(6):
        x = _latents(rng, d=12, scale=2.0)
        om, ot = m(mx.array(x)), t(torch.from_numpy(x))
        assert np.array_equal(np.array(om.codes), ot.codes.numpy()), f"codes differ at step {step}"
        compare(om.quantized, ot.quantized, atol=1e-5, name="quantized")
        compare(om.commit_loss, ot.commit_loss, atol=1e-6, name="commit")
        compare(om.metrics["perplexity"], ot.metrics["perplexity"], atol=1e-4, name="perplexity")
    for k in ("embedding_sum", "cluster_usage", "initialized"):
        compare(getattr(m.codebook, k), getattr(t.codebook, k), atol=1e-5, name=k)


def test_sampling_depends_only_on_seed_and_sizes():
    a = sample_indices(np.random.default_rng(7), 100, 10)
    b = sample_indices(np.random.default_rng(7), 100, 10)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 10
    c = sample_indices(np.random.default_rng(7), 5, 10)  # fewer rows than codes: with replacement
    assert c.shape == (10,) and c.max() < 5


def test_user_errors_are_codes_errors(rng):
    vq = VectorQuantizer(dim=16, codebook_size=32)
    with pytest.raises(CodesError, match=r"expected latents of shape \(B, F, 16\), got \(2, 30, 8\)"):
        vq(mx.zeros((2, 30, 8)))
    with pytest.raises(CodesError, match="floating point"):
        vq.encode(mx.zeros((2, 30, 16), dtype=mx.int32))
    with pytest.raises(CodesError, match="code 32 out of range 0..31"):
        vq.decode(mx.array([[0, 32]], dtype=mx.int32))
    with pytest.raises(CodesError, match=r"shape \(B, F\)"):
        vq.decode(mx.zeros((1, 2, 3), dtype=mx.int32))
    tq = TVectorQuantizer(dim=16, codebook_size=32)
    with pytest.raises(CodesError, match="code -1 out of range"):
        tq.decode(torch.tensor([[0, -1]]))


def test_spec_builds_both_sides_and_validates():
    from mlx_speech.errors import SpecError
    from mlx_speech.registry import get_model

    spec = VQSpec.from_preset("dac_factorised")
    entry = get_model("vector_quantizer")
    m, t = entry.build_mlx(spec), entry.build_torch(spec)
    assert m.codebook_dim == t.codebook_dim == 8 and m.l2_normalize
    with pytest.raises(SpecError, match="decay must be in"):
        VQSpec.from_yaml("ema:\n  decay: 1.5\n")
    with pytest.raises(SpecError, match="unknown key 'decay'"):
        VQSpec.from_yaml("decay: 0.9\n")
