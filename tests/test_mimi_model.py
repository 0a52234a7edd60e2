"""Mimi in MLX vs torch_ref (same weights), streaming vs batch, codebook cache, errors."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import torch

from convert.parity import build_pair, compare
from mlx_speech.errors import AudioError, CodesError, SpecError
from mlx_speech.models.mimi.model import MimiModel, build_mimi
from mlx_speech.layers.activations import elu
from mlx_speech.models.mimi.spec import MimiSpec, mimi_202407
from torch_ref.models.mimi.model import MimiModel as TorchMimiModel


def randomize_codebooks(model, seed: int = 3) -> None:
    """Random codebooks (a fresh EMA codebook is all zeros: every code would be 0)."""
    rng = np.random.default_rng(seed)
    for group in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
        for level in group.levels:
            cb = level.codebook
            cb.embedding_sum = mx.array(rng.standard_normal(cb.embedding_sum.shape).astype(np.float32))
            cb.cluster_usage = mx.array(rng.uniform(0.5, 2.0, cb.cluster_usage.shape).astype(np.float32))
            cb.initialized = mx.ones((1,))


def make_pair(spec: MimiSpec):
    return build_pair(MimiModel, TorchMimiModel, seed=0, randomize=randomize_codebooks, spec=spec)


def wav_batch(n: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 24000
    rows = [0.4 * np.sin(2 * np.pi * (300 + 150 * b) * t) + 0.05 * rng.standard_normal(n)
            for b in range(batch)]
    return np.stack(rows).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    return make_pair(MimiSpec.from_preset("mimi_tiny", num_codebooks=4))


def test_spec_presets_and_sizes():
    spec = mimi_202407(8)
    assert (spec.hop_length, spec.resample_stride, spec.frame_size) == (960, 2, 1920)
    assert (spec.num_semantic, spec.num_acoustic, spec.num_codebooks) == (1, 31, 8)
    assert spec.num_frames(24000) == 13 and spec.num_frames(1920) == 1
    assert MimiSpec.from_yaml(spec.to_yaml()) == spec
    with pytest.raises(SpecError, match="num_codebooks"):
        mimi_202407(33)
    with pytest.raises(SpecError, match="unknown key 'ratio'"):
        MimiSpec.from_yaml("ratio: [8, 6]\n")


def test_tree_is_named_and_mirrored(tiny):
    m, t = tiny
    keys = set(t.state_dict())
    assert "encoder.blocks.0.residuals.0.conv1.weight" in keys
    assert "decoder.blocks.2.up.weight" in keys
    assert "encoder_transformer.layers.1.self_attn.q_proj.weight" in keys
    assert "quantizer.rvq_rest.levels.4.codebook.embedding_sum" in keys
    assert "downsample.weight" in keys and "upsample.weight" in keys
    assert not any(".model." in k or "_cache" in k for k in keys)


@pytest.mark.parametrize("length", [480, 500], ids=["whole-frames", "padded-tail"])
def test_mlx_matches_torch_ref(tiny, length):
    m, t = tiny
    wav = wav_batch(length)
    lat_m = m.encode_latents(mx.array(wav))
    lat_t = t.encode_latents(torch.from_numpy(wav))
    compare(lat_m, lat_t, atol=1e-5, name="latents")
    codes_m = m.encode(mx.array(wav), num_codebooks=6)
    codes_t = t.encode(torch.from_numpy(wav), num_codebooks=6)
    assert codes_m.shape == (2, 6, -(-length // 48)) and codes_m.dtype == mx.int32
    np.testing.assert_array_equal(np.array(codes_m), codes_t.numpy())
    assert len(np.unique(np.array(codes_m))) > 5  # real codes, not all zero
    compare(m.decode(codes_m), t.decode(codes_t), atol=1e-5, name="audio")
    out = m(mx.array(wav))
    assert out.shape == (2, length)


def test_codebook_prefixes(tiny):
    m, _ = tiny
    wav = mx.array(wav_batch(480))
    full = np.array(m.encode(wav, num_codebooks=6))
    for k in (1, 2, 4):  # residual quantization: fewer codebooks = a prefix of the codes
        np.testing.assert_array_equal(np.array(m.encode(wav, num_codebooks=k)), full[:, :k])
        assert m.decode(mx.array(full[:, :k])).shape == (2, 480)
    assert m.encode(wav).shape[1] == 4  # the spec's default


def test_cached_codebooks_equal_shared_quantizer(tiny):
    m, _ = tiny
    lat = m.encode_latents(mx.array(wav_batch(960)))
    for k in (1, 3, 6):
        np.testing.assert_array_equal(np.array(m.quantize(lat, k)),
                                      np.array(m.quantizer.encode(lat, num_levels=k)))
    codes = m.quantize(lat, 6)
    np.testing.assert_array_equal(np.array(m.dequantize(codes)), np.array(m.quantizer.decode(codes)))
    # replacing a level's EMA arrays (a weight load) refreshes the cache
    level = m.quantizer.rvq_rest.levels[0].codebook
    level.cluster_usage = level.cluster_usage * 2.0
    np.testing.assert_array_equal(np.array(m.dequantize(codes)), np.array(m.quantizer.decode(codes)))


def _stream_encode(model, wav, chunk, array):
    model.reset_state()
    parts = []
    for i in range(0, wav.shape[1], chunk):
        last = i + chunk >= wav.shape[1]
        parts.append(np.asarray(model.encode_step(array(wav[:, i:i + chunk]), final=last)))
    return np.concatenate(parts, axis=2)


def _stream_decode(model, codes, chunk, array):
    model.reset_state()
    return np.concatenate([np.asarray(model.decode_step(array(codes[:, :, i:i + chunk])))
                           for i in range(0, codes.shape[2], chunk)], axis=1)


@pytest.mark.parametrize("side", ["mlx", "torch"])
@pytest.mark.parametrize("enc_chunk,dec_chunk", [(48, 1), (37, 3), (500, 7)],
                         ids=["frame-by-frame", "odd-chunks", "big-chunks"])
def test_streaming_equals_batch(tiny, side, enc_chunk, dec_chunk):
    m, t = tiny
    model, array = (m, mx.array) if side == "mlx" else (t, torch.from_numpy)
    wav = wav_batch(600)  # 12.5 frames: 25 encoder frames > context 6
    codes = np.asarray(model.encode(array(wav)))
    audio = np.asarray(model.decode(array(codes)))
    np.testing.assert_array_equal(_stream_encode(model, wav, enc_chunk, array), codes)
    compare(_stream_decode(model, codes, dec_chunk, array), audio, atol=1e-5, name="stream audio")


def test_encode_step_holds_partial_frames(tiny):
    m, _ = tiny
    m.reset_state()
    assert m.encode_step(mx.array(wav_batch(47))).shape == (2, 4, 0)
    assert m.encode_step(mx.array(wav_batch(1))).shape == (2, 4, 1)
    assert m.decode_step(mx.zeros((2, 4, 0), dtype=mx.int32)).shape == (2, 0)


@pytest.fixture(scope="module")
def full_size():
    mx.random.seed(0)
    model = build_mimi(mimi_202407(8))
    randomize_codebooks(model)
    model.eval()
    return model


def test_full_size_streaming_equals_batch(full_size):
    """Official sizes, frame by frame (1920 samples): codes identical, audio within 1e-5."""
    wav = wav_batch(1920 * 10, batch=1)
    codes = np.array(full_size.encode(mx.array(wav)))
    audio = np.array(full_size.decode(mx.array(codes)))
    np.testing.assert_array_equal(_stream_encode(full_size, wav, 1920, mx.array), codes)
    compare(_stream_decode(full_size, codes, 1, mx.array), audio, atol=1e-5, name="full stream")


def test_gradients_flow_and_loss_drops(tiny):
    spec = MimiSpec.from_preset("mimi_tiny")
    mx.random.seed(1)
    model = build_mimi(spec)
    wav = mx.array(wav_batch(480))

    def loss_fn(mdl):
        return mx.mean((mdl.decode_latents(mdl.encode_latents(wav)) - wav) ** 2)

    step = nn.value_and_grad(model, loss_fn)
    opt = optim.Adam(learning_rate=3e-3)
    losses = []
    for _ in range(6):
        loss, grads = step(model)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    grads = dict(nn.utils.tree_flatten(grads))
    assert float(mx.abs(grads["encoder.conv_in.weight"]).max()) > 0
    assert float(mx.abs(grads["decoder_transformer.layers.0.linear1.weight"]).max()) > 0
    assert not any(k.startswith("quantizer.") and "codebook" in k for k in grads)


def test_bf16_decode_close_to_fp32(tiny):
    m, _ = tiny
    codes = m.encode(mx.array(wav_batch(480)))
    ref = np.array(m.decode(codes))
    m.set_dtype(mx.bfloat16)
    try:
        out = m.decode(codes)
        assert out.dtype == mx.bfloat16
        out = np.array(out.astype(mx.float32))
        assert np.isfinite(out).all()
        assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max() + 1e-3
    finally:
        m.set_dtype(mx.float32)


def test_cpu_elu_matches_exact():
    x = np.concatenate([np.linspace(-120, 6, 100_001), -np.logspace(-12, 1.5, 2001)]).astype(np.float32)
    exact = np.where(x > 0, x, np.expm1(np.minimum(x, 0).astype(np.float64)))
    got = np.array(elu(mx.array(x))).astype(np.float64)
    assert np.abs(got - exact).max() < 3e-7
    assert got[x < -1e-6].max() < 0 and np.all(got[x > 0] == x[x > 0])


def test_bad_inputs_are_clear_errors(tiny):
    m, t = tiny
    with pytest.raises(AudioError, match=r"float waveform \(B, T\)"):
        m.encode(mx.zeros((2, 1, 480)))
    with pytest.raises(AudioError, match="empty"):
        m.encode(mx.zeros((1, 0)))
    with pytest.raises(CodesError, match="num_codebooks must be an int in 1..6"):
        m.encode(mx.zeros((1, 480)), num_codebooks=7)
    with pytest.raises(CodesError, match="out of range 0..63"):
        m.decode(mx.full((1, 2, 3), 64, dtype=mx.int32))
    with pytest.raises(CodesError, match="7 codebooks"):
        m.decode(mx.zeros((1, 7, 3), dtype=mx.int32))
    with pytest.raises(CodesError, match="integers"):
        m.decode(mx.zeros((1, 2, 3)))
    with pytest.raises(CodesError, match="out of range"):
        t.decode(torch.full((1, 2, 3), -1, dtype=torch.int32))
    with pytest.raises(AudioError):
        t.encode(torch.zeros(3, dtype=torch.float32))


def _tiny_eval(seed: int = 0) -> MimiModel:
    mx.random.seed(seed)
    model = build_mimi(MimiSpec.from_preset("mimi_tiny", num_codebooks=4))
    randomize_codebooks(model)
    model.eval()
    return model


@pytest.mark.parametrize("dec_chunk", [1, 3])
def test_compiled_steps_stream_equals_batch(dec_chunk):
    """``set_compiled_steps``: frame-by-frame encode and decode run as compiled graphs after
    the first call and still equal the batch calls; other chunkings fall back to eager."""
    model = _tiny_eval()
    frame = model.frame_size
    wav = wav_batch(frame * 14)
    codes = np.asarray(model.encode(mx.array(wav)))
    audio = np.asarray(model.decode(mx.array(codes)))
    model.set_compiled_steps(True)
    np.testing.assert_array_equal(_stream_encode(model, wav, frame, mx.array), codes)
    compare(_stream_decode(model, codes, dec_chunk, mx.array), audio, atol=1e-5,
            name="compiled stream audio")
    fns = dict(model._compiled.fns)
    assert set(fns) == {("encode", 4), ("decode", 4)}
    # a second stream reuses the graphs; chunks off the frame grid stay eager and right
    np.testing.assert_array_equal(_stream_encode(model, wav, frame, mx.array), codes)
    np.testing.assert_array_equal(_stream_encode(model, wav, 37, mx.array), codes)
    assert model._compiled.fns == fns
    # fewer codebooks: its own graph
    codes2 = np.asarray(model.encode(mx.array(wav), num_codebooks=2))
    model.reset_state()
    got = [np.asarray(model.encode_step(mx.array(wav[:, i:i + frame]), num_codebooks=2))
           for i in range(0, wav.shape[1], frame)]
    np.testing.assert_array_equal(np.concatenate(got, axis=2), codes2)
    assert ("encode", 2) in model._compiled.fns


def test_compiled_steps_follow_new_weights():
    """The graphs capture weights; new weights are used from the next stream on."""
    model = _tiny_eval()
    frame = model.frame_size
    wav = wav_batch(frame * 8)
    model.set_compiled_steps(True)
    _stream_encode(model, wav, frame, mx.array)
    model.update(_tiny_eval(seed=5).parameters())  # other convs (same codebook seed)
    codes = np.asarray(model.encode(mx.array(wav)))
    np.testing.assert_array_equal(_stream_encode(model, wav, frame, mx.array), codes)
    audio = np.asarray(model.decode(mx.array(codes)))
    compare(_stream_decode(model, codes, 1, mx.array), audio, atol=1e-5, name="new weights")
    # transformer weights alone: read live by the same graphs (no new trace)
    fns = dict(model._compiled.fns)
    other = _tiny_eval(seed=9)
    model.encoder_transformer.update(other.encoder_transformer.parameters())
    model.decoder_transformer.update(other.decoder_transformer.parameters())
    codes = np.asarray(model.encode(mx.array(wav)))
    np.testing.assert_array_equal(_stream_encode(model, wav, frame, mx.array), codes)
    audio = np.asarray(model.decode(mx.array(codes)))
    compare(_stream_decode(model, codes, 1, mx.array), audio, atol=1e-5, name="new transformer")
    assert model._compiled.fns == fns


def test_compiled_steps_option_on_mimi9_streams_eagerly():
    """Mimi9's bridge checks codes on the host (not traceable): the option keeps it eager."""
    from mlx_speech.models.mimi9.model import Mimi9Model  # noqa: PLC0415
    from mlx_speech.models.mimi9.spec import mimi9_tiny  # noqa: PLC0415

    mx.random.seed(0)
    model = Mimi9Model(mimi9_tiny())
    model.eval()
    frame = model.frame_size
    wav = wav_batch(frame * 8)
    codes = np.asarray(model.encode(mx.array(wav)))
    audio = np.asarray(model.decode(mx.array(codes)))
    model.set_compiled_steps(True)
    np.testing.assert_array_equal(_stream_encode(model, wav, frame, mx.array), codes)
    compare(_stream_decode(model, codes, 1, mx.array), audio, atol=1e-5, name="mimi9 stream")
    assert not model._compiled.fns


def test_full_size_compiled_streaming_equals_batch(full_size):
    """Official sizes with compiled frame steps, frame by frame: codes identical, audio 1e-5."""
    wav = wav_batch(1920 * 10, batch=1)
    codes = np.array(full_size.encode(mx.array(wav)))
    audio = np.array(full_size.decode(mx.array(codes)))
    full_size.set_compiled_steps(True)
    try:
        np.testing.assert_array_equal(_stream_encode(full_size, wav, 1920, mx.array), codes)
        compare(_stream_decode(full_size, codes, 1, mx.array), audio, atol=1e-5,
                name="full compiled stream")
        assert set(full_size._compiled.fns) == {("encode", 8), ("decode", 8)}
    finally:
        full_size.set_compiled_steps(False)
