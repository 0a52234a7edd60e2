"""BSQ-ViT windows: ``encode_step`` / ``decode_step`` equal the batch calls exactly for any chunk
sizes (both frameworks), the vocoder schedule's bookkeeping, and a HiFi-GAN vocoder whose
receptive field fits in the margin giving the whole-utterance result window by window."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from convert.parity import build_pair, compare
from mlx_speech.models.bsq_vit.model import BSQViTModel
from mlx_speech.models.bsq_vit.spec import BSQVocoderSpec, bsq_vit_tiny
from mlx_speech.models.bsq_vit.windows import Chunker, VocodeSchedule, window_starts
from torch_ref.models.bsq_vit.model import BSQViTModel as TorchBSQViTModel

FRAME = 640
# hop 160 = 5 * 4 * 8, 32 mels: the tiny tokenizer's mel
HIFIGAN = {"n_mels": 32, "upsample_rates": [5, 4, 8], "upsample_kernel_sizes": [9, 8, 16],
           "upsample_initial_channel": 16, "resblock": "2", "resblock_kernel_sizes": [3],
           "resblock_dilation_sizes": [[1, 2]]}


def wav_batch(n: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return np.stack([0.02 * np.sin(2 * np.pi * (200 + 90 * b) * t) + 0.003 * rng.standard_normal(n)
                     for b in range(batch)]).astype(np.float32)


def hifigan_spec(margin: int, crossfade: int = 2):
    return bsq_vit_tiny().replace(vocoder=BSQVocoderSpec(kind="hifigan", hifigan=dict(HIFIGAN),
                                                         margin=margin, crossfade=crossfade))


def stream(fn, x: np.ndarray, chunk: int, axis: int) -> np.ndarray:
    """``fn(piece, final)`` over pieces of ``chunk`` along ``axis``: wav (axis 1) in, codes
    out, or codes (axis 2) in, wav out; the outputs concatenated along time."""
    n = x.shape[axis]
    parts = [fn(np.ascontiguousarray(np.take(x, range(i, min(i + chunk, n)), axis=axis)),
                i + chunk >= n) for i in range(0, n, chunk)]
    parts = [p.numpy() if isinstance(p, torch.Tensor) else np.array(p) for p in parts]
    return np.concatenate(parts, axis=2 if axis == 1 else 1)


@pytest.mark.parametrize("vocoder", ["griffin_lim", "hifigan"])
def test_streaming_equals_batch_exactly(vocoder):
    spec = bsq_vit_tiny() if vocoder == "griffin_lim" else hifigan_spec(margin=6)
    mx.random.seed(0)
    m = BSQViTModel(spec)
    m.eval()
    wav = wav_batch(7000)  # 11 frames: two whole windows and a partial one
    codes = np.array(m.encode(mx.array(wav)))
    audio = np.array(m.decode(mx.array(codes)))
    for chunk in (77, 640, 2560, 3001, 7000):
        m.reset_state()
        got = stream(lambda w, last: m.encode_step(mx.array(w), final=last), wav, chunk, 1)
        np.testing.assert_array_equal(got, codes, err_msg=str(chunk))
    for chunk in (1, 3, 4, 11):
        m.reset_state()
        got = stream(lambda c, last: m.decode_step(mx.array(c), final=last), codes, chunk, 2)
        np.testing.assert_array_equal(got, audio, err_msg=str(chunk))
    m.reset_state()
    first = np.array(m.decode_step(mx.array(codes[:, :, :4])))
    assert first.shape == (2, 0)  # the window waits for its margin from the next one
    rest = np.array(m.decode_step(mx.array(codes[:, :, 4:]), final=True))
    np.testing.assert_array_equal(np.concatenate([first, rest], 1), audio)


def test_a_stream_restarts_after_final_and_on_reset():
    m = BSQViTModel(bsq_vit_tiny())
    m.eval()
    wav = wav_batch(1500, batch=1)
    want = np.array(m.encode(mx.array(wav)))
    m.encode_step(mx.array(wav[:, :700]))  # an abandoned stream
    m.reset_state()
    for _ in range(2):  # final ends a stream, the next call starts a new one
        got = [np.array(m.encode_step(mx.array(wav[:, :1000]))),
               np.array(m.encode_step(mx.array(wav[:, 1000:]), final=True))]
        np.testing.assert_array_equal(np.concatenate(got, 2), want)
    assert m.encode_step(mx.zeros((1, 0)), final=True).shape == (1, 8, 0)
    assert m.decode_step(mx.zeros((1, 8, 0), dtype=mx.int32), final=True).shape == (1, 0)


def test_torch_ref_streams_like_its_batch_and_like_mlx():
    m, t = build_pair(BSQViTModel, TorchBSQViTModel, spec=hifigan_spec(margin=6))
    wav = wav_batch(5000)
    codes = t.encode(torch.from_numpy(wav)).numpy()
    audio = t.decode(torch.from_numpy(codes)).numpy()
    t.reset_state()
    got = stream(lambda w, last: t.encode_step(torch.from_numpy(w),
                                               final=last), wav, 999, 1)
    np.testing.assert_array_equal(got, codes)
    t.reset_state()
    got = stream(lambda c, last: t.decode_step(torch.from_numpy(c),
                                               final=last), codes, 3, 2)
    np.testing.assert_array_equal(got, audio)
    assert (np.array(m.encode(mx.array(wav))) == codes).all()
    compare(m.decode(mx.array(codes)), audio, atol=1e-4, name="hifigan decode")


def test_windowed_hifigan_equals_the_whole_utterance_within_its_receptive_field():
    mx.random.seed(0)
    m = BSQViTModel(hifigan_spec(margin=8))
    m.eval()
    x = m.features(mx.array(wav_batch(9000)))  # 15 frames: 60 mel frames, windows of 16
    whole = np.array(m.vocoder(m.to_log_mel(x)))
    np.testing.assert_allclose(np.array(m.vocode(x)), whole, atol=1e-5)
    # the receptive field really is wider than a 1-frame margin: windows then differ
    narrow = BSQViTModel(hifigan_spec(margin=1, crossfade=0))
    narrow.update(m.parameters())
    narrow.eval()
    assert np.abs(np.array(narrow.vocode(x)) - whole).max() > 1e-4
    assert set(m.vocoder.parameters()) >= {"conv_pre", "ups", "conv_post"}


@pytest.mark.parametrize("total,final", [(60, True), (43, True), (16, True), (40, False)])
@pytest.mark.parametrize("margin,crossfade", [(0, 0), (4, 2), (5, 3), (20, 16)])
def test_vocode_schedule_covers_every_sample_once(total, final, margin, crossfade):
    hop = 10
    sched = VocodeSchedule(window=16, margin=margin, crossfade=crossfade, hop=hop)
    sched.add(total)
    cover = np.zeros(total * hop, int)
    held = 0
    while (step := sched.next(final)) is not None:
        assert step.first == max(0, step.index * 16 - margin)
        assert step.fade == min(held, total * hop - step.start)
        assert step.first * hop <= step.start and step.hold_stop <= step.stop * hop
        cover[step.start:step.end] += 1
        held = step.hold_stop - step.end
    if final:
        assert (cover == 1).all() and held == 0 and sched.emitted == total * hop
    else:  # the last window that has its margin in; the rest waits
        assert sched.index == (total - margin) // 16 and (cover[:sched.emitted] == 1).all()


def test_window_helpers():
    assert window_starts(10, 4) == [(0, 4), (4, 8), (8, 10)] and window_starts(0, 4) == []
    chunks = Chunker(4, 1, lambda parts, axis: np.concatenate(parts, axis))
    assert chunks.feed(np.zeros((1, 3)), False) == []
    got = chunks.feed(np.ones((1, 6)), False)
    assert [g.shape for g in got] == [(1, 4), (1, 4)] and chunks.held.shape == (1, 1)
    assert [g.shape for g in chunks.feed(np.zeros((1, 0)), True)] == [(1, 1)]
    assert chunks.held is None
    with pytest.raises(ValueError, match="crossfade"):
        VocodeSchedule(window=4, margin=2, crossfade=3, hop=1)
