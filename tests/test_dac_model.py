"""DAC-style codec: MLX vs torch_ref (same weights), streaming vs batch, quantizer losses, errors."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import torch

from convert.parity import build_pair, compare
from mlx_speech.errors import AudioError, CodesError, SpecError
from mlx_speech.models.dac.model import DACModel
from mlx_speech.models.dac.spec import DACSpec, dac_tiny, spec_from_dac_kwargs
from mlx_speech.quantize.factorized import FactorizedRVQ
from torch_ref.models.dac.model import DACModel as TorchDACModel
from torch_ref.quantize.factorized import FactorizedRVQ as TorchFactorizedRVQ


def wav_batch(n: int, batch: int = 2, seed: int = 0, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    rows = [0.4 * np.sin(2 * np.pi * (220 + 170 * b) * t) + 0.05 * rng.standard_normal(n)
            for b in range(batch)]
    return np.stack(rows).astype(np.float32)


CASES = [(False, 0), (True, 0), (True, 2)]


@pytest.mark.parametrize("causal,layers", CASES)
def test_mlx_matches_torch_ref(causal, layers):
    m, t = build_pair(DACModel, TorchDACModel, spec=dac_tiny(causal=causal, transformer_layers=layers))
    wav = wav_batch(1013)  # not a whole number of hops: the tail is zero-padded
    codes_m = m.encode(mx.array(wav))
    with torch.no_grad():
        codes_t = t.encode(torch.from_numpy(wav))
        audio_t = t.decode(codes_t)
    assert codes_m.shape == (2, 4, 26) and codes_m.dtype == mx.int32
    assert (np.array(codes_m) == codes_t.numpy()).all()
    audio_m = m.decode(codes_m)
    assert audio_m.shape == (2, 26 * 40)
    compare(audio_m, audio_t, atol=1e-5, name="decode")
    assert m(mx.array(wav)).shape == (2, 1013)


@pytest.mark.parametrize("layers", [0, 2])
def test_streaming_equals_batch(layers):
    m, t = build_pair(DACModel, TorchDACModel, spec=dac_tiny(causal=True, transformer_layers=layers))
    wav = wav_batch(2000, batch=1)
    codes = np.array(m.encode(mx.array(wav)))
    audio = np.array(m.decode(mx.array(codes)))
    for chunk in (1, 37, 40, 333):  # below, at and above one hop (40 samples)
        m.reset_state()
        parts = [np.array(m.encode_step(mx.array(wav[:, i:i + chunk]),
                                        final=i + chunk >= wav.shape[1]))
                 for i in range(0, wav.shape[1], chunk)]
        assert (np.concatenate(parts, axis=2) == codes).all(), chunk
    for model, run in ((m, lambda c: np.array(m.decode_step(mx.array(c)))),
                       (t, lambda c: t.decode_step(torch.from_numpy(c)).numpy())):
        model.reset_state()
        streamed = np.concatenate([run(codes[:, :, f:f + 1]) for f in range(codes.shape[2])], axis=1)
        np.testing.assert_allclose(streamed, audio, atol=1e-5)


def test_fewer_codebooks_and_prefix_decode():
    m = DACModel(dac_tiny())
    m.eval()
    wav = mx.array(wav_batch(400, batch=1))
    full = np.array(m.encode(wav))
    two = np.array(m.encode(wav, num_codebooks=2))
    assert (two == full[:, :2]).all()
    assert m.decode(mx.array(two)).shape == (1, 400)
    m.set_num_codebooks(3)
    assert m.encode(wav).shape[1] == 3


def test_bad_input_is_a_user_error():
    m = DACModel(dac_tiny())
    with pytest.raises(AudioError, match="empty"):
        m.encode(mx.zeros((1, 0)))
    with pytest.raises(AudioError, match="float waveform"):
        m.encode(mx.zeros((40,)))
    with pytest.raises(CodesError, match="out of range 0..31"):
        m.decode(mx.full((1, 2, 3), 32, dtype=mx.int32))  # level 1 has 32 codes
    assert m.decode(mx.full((1, 1, 3), 63, dtype=mx.int32)).shape == (1, 120)  # level 0: 64
    with pytest.raises(CodesError, match="5 codebooks"):
        m.decode(mx.zeros((1, 5, 3), dtype=mx.int32))
    with pytest.raises(CodesError, match="num_codebooks"):
        m.encode(mx.zeros((1, 40)), num_codebooks=0)


def test_spec_checks_and_official_kwargs():
    with pytest.raises(SpecError, match="same product"):
        DACSpec(encoder_rates=[2, 4], decoder_rates=[4, 4]).validate()
    with pytest.raises(SpecError, match="num_codebooks"):
        dac_tiny().replace(num_codebooks=9)
    spec = spec_from_dac_kwargs({"encoder_dim": 64, "encoder_rates": [2, 4, 8, 8],
                                 "latent_dim": None, "decoder_dim": 1536,
                                 "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9,
                                 "codebook_size": 1024, "codebook_dim": 8,
                                 "quantizer_dropout": False, "sample_rate": 44100})
    assert spec == DACSpec.from_preset("dac_44khz")
    assert spec.frame_rate == pytest.approx(86.1328125) and spec.latent_dim == 1024
    assert DACSpec.from_preset("dac_speech_50hz").bitrate == pytest.approx(50 * (11 + 7 * 10))


def test_factorized_rvq_losses_match_torch_and_train():
    kw = dict(dim=12, codebook_sizes=[16, 8, 8], codebook_dim=4, quantizer_dropout=0.5)
    m, t = build_pair(FactorizedRVQ, TorchFactorizedRVQ, **kw)
    m.train()
    t.train()
    x = np.random.default_rng(0).standard_normal((3, 7, 12)).astype(np.float32)
    out_m = m(mx.array(x))
    out_t = t(torch.from_numpy(x))  # same numpy generator: same dropout draws
    compare(out_m.quantized, out_t.quantized, atol=1e-5, name="quantized")
    assert (np.array(out_m.codes) == out_t.codes.numpy()).all()
    compare(out_m.commitment_loss, out_t.commitment_loss, atol=1e-6, name="commitment")
    compare(out_m.codebook_loss, out_t.codebook_loss, atol=1e-6, name="codebook")
    assert out_m.latents.shape == (3, 7, 12) and out_m.metrics["usage"].shape == (3,)

    def loss_fn(model, x):
        out = model(x)
        return mx.square(out.quantized - x).mean() + out.codebook_loss + 0.25 * out.commitment_loss

    m.quantizer_dropout = 0.0
    opt = optim.Adam(learning_rate=1e-2)
    grad_fn = nn.value_and_grad(m, loss_fn)
    xs = mx.array(x)
    first = None
    for _ in range(30):
        loss, grads = grad_fn(m, xs)
        opt.update(m, grads)
        mx.eval(m.parameters(), opt.state)
        first = float(loss) if first is None else first
    assert float(loss) < 0.7 * first
    assert float(mx.abs(grads["quantizers"][0]["codebook"]["weight"]).sum()) > 0


def test_weight_norm_fold_is_exact():
    m = DACModel(dac_tiny(causal=True))
    m.eval()
    wav = mx.array(wav_batch(400, batch=1))
    codes = m.encode(wav)
    before = np.array(m.decode(codes))
    m.remove_weight_norm()
    assert not any(k.endswith("weight_g") for k, _ in nn.utils.tree_flatten(m.parameters()))
    assert (np.array(m.encode(wav)) == np.array(codes)).all()
    np.testing.assert_allclose(np.array(m.decode(codes)), before, atol=1e-6)
