"""BSQ-ViT tokenizer (tiny preset, random init): shapes, front end, code layout, MLX vs torch_ref
parity in train and eval mode (BatchNorm included), positions, causality, training, activation
checkpointing, bad input, and tagged files across frameworks."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
import torch
from mlx.utils import tree_flatten

import mlx_speech
import torch_ref
from convert.parity import build_pair, compare
from mlx_speech.audio.spectral import mel_spectrogram
from mlx_speech.errors import AudioError, CodesError, SpecError
from mlx_speech.models.bsq_vit.model import BSQViTModel
from mlx_speech.models.bsq_vit.spec import BSQVocoderSpec, bsq_vit_tiny
from mlx_speech.registry import get_codec
from mlx_speech.weights.core import flatten_tree
from mlx_speech.weights.mlx import save_mlx_model
from torch_ref.models.bsq_vit.model import BSQViTModel as TorchBSQViTModel
from torch_ref.weights import save_torch_model

FRAME = 640  # samples per codec frame of the tiny preset (4 mel frames at hop 160)

VARIANTS = {
    "rope": {},
    "learned": {"positions": "learned", "max_frames": 8},
    "causal": {"patch_freq": 32, "causal": True, "conv_kernel": 2},
    "layer_norm_scaled": {"conv_norm": "layer", "layer_scale": 0.5, "bits": 36},
    "no_conv": {"conformer_conv": False},
    "hifigan": {"vocoder": BSQVocoderSpec(  # hop 160 = 5 * 4 * 8, as the tiny mel
        kind="hifigan", margin=4, crossfade=2,
        hifigan={"n_mels": 32, "upsample_rates": [5, 4, 8], "upsample_kernel_sizes": [9, 8, 16],
                 "upsample_initial_channel": 16, "resblock": "2",
                 "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 2]]})},
}


def tiny(**changes):
    return bsq_vit_tiny().replace(**changes)


def wav_batch(n: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    rows = [0.02 * np.sin(2 * np.pi * (180 + 150 * b) * t) * (1 + np.sin(7 * t))
            + 0.003 * rng.standard_normal(n) for b in range(batch)]
    return np.stack(rows).astype(np.float32)


def statistics(model) -> None:
    """Give every BatchNorm non-trivial running statistics (before the copy to torch)."""
    rng = np.random.default_rng(3)
    for name, arr in flatten_tree(model.parameters()).items():
        if name.endswith("running_mean"):
            model.load_weights([(name, mx.array(0.1 * rng.standard_normal(arr.shape), mx.float32))],
                               strict=False)
        elif name.endswith("running_var"):
            model.load_weights([(name, mx.array(rng.uniform(0.5, 2.0, arr.shape), mx.float32))],
                               strict=False)


def pair(**changes):
    return build_pair(BSQViTModel, TorchBSQViTModel, spec=tiny(**changes), randomize=statistics)


def test_registered_as_a_codec():
    info = get_codec("bsq_vit")
    assert (info.sample_rate, info.frame_rate, info.max_codebooks, info.default_codebooks) == \
        (16000, 6.25, 64, 16)
    m = BSQViTModel(tiny())
    assert (m.sample_rate, m.frame_size, m.frame_rate) == (16000, FRAME, 25.0)
    assert m.total_codebooks == m.num_codebooks == 8 and m.codebook_size == 512
    assert m.codebook_sizes == [512] * 8 and m.streamable


@pytest.mark.parametrize("n", [1, 639, 640, 2561, 7000])
@pytest.mark.parametrize("batch", [1, 3])
def test_shapes_for_any_length_and_batch(n, batch):
    mx.random.seed(0)
    m = BSQViTModel(tiny())
    m.eval()
    wav = mx.array(wav_batch(n, batch))
    frames = math.ceil(n / FRAME)
    x = m.features(wav)
    assert x.shape == (batch, 4 * frames, 32) and x.dtype == mx.float32
    codes = m.encode(wav)
    assert codes.shape == (batch, 8, frames) and codes.dtype == mx.int32
    assert m.decode_mel(codes).shape == (batch, 4 * frames, 32)
    assert m.decode(codes).shape == (batch, frames * FRAME)
    assert m.vocode(x).shape == (batch, frames * FRAME)
    out = m(x[:, :16] if frames >= 4 else x)
    assert out.mel.shape == (batch, min(16, 4 * frames), 32)
    assert out.quant.codes.shape == (batch, 8, min(4, frames))


def test_features_and_log_mel_undo_each_other():
    m = BSQViTModel(tiny())
    spec = m.spec
    wav = wav_batch(3000)
    x = np.array(m.features(mx.array(wav)))
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.99  # the floor is reached
    padded = np.pad(wav, [(0, 0), (0, 5 * FRAME - 3000)])
    mel = np.array(mel_spectrogram(mx.array(padded), **spec.mel.mel_kwargs()))[:, :-1]
    lo, hi = 10 ** ((spec.ref_db - spec.top_db) / 20), 10 ** (spec.ref_db / 20)
    want = np.log(np.clip(mel, lo, hi))
    np.testing.assert_allclose(np.array(m.to_log_mel(mx.array(x))), want, atol=2e-5)
    assert float(m.to_log_mel(mx.array(-1.0))) == pytest.approx(math.log(spec.mel.log_floor))
    silence = np.array(m.features(mx.zeros((1, 1000))))
    assert (silence == -1.0).all()


def test_codes_hold_each_bands_token_bits_most_significant_first():
    mx.random.seed(1)
    m = BSQViTModel(tiny(bits=36, group_size=9, code_bits=12))
    m.eval()
    x = m.features(mx.array(wav_batch(4 * FRAME)))
    codes = np.array(m.encode_mel(x))
    bands, per_token = m.spec.bands, m.spec.codes_per_token
    assert codes.shape == (2, bands * per_token, 4) and per_token == 3
    bits = np.array(m.quantizer._sphere(m.encoder(m.patchify(x))) > 0)  # (B, F * bands, 36)
    weights = 2 ** np.arange(11, -1, -1)
    for f in range(4):
        for band in range(bands):
            for j in range(per_token):
                want = bits[:, f * bands + band, 12 * j:12 * (j + 1)] @ weights
                assert (codes[:, band * per_token + j, f] == want).all()
    tokens = m._token_codes(mx.array(codes))
    assert (np.array(m._frame_codes(tokens)) == codes).all()
    assert (np.array(m(x).quant.codes) == codes).all()  # the training path's codes agree


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_mlx_matches_torch_ref(variant, train):
    m, t = pair(**VARIANTS[variant])
    m.train(train), t.train(train)
    wav = wav_batch(7000)
    xm, xt = m.features(mx.array(wav)), t.features(torch.from_numpy(wav))
    compare(xm, xt, atol=1e-5, name="features")
    out_m, out_t = m(xm[:, :16]), t(xt[:, :16])
    compare(out_m.mel, out_t.mel.detach(), atol=1e-4, name="mel")
    assert (np.array(out_m.quant.codes) == out_t.quant.codes.numpy()).all()
    # the entropies (12-50 nats in float32) nearly cancel in the penalty and the loss, which
    # keep their rounding as an absolute error
    for k, v in out_m.quant.losses.items():
        compare(v, out_t.quant.losses[k].detach(), atol=1e-4, rtol=2e-6, name=k)
    compare(out_m.quant.loss, out_t.quant.loss.detach(), atol=1e-4, name="loss")
    state = dict(t.state_dict())
    for name, arr in flatten_tree(m.parameters()).items():  # BatchNorm's updated statistics
        if "running" in name:
            compare(arr, state[name], atol=1e-6, name=name)
    if train:
        return
    codes_m, codes_t = m.encode(mx.array(wav)), t.encode(torch.from_numpy(wav))
    assert (np.array(codes_m) == codes_t.numpy()).all()
    compare(m.decode_mel(codes_m), t.decode_mel(codes_t), atol=1e-4, name="decode_mel")
    ym, yt = np.array(m.decode(codes_m)), t.decode(codes_t).numpy()
    # Griffin-Lim's momentum amplifies rounding, and a random tokenizer's mel decodes loud:
    # compared relative to the signal's peak where it exceeds 1 (HiFi-GAN's never does)
    assert np.abs(ym - yt).max() <= 1e-4 * max(1.0, np.abs(yt).max())


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_positions_change_the_output(positions):
    m = BSQViTModel(tiny(positions=positions, max_frames=8))
    m.eval()
    names = set(flatten_tree(m.parameters()))
    assert ("encoder.time_embed" in names) == (positions == "learned")
    assert {"encoder.band_embed", "decoder.band_embed", "encoder.patch_embed.weight",
            "decoder.head.weight"} <= names
    x = m.features(mx.array(wav_batch(4 * FRAME, batch=1)))
    same = mx.concatenate([x[:, :4]] * 4, axis=1)  # four identical frames
    out = np.array(m(same).mel)
    assert not np.allclose(out[:, :4], out[:, 4:8])  # position tells the frames apart
    if positions == "learned":
        with pytest.raises(ValueError, match="learned positions cover 8 frames"):
            m(mx.concatenate([x, x, x], axis=1))


def test_causal_frames_do_not_see_later_frames():
    m = BSQViTModel(tiny(**VARIANTS["causal"]))
    statistics(m)
    m.eval()
    x = m.features(mx.array(wav_batch(4 * FRAME)))
    later = x + mx.array(np.concatenate([np.zeros((2, 8, 32)), np.full((2, 8, 32), 0.5)], 1),
                         mx.float32)
    a, b = m(x), m(later)
    np.testing.assert_array_equal(np.array(a.mel[:, :8]), np.array(b.mel[:, :8]))
    np.testing.assert_array_equal(np.array(a.quant.codes[..., :2]), np.array(b.quant.codes[..., :2]))
    assert not np.allclose(np.array(a.mel[:, 8:]), np.array(b.mel[:, 8:]))
    with pytest.raises(SpecError, match="causal needs time-only patches"):
        tiny(causal=True)


def _loss(model, x):
    out = model(x)
    return mx.mean(mx.square(out.mel - x)) + out.quant.loss


def test_a_few_adam_steps_reduce_the_loss():
    mx.random.seed(0)
    m = BSQViTModel(tiny())
    m.train()
    x = m.features(mx.array(wav_batch(4 * FRAME, batch=4)))
    opt = optim.Adam(learning_rate=3e-3)
    step = nn.value_and_grad(m, _loss)
    losses = []
    for _ in range(8):
        loss, grads = step(m, x)
        opt.update(m, grads)
        mx.eval(m.parameters(), opt.state)
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses
    assert not any("running" in k for k, _ in tree_flatten(grads))


def test_activation_checkpointing_gives_the_same_gradients():
    mx.random.seed(2)
    plain = BSQViTModel(tiny(layer_scale=0.3))
    ckpt = BSQViTModel(tiny(layer_scale=0.3, checkpoint=True))
    ckpt.update(plain.parameters())
    x = plain.features(mx.array(wav_batch(4 * FRAME)))
    plain.train(), ckpt.train()
    loss_a, grads_a = nn.value_and_grad(plain, _loss)(plain, x)
    loss_b, grads_b = nn.value_and_grad(ckpt, _loss)(ckpt, x)
    assert float(loss_a) == pytest.approx(float(loss_b), abs=1e-6)
    flat_b = dict(tree_flatten(grads_b))
    for k, g in tree_flatten(grads_a):
        np.testing.assert_allclose(np.array(flat_b[k]), np.array(g), atol=1e-6, err_msg=k)
    for name, arr in flatten_tree(plain.parameters()).items():  # one running update, not two
        if "running" in name:
            np.testing.assert_allclose(np.array(flatten_tree(ckpt.parameters())[name]),
                                       np.array(arr), atol=1e-7)
    _, t = build_pair(BSQViTModel, TorchBSQViTModel, spec=tiny(layer_scale=0.3, checkpoint=True))
    t_plain = TorchBSQViTModel(tiny(layer_scale=0.3))
    t_plain.load_state_dict(t.state_dict())
    xt = torch.from_numpy(np.array(x))
    grads = []
    for model in (t, t_plain):
        model.train()
        out = model(xt)
        ((out.mel - xt).square().mean() + out.quant.loss).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for k, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][k], atol=1e-6, rtol=0)


def test_bad_input_is_a_user_error():
    m = BSQViTModel(tiny())
    m.eval()
    codes = m.encode(mx.array(wav_batch(2000)))
    for bad, needle in ((codes + 512, "out of range"), (codes[:, :7], "all 8 codes"),
                        (codes.astype(mx.float32), "integers"), (codes[0], "(B, K, F)")):
        with pytest.raises(CodesError, match=needle):
            m.decode(bad)
        with pytest.raises(CodesError):
            m.decode_step(bad)
    with pytest.raises(CodesError, match="all 8 codes"):
        m.encode(mx.array(wav_batch(2000)), num_codebooks=3)
    with pytest.raises(CodesError, match="1..8"):
        m.encode(mx.array(wav_batch(2000)), num_codebooks=9)
    with pytest.raises(SpecError, match="all 8 codes"):
        m.set_num_codebooks(4)
    m.set_num_codebooks(8)
    for bad in (mx.zeros((2000,)), mx.zeros((1, 2000), dtype=mx.int32), np.zeros((1, 2000))):
        with pytest.raises(AudioError, match="waveform"):
            m.encode(bad)
    with pytest.raises(AudioError, match="empty"):
        m.encode(mx.zeros((1, 0)))
    with pytest.raises(AudioError, match=r"mel \(B, T, 32\)"):
        m.encode_mel(mx.zeros((1, 8, 80)))
    with pytest.raises(AudioError, match="multiple of 4"):
        m(mx.zeros((1, 6, 32)))


@pytest.mark.parametrize("variant", ["learned", "hifigan"])
@pytest.mark.parametrize("save_with", ["mlx", "torch"])
def test_tagged_files_load_in_both_frameworks(tmp_path, save_with, variant):
    m, t = pair(**VARIANTS[variant])
    path = tmp_path / "bsq.safetensors"
    if save_with == "mlx":
        save_mlx_model(path, m, model="bsq_vit", spec=m.spec)
    else:
        save_torch_model(path, t, model="bsq_vit", spec=t.spec)
    loaded_m, loaded_t = mlx_speech.load(path), torch_ref.load(path, family="bsq_vit")
    assert isinstance(loaded_m, BSQViTModel) and isinstance(loaded_t, TorchBSQViTModel)
    assert loaded_m.spec == m.spec == loaded_t.spec and not loaded_m.training
    wav = wav_batch(3000)
    want = np.array(m.encode(mx.array(wav)))
    assert (np.array(loaded_m.encode(mx.array(wav))) == want).all()
    assert (loaded_t.encode(torch.from_numpy(wav)).numpy() == want).all()
    x = m.features(mx.array(wav))
    compare(loaded_m(x).mel, m(x).mel, atol=1e-6, name="mlx reload")
    compare(loaded_t(torch.from_numpy(np.array(x))).mel.detach(), m(x).mel, atol=1e-4,
            name="torch reload")
    if variant == "hifigan":
        codes = mx.array(want)
        compare(loaded_t.decode(torch.from_numpy(want)), loaded_m.decode(codes), atol=1e-4,
                name="hifigan decode")
    assert mlx_speech.load(path, num_codebooks=8).num_codebooks == 8
