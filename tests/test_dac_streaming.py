"""Non-causal DAC streaming with look-ahead (``models/dac/chunked.py``, both frameworks).

The receptive field derived from the layers is checked against the model itself (perturb one
input, see exactly which outputs move); chunked ``encode_step`` / ``decode_step`` equal the batch
calls for any chunk size; output comes out as soon as its right context is in; the buffers stay
bounded; causal models are unchanged; a non-causal model with transformers is refused.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from convert.parity import build_pair
from mlx_speech.models.dac.chunked import Lookahead
from mlx_speech.models.dac.model import DACModel
from mlx_speech.models.dac.receptive import needs
from mlx_speech.models.dac.spec import DACSpec, dac_tiny
from torch_ref.models.dac.model import DACModel as TorchDACModel

# dac_tiny: strides 2, 4, 5; the second has a stride-5 and a stride-8 block (odd and even
# strides pad and trim differently)
SPECS = {"tiny": dac_tiny(),
         "strides_5_8": dac_tiny().replace(encoder_rates=[5, 8], decoder_rates=[8, 5])}


def _wav(n: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    rows = [0.4 * np.sin(2 * np.pi * (180 + 150 * b) * t) + 0.1 * rng.standard_normal(n)
            for b in range(batch)]
    return np.stack(rows).astype(np.float32)


@pytest.fixture(scope="module", params=list(SPECS))
def pair(request):
    return build_pair(DACModel, TorchDACModel, spec=SPECS[request.param])


def test_receptive_field_is_exact(pair):
    m, t = pair
    rf = m.receptive_field()
    assert rf == t.receptive_field()
    hop, dim = m.frame_size, m.spec.latent_dim
    dec = Lookahead(m.decoder.model).geometry
    # decoder: perturb latent frame f0 (forward-mode, so no influence is lost to rounding);
    # exactly the samples whose context holds f0 move
    frames = 2 * (rf.decoder_left + rf.decoder_right) + 6
    f0 = frames // 2
    lat = mx.array(np.random.default_rng(1).standard_normal((1, frames, dim)).astype(np.float32))
    tangent = np.zeros((1, frames, dim), np.float32)
    tangent[0, f0] = 1.0
    _, (moved,) = mx.jvp(m.decode_latents, [lat], [mx.array(tangent)])
    moved = np.nonzero(np.array(moved)[0])[0]
    expect = [s for s in range(frames * hop) if needs(dec, s, s)[0] <= f0 <= needs(dec, s, s)[1]]
    assert moved.tolist() == expect
    assert (moved[0] // hop, moved[-1] // hop) == (f0 - rf.decoder_right, f0 + rf.decoder_left)
    # the same with a finite perturbation, frame by frame (large: at the field's edge the
    # influence is ~1e-9 per unit, below float32 rounding of the samples)
    base = np.array(m.decode_latents(lat))[0].reshape(frames, hop)
    bumped = np.array(m.decode_latents(lat + 100.0 * mx.array(tangent)))[0].reshape(frames, hop)
    changed = np.nonzero((base != bumped).any(axis=1))[0]
    assert (changed[0], changed[-1]) == (f0 - rf.decoder_right, f0 + rf.decoder_left)
    # encoder: the samples one latent frame reads (reverse-mode)
    n = (2 * (rf.encoder_left_frames + rf.encoder_right_frames) + 6) * hop
    f1 = n // hop // 2
    wav = mx.array(_wav(n, batch=1))
    proj = np.zeros((1, n // hop, dim), np.float32)
    proj[0, f1] = np.random.default_rng(2).standard_normal(dim)
    _, (grad,) = mx.vjp(m.encode_latents, [wav], [mx.array(proj)])
    read = np.nonzero(np.array(grad)[0])[0]
    assert read[0] == f1 * hop - rf.encoder_left
    assert read[-1] == f1 * hop + hop - 1 + rf.encoder_right
    assert read.size == read[-1] - read[0] + 1


def test_official_receptive_fields():
    """The look-ahead the docstrings quote (built lazily: no weights are computed)."""
    rf44 = DACModel(DACSpec.from_preset("dac_44khz")).receptive_field()
    assert (rf44.encoder_left, rf44.encoder_right, rf44.decoder_left, rf44.decoder_right) == (
        3733, 3733, 10, 10)
    rf16 = DACModel(DACSpec.from_preset("dac_16khz")).receptive_field()
    assert (rf16.encoder_left, rf16.encoder_right, rf16.decoder_left, rf16.decoder_right) == (
        2501, 2493, 10, 10)
    causal = DACModel(DACSpec.from_preset("dac_speech_50hz")).receptive_field()
    assert causal.encoder_right == causal.decoder_right == 0


def _encode_chunks(model, wav, chunk, to, back):
    model.reset_state()
    return np.concatenate([back(model.encode_step(to(wav[:, i:i + chunk]),
                                                  final=i + chunk >= wav.shape[1]))
                           for i in range(0, wav.shape[1], chunk)], axis=2)


def _decode_chunks(model, codes, chunk, to, back):
    model.reset_state()
    f = codes.shape[2]
    return np.concatenate([back(model.decode_step(to(codes[:, :, i:i + chunk]),
                                                  final=i + chunk >= f))
                           for i in range(0, f, chunk)], axis=1)


# (model index in the pair, to framework, back to numpy, encode chunks in samples, decode
# chunks in frames; None: the whole input): a sample, odd sizes, one hop, several hops. torch's
# CPU convolutions cost ~10 ms a call at these shapes, so it runs fewer (the rules are the same)
FRAMEWORKS = {"mlx": (0, mx.array, np.array, (1, 37, 40, 333, None), (1, 3, 7, None)),
              "torch": (1, torch.from_numpy, lambda x: x.numpy(), (37, 40, None), (1, 7, None))}


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_chunked_equals_batch(pair, framework):
    index, to, back, samples, frames = FRAMEWORKS[framework]
    model = pair[index]
    wav = _wav(1013)  # not a whole number of hops (40): the tail is zero-padded
    with torch.no_grad():
        codes = back(model.encode(to(wav)))
        audio = back(model.decode(to(codes)))
    assert codes.shape == (2, 4, 26)
    for chunk in samples:
        chunk = chunk or wav.shape[1]
        np.testing.assert_array_equal(_encode_chunks(model, wav, chunk, to, back), codes,
                                      err_msg=f"chunk {chunk}")
    for chunk in frames:
        chunk = chunk or codes.shape[2]
        np.testing.assert_allclose(_decode_chunks(model, codes, chunk, to, back), audio,
                                   atol=1e-5, err_msg=f"chunk {chunk}")
    model.reset_state()  # fewer levels stream too
    two = back(model.encode_step(to(wav), num_codebooks=2, final=True))
    np.testing.assert_array_equal(two, codes[:, :2])


def test_output_comes_out_as_soon_as_its_context_is_in():
    m = DACModel(SPECS["strides_5_8"])
    m.eval()
    hop = m.frame_size
    dec, enc = Lookahead(m.decoder.model).geometry, Lookahead(m.encoder.block).geometry
    codes = np.array(m.encode(mx.array(_wav(30 * hop))))
    m.reset_state()
    emitted = 0
    for f in range(codes.shape[2]):  # one frame at a time, never final
        emitted += m.decode_step(mx.array(codes[:, :, f:f + 1])).shape[1]
        assert emitted == sum(needs(dec, s, s)[1] <= f for s in range(30 * hop)), f
    wav = _wav(12 * hop)
    m.reset_state()
    frames = 0
    for end in range(97, wav.shape[1], 97):
        frames += m.encode_step(mx.array(wav[:, end - 97:end])).shape[2]
        assert frames == sum(needs(enc, f, f)[1] < end for f in range(12)), end


def test_buffers_hold_the_context_only():
    m = DACModel(SPECS["tiny"])
    m.eval()
    stream = Lookahead(m.decoder.model)
    lat = mx.array(np.random.default_rng(0).standard_normal((1, 80, m.spec.latent_dim))
                   .astype(np.float32))
    held = []
    for f in range(80):
        mx.eval(stream.step(lat[:, f:f + 1]))
        held.append(stream.held())
    assert held[20] == held[40] == held[79]  # steady state: the context, not the history
    # the flush is the audio still waiting for frames after the last: under decoder_right hops
    rest = stream.step(lat[:, :0], final=True).shape[1]
    n = 80 * 40 - 8  # the odd-stride [5, 4, 2] stack returns 8 samples fewer (cnn.py)
    assert rest == sum(needs(stream.geometry, s, s)[1] >= 80 for s in range(n))
    assert rest <= m.receptive_field().decoder_right * 40


def test_final_ends_the_stream():
    m = DACModel(SPECS["tiny"])
    m.eval()
    wav = mx.array(_wav(500))
    first = np.array(m.encode_step(wav, final=True))
    again = np.array(m.encode_step(wav, final=True))  # no reset_state: a new stream
    np.testing.assert_array_equal(first, again)
    codes = mx.array(first)
    np.testing.assert_array_equal(np.array(m.decode_step(codes, final=True)),
                                  np.array(m.decode_step(codes, final=True)))


def test_causal_models_keep_their_path():
    m = DACModel(dac_tiny(causal=True))
    m.eval()
    rf = m.receptive_field()
    assert rf.encoder_right == rf.decoder_right == 0
    assert m.encode_step(mx.array(_wav(40))).shape == (2, 4, 1)  # one hop in, one frame out
    codes = mx.zeros((2, 4, 3), dtype=mx.int32)
    m.reset_state()
    plain = np.array(m.decode_step(codes))
    m.reset_state()
    flagged = np.array(m.decode_step(codes, final=True))
    assert plain.shape == (2, 120)
    np.testing.assert_array_equal(plain, flagged)


def test_noncausal_transformers_are_refused():
    spec = dac_tiny(causal=False, transformer_layers=2)
    m, t = DACModel(spec), TorchDACModel(spec)
    assert not m.streamable and not t.streamable
    for model, wav, codes in ((m, mx.zeros((1, 40)), mx.zeros((1, 2, 1), dtype=mx.int32)),
                              (t, torch.zeros(1, 40), torch.zeros(1, 2, 1, dtype=torch.int32))):
        with pytest.raises(ValueError, match="unbounded receptive field"):
            model.encode_step(wav)
        with pytest.raises(ValueError, match="unbounded receptive field"):
            model.decode_step(codes, final=True)
        with pytest.raises(ValueError, match="CNN only"):
            model.receptive_field()
    assert DACModel(dac_tiny(causal=True, transformer_layers=2)).streamable
