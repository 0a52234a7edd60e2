"""Learned alignment: MAS recovers a known path, prior is a distribution, forward-sum loss parity
(MLX vs torch_ref) and it trains the aligner towards the true alignment."""

from __future__ import annotations

import numpy as np
import pytest

import mlx.core as mx

from mlx_speech.train.tts_align import (batch_durations, batch_log_prior, beta_binomial_log_prior,
                                         binarization_loss, boundary_errors, forward_sum_loss, log_attention,
                                         monotonic_alignment_search, uniform_durations)


def _peaked(durations, rng, noise=0.3):
    T, N = int(durations.sum()), len(durations)
    lp = np.full((T, N), -4.0) + rng.standard_normal((T, N)) * noise
    lp[np.arange(T), np.repeat(np.arange(N), durations)] = 0.0
    return lp.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mas_recovers_known_durations(seed):
    rng = np.random.default_rng(seed)
    d = rng.integers(1, 6, size=9)
    got = monotonic_alignment_search(_peaked(d, rng))
    np.testing.assert_array_equal(got, d)
    assert got.min() >= 1


def test_mas_batch_and_errors():
    rng = np.random.default_rng(3)
    d1, d2 = np.array([2, 3, 1]), np.array([1, 1])
    lp = np.full((2, 6, 3), -9.0, np.float32)
    lp[0] = _peaked(d1, rng)
    lp[1, :2, :2] = _peaked(d2, rng)
    out = batch_durations(lp, np.array([3, 2]), np.array([6, 2]))
    np.testing.assert_array_equal(out, [[2, 3, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match="at least as many frames"):
        monotonic_alignment_search(np.zeros((2, 5), np.float32))


def test_prior_rows_are_distributions_near_the_diagonal():
    p = np.exp(beta_binomial_log_prior(10, 40))
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert p[0].argmax() == 0 and p[-1].argmax() == 9 and 3 <= p[20].argmax() <= 6


def test_forward_sum_loss_parity_and_ordering():
    torch = pytest.importorskip("torch")
    from torch_ref.train import tts_align as T

    rng = np.random.default_rng(4)
    scores = rng.standard_normal((2, 12, 5)).astype(np.float32)
    prior = np.stack([beta_binomial_log_prior(5, 12)] * 2)
    tmask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    tl, ml = np.array([5, 3]), np.array([12, 8])
    fmask = np.arange(12)[None, :] < ml[:, None]
    la_m = log_attention(mx.array(scores), mx.array(prior), mx.array(tmask), mx.array(fmask))
    # each phone's column is a distribution over the utterance's real frames
    np.testing.assert_allclose(np.exp(np.array(la_m))[1, :8, :3].sum(0), 1.0, atol=1e-5)
    loss_m = forward_sum_loss(la_m, mx.array(tl), mx.array(ml))
    la_t = T.log_attention(torch.from_numpy(scores), torch.from_numpy(prior), torch.from_numpy(tmask),
                           torch.from_numpy(fmask))
    loss_t = T.forward_sum_loss(la_t, torch.from_numpy(tl), torch.from_numpy(ml))
    assert abs(float(loss_m) - float(loss_t)) < 1e-4
    # a peaked, correct alignment reaches the floor sum(d log d) / T of a phone spreading over its
    # d frames, far below random scores
    d = np.array([3, 2, 4, 1, 2])
    good = _peaked(d, rng, noise=0.0)[None] * 5
    ones = mx.ones((1, 5), dtype=mx.bool_)
    la_g = log_attention(mx.array(good), mx.zeros((1, 12, 5)), ones, mx.ones((1, 12), dtype=mx.bool_))
    loss_g = float(forward_sum_loss(la_g, mx.array([5]), mx.array([12])))
    assert abs(loss_g - float((d * np.log(d)).sum() / 12)) < 0.05 and loss_g < float(loss_m) - 0.4


def test_forward_sum_loss_trains_the_aligner():
    import mlx.nn as nn
    import mlx.optimizers as optim

    from mlx_speech.models.tts.fastspeech import FastSpeech2
    from mlx_speech.models.tts.spec import FastSpeechSpec

    spec = FastSpeechSpec(dim=32, num_heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32, ffn_kernel=3,
                          predictor_dim=16, aligner_dim=16, n_mels=8)
    mx.random.seed(0)
    m = FastSpeech2(spec)
    rng = np.random.default_rng(5)
    ids = np.array([[1, 4, 5, 6, 7, 1]], np.int32)
    d = np.array([2, 3, 2, 4, 3, 2])
    table = rng.standard_normal((10, 8)).astype(np.float32) * 2  # each phone has its own "spectrum"
    mel = table[np.repeat(ids[0], d)][None]
    T, N = mel.shape[1], ids.shape[1]
    prior = mx.array(beta_binomial_log_prior(N, T)[None])
    args = (mx.array(ids), mx.array([N]), mx.array(mel), mx.zeros((1,), mx.int32))

    def loss_fn(model):
        la = log_attention(model.alignment_scores(*args) * 50, prior, mx.ones((1, N), dtype=mx.bool_),
                           mx.ones((1, T), dtype=mx.bool_))
        return forward_sum_loss(la, mx.array([N]), mx.array([T]))

    opt = optim.Adam(learning_rate=1e-2)
    step = nn.value_and_grad(m, loss_fn)
    first = float(step(m)[0])
    for _ in range(60):
        loss, g = step(m)
        opt.update(m, g)
        mx.eval(m.parameters())
    assert float(loss) < 0.7 * first


def test_batch_prior_uniform_split_and_boundary_errors():
    p = batch_log_prior(np.array([3, 5]), np.array([7, 12]), 5, 16)
    assert p.shape == (2, 16, 5)
    np.testing.assert_allclose(np.exp(p[0, :7, :3]).sum(1), 1.0, atol=1e-5)
    assert (p[0, 7:] == 0).all() and (p[0, :, 3:] == 0).all() and (p[1, 12:] == 0).all()
    d = uniform_durations(4, 10)
    assert d.sum() == 10 and d.min() >= 2 and d.max() <= 3
    # same phones: |end - ref end| per phone but the last; a phone missing from one side is skipped
    err = boundary_errors(["a", "b", "c", "d"], np.array([2, 3, 4, 1]), ["a", "b", "c", "d"], np.array([3, 3, 2, 2]))
    np.testing.assert_array_equal(err, [1, 1, 1])
    err = boundary_errors(["a", "x", "b", "c"], np.array([2, 1, 3, 4]), ["a", "b", "c"], np.array([2, 4, 4]))
    np.testing.assert_array_equal(err, [0, 0])


def test_binarization_loss_parity_and_minimum():
    torch = pytest.importorskip("torch")
    from torch_ref.train import tts_align as T

    rng = np.random.default_rng(6)
    la = np.log(rng.dirichlet(np.ones(4), size=(2, 9))).astype(np.float32)
    hard = np.zeros((2, 9, 4), np.float32)
    hard[0, np.arange(9), np.repeat(np.arange(4), [2, 3, 2, 2])] = 1
    hard[1, np.arange(6), np.repeat(np.arange(3), [2, 2, 2])] = 1
    got_m = float(binarization_loss(mx.array(la), mx.array(hard)))
    got_t = float(T.binarization_loss(torch.from_numpy(la), torch.from_numpy(hard)))
    assert abs(got_m - got_t) < 1e-5 and got_m > 0.3
    np.testing.assert_allclose(got_m, -(la * hard).sum() / hard.sum(), rtol=1e-5)
    assert float(binarization_loss(mx.array(np.log(np.clip(hard, 1e-6, 1.0))), mx.array(hard))) < 1e-5
