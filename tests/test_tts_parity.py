"""FastSpeech2 acoustic model: MLX vs torch_ref parity, training step, controls."""

from __future__ import annotations

import numpy as np
import pytest

import mlx.core as mx

from convert.parity import build_pair, compare, randomize_all
from mlx_speech.models.tts.spec import FastSpeechSpec

torch = pytest.importorskip("torch")

SPEC = FastSpeechSpec(dim=32, num_heads=2, encoder_layers=2, decoder_layers=2, ffn_dim=48, ffn_kernel=5,
                      predictor_dim=24, aligner_dim=16, n_speakers=2)


def _pair():
    from mlx_speech.models.tts.fastspeech import FastSpeech2
    from torch_ref.models.tts.fastspeech import FastSpeech2 as TFastSpeech2

    return build_pair(FastSpeech2, TFastSpeech2, randomize=lambda m: randomize_all(m, scale=0.2),
                      spec=SPEC)


def _batch(rng):
    ids = np.array([[1, 5, 6, 7, 8, 9, 1], [1, 9, 10, 11, 1, 0, 0]], np.int32)
    lengths = np.array([7, 5], np.int32)
    dur = np.array([[2, 3, 1, 4, 2, 0, 3], [1, 2, 3, 2, 2, 0, 0]], np.int32)
    pitch = (rng.standard_normal((2, 7)) * (ids > 0)).astype(np.float32)
    energy = (rng.standard_normal((2, 7)) * (ids > 0)).astype(np.float32)
    return ids, lengths, dur, pitch, energy, np.array([0, 1], np.int32), np.array([0, 2], np.int32)


def test_teacher_forced_parity():
    m, t = _pair()
    args = _batch(np.random.default_rng(0))
    out_m = m(*[mx.array(a) for a in args])
    with torch.no_grad():
        ta = [torch.from_numpy(a) for a in args]
        ta[5], ta[6] = ta[5].long(), ta[6].long()
        out_t = t(*ta)
    for key in ("mel", "log_duration", "pitch", "energy"):
        r = compare(out_m[key], out_t[key], atol=1e-4, name=key)
        assert r.max_abs < 1e-4
    assert float(np.abs(np.array(out_m["mel"])).max()) > 1e-2  # not trivially zero
    # padded frames of the short item are exactly zero
    assert np.all(np.array(out_m["mel"])[1, 10:] == 0)


def test_synthesize_and_aligner_parity():
    m, t = _pair()
    ids, lengths, *_ = _batch(np.random.default_rng(1))
    mel_m, dur_m = m.synthesize(mx.array(ids[:1]), speed=1.0)
    mel_t, dur_t = t.synthesize(torch.from_numpy(ids[:1]))
    np.testing.assert_array_equal(np.array(dur_m), dur_t.numpy())
    compare(mel_m, mel_t, atol=1e-4, name="synth mel")
    mel = np.random.default_rng(2).standard_normal((2, 9, SPEC.n_mels)).astype(np.float32)
    s_m = m.alignment_scores(mx.array(ids), mx.array(lengths), mx.array(mel), mx.array([0, 1]))
    s_t = t.alignment_scores(torch.from_numpy(ids), torch.from_numpy(lengths), torch.from_numpy(mel),
                             torch.tensor([0, 1]))
    compare(s_m, s_t, atol=1e-4, name="aligner scores")


def test_speed_control_changes_length():
    from mlx_speech.models.tts.fastspeech import FastSpeech2

    mx.random.seed(0)
    m = FastSpeech2(SPEC)
    m.duration_predictor.proj.bias = mx.array([2.0])  # ~6 frames per phone
    ids = mx.array([[1, 5, 6, 7, 8, 1]])
    n1 = m.synthesize(ids, speed=1.0)[0].shape[1]
    n2 = m.synthesize(ids, speed=2.0)[0].shape[1]
    assert n2 < 0.7 * n1
    with pytest.raises(ValueError, match="speed"):
        m.synthesize(ids, speed=0)


def test_training_steps_reduce_loss():
    import mlx.nn as nn
    import mlx.optimizers as optim

    from mlx_speech.models.tts.fastspeech import FastSpeech2

    mx.random.seed(0)
    m = FastSpeech2(SPEC)
    args = [mx.array(a) for a in _batch(np.random.default_rng(3))]
    target = mx.array(np.random.default_rng(4).standard_normal((2, 15, SPEC.n_mels)).astype(np.float32))

    def loss_fn(model):
        out = model(*args)
        return mx.mean(mx.abs(out["mel"] - target * out["frame_mask"][..., None]))

    opt = optim.Adam(learning_rate=3e-3)
    step = nn.value_and_grad(m, loss_fn)
    first = None
    for _ in range(15):
        loss, grads = step(m)
        opt.update(m, grads)
        mx.eval(m.parameters())
        first = float(loss) if first is None else first
    assert float(loss) < 0.8 * first
