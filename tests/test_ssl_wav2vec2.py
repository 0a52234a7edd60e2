"""WavLM / HuBERT / wav2vec 2.0 in MLX against transformers: random-init upstream models saved
with ``save_pretrained`` load through mlx_speech/models/ssl/hf.py, and every hidden state matches."""

import math

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
import pytest

from convert.parity import compare
from mlx_speech.models.ssl.load import build_ssl_model, load_hf_state, load_ssl, to_hf_state
from mlx_speech.models.ssl.wavlm import relative_position_buckets

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.upstream

ATOL = 1e-4
SMALL = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
             conv_dim=(32, 32, 48), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 2),
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
# 8000 samples -> 399 frames; with 32 buckets / distance 64 WavLM uses its log-spaced buckets
WAVLM = dict(num_buckets=32, max_bucket_distance=64)
CASES = {
    "wavlm-base": ("WavLM", dict(WAVLM, do_stable_layer_norm=False, feat_extract_norm="group")),
    "wavlm-large": ("WavLM", dict(WAVLM, do_stable_layer_norm=True, feat_extract_norm="layer",
                                  conv_bias=True)),
    "hubert-base": ("Hubert", dict(do_stable_layer_norm=False, feat_extract_norm="group")),
    "hubert-batchnorm": ("Hubert", dict(conv_pos_batch_norm=True, feat_proj_layer_norm=False)),
    "wav2vec2-large": ("Wav2Vec2", dict(do_stable_layer_norm=True, feat_extract_norm="layer",
                                        conv_bias=True)),
}


def _upstream(kind: str, extra: dict, seed: int = 0):
    torch.manual_seed(seed)
    config = getattr(transformers, f"{kind}Config")(**SMALL, **extra)
    model = getattr(transformers, f"{kind}Model")(config).eval()
    with torch.no_grad():  # give the parameters that start at constants non-trivial values
        for name, p in model.named_parameters():
            if "gru_rel_pos_const" in name or "rel_attn_embed" in name or "batch_norm" in name:
                p.normal_(1.0 if "const" in name else 0.0, 0.5)
            elif "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif name.startswith("encoder.layers") and p.ndim == 2:
                p.normal_(0.0, 0.08)  # larger than the 0.02 init: layers must visibly act
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_()
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def wav():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x + 0.05 * rng.standard_normal(8000),
                     0.2 * rng.standard_normal(8000)]).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every case once: (upstream model, directory written by save_pretrained)."""
    out = {}
    for name, (kind, extra) in CASES.items():
        model = _upstream(kind, extra)
        d = tmp_path_factory.mktemp(name)
        model.save_pretrained(d)
        out[name] = (model, d)
    return out


def _upstream_states(model, wav, **kw):
    with torch.no_grad():
        return model(torch.from_numpy(wav), output_hidden_states=True, **kw)


@pytest.mark.parametrize("name", list(CASES))
def test_every_hidden_state_matches_transformers(saved, wav, name):
    up, d = saved[name]
    ours = load_ssl(d)
    ref = _upstream_states(up, wav)
    states = ours.hidden_states(mx.array(wav))
    assert len(states) == len(ref.hidden_states) == SMALL["num_hidden_layers"] + 1
    for i, (a, b) in enumerate(zip(states, ref.hidden_states)):
        compare(a, b, atol=ATOL, name=f"{name} hidden_states[{i}]")
    compare(ours(mx.array(wav)), ref.last_hidden_state, atol=ATOL, name=f"{name} last")
    # not a test of constants: every layer changes the state substantially
    for a, b in zip(states, states[1:]):
        assert float(mx.abs(a - b).max()) > 0.1


def test_wavlm_buckets_match_transformers():
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    att = WavLMAttention(embed_dim=8, num_heads=2, num_buckets=320, max_distance=800)
    rel = torch.arange(-3000, 3001)[None, :]
    ref = att._relative_positions_bucket(rel).numpy()[0]
    # query 3000 against keys 0..6000 covers the offsets key - query = -3000..3000
    ours = relative_position_buckets(3001, 6001, num_buckets=320, max_distance=800)[3000]
    np.testing.assert_array_equal(ours, ref)


def test_positional_conv_weight_norm_fold_both_spellings(saved, wav):
    from mlx_speech.models.ssl.hf import fold_weight_norm_dim2, hf_to_mlx_state, read_hf_state

    up, d = saved["hubert-base"]
    state = read_hf_state(d)
    g = state["encoder.pos_conv_embed.conv.parametrizations.weight.original0"]
    v = state["encoder.pos_conv_embed.conv.parametrizations.weight.original1"]
    folded = fold_weight_norm_dim2(g, v)
    effective = up.encoder.pos_conv_embed.conv.weight.detach().numpy()  # torch's own fold
    np.testing.assert_allclose(folded, effective, rtol=2e-7, atol=1e-8)
    old = {k.replace("parametrizations.weight.original0", "weight_g")
            .replace("parametrizations.weight.original1", "weight_v"): val
           for k, val in state.items()}
    assert "encoder.pos_conv_embed.conv.weight_g" in old
    new_arrays = hf_to_mlx_state(load_ssl(d).spec, state)
    old_arrays = hf_to_mlx_state(load_ssl(d).spec, old)
    key = "encoder.pos_conv_embed.conv.weight"
    np.testing.assert_array_equal(new_arrays[key], old_arrays[key])
    model = load_hf_state(build_ssl_model(load_ssl(d).spec), old)
    compare(model(mx.array(wav)), _upstream_states(up, wav).last_hidden_state, atol=ATOL,
            name="weight_g/weight_v spelling")


def test_head_checkpoint_and_pickle(tmp_path, wav, saved):
    """A WavLMForCTC saved as pytorch_model.bin: prefix stripped, CTC head and mask dropped."""
    up, _ = saved["wavlm-base"]
    torch.manual_seed(0)
    ctc = transformers.WavLMForCTC(up.config).eval()
    ctc.wavlm.load_state_dict(up.state_dict())
    ctc.config.save_pretrained(tmp_path)
    torch.save(ctc.state_dict(), tmp_path / "pytorch_model.bin")  # the older HF file format
    ours = load_ssl(tmp_path, family="wavlm")
    compare(ours(mx.array(wav)), _upstream_states(up, wav).last_hidden_state, atol=ATOL,
            name="ctc checkpoint")


def test_reverse_map_loads_into_transformers(saved, wav):
    """MLX -> HF state dict -> a fresh transformers model (strict) gives the same states."""
    up, d = saved["wavlm-large"]
    ours = load_ssl(d)
    fresh = _upstream("WavLM", CASES["wavlm-large"][1], seed=1)
    state = {k: torch.from_numpy(v) for k, v in to_hf_state(ours).items()}
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert unexpected == [] and missing in ([], ["masked_spec_embed"])
    compare(_upstream_states(fresh, wav).last_hidden_state,
            _upstream_states(up, wav).last_hidden_state, atol=1e-5, name="round trip")


def test_padded_batch_matches_attention_mask(saved, wav):
    """lengths= reproduces transformers' attention_mask (layer-norm extractor: padding-safe)."""
    up, d = saved["wav2vec2-large"]
    ours = load_ssl(d)
    lengths = [8000, 5600]
    x = wav.copy()
    x[1, lengths[1]:] = 0.0
    mask = torch.zeros(2, 8000, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    ref = _upstream_states(up, x, attention_mask=mask)
    states = ours.hidden_states(mx.array(x), lengths=lengths)
    valid = ours.num_frames(lengths[1])
    for i, (a, b) in enumerate(zip(states, ref.hidden_states)):
        compare(a[0], b[0], atol=ATOL, name=f"padded row 0 state {i}")
        compare(a[1, :valid], b[1, :valid], atol=ATOL, name=f"padded row 1 state {i}")


def test_features_api(saved, wav):
    up, d = saved["hubert-base"]
    ours = load_ssl(d)
    assert tree_flatten(ours.trainable_parameters()) == []  # frozen by default
    ref = _upstream_states(up, wav).hidden_states
    feats = ours.features(wav, layers=[0, 2, -1])
    assert [f.shape for f in feats] == [(2, 399, 64)] * 3
    for f, i in zip(feats, [0, 2, 3]):
        compare(f, ref[i], atol=ATOL, name=f"features layer {i}")
    one = ours.features(wav[0], layers=1)[0]  # (T,) input -> batch of one
    compare(one[0], ref[1][0], atol=ATOL, name="single waveform")
    # 24 kHz input is resampled to 16 kHz first
    from mlx_speech.audio.io import resample

    up24 = resample(wav[0], 16000, 24000)
    again = ours.features(up24, layers=[2], sample_rate=24000)[0]
    direct = ours.features(resample(up24, 24000, 16000), layers=[2])[0]
    compare(again, direct, atol=1e-6, name="resampled input")
    with pytest.raises(ValueError, match="out of range"):
        ours.features(wav, layers=[4])


def test_features_bad_audio(saved):
    from mlx_speech.errors import AudioError

    ours = load_ssl(saved["hubert-base"][1])
    with pytest.raises(AudioError, match="shorter than the encoder's receptive field"):
        ours.features(np.zeros(20, np.float32))  # receptive field: 30 samples
    with pytest.raises(AudioError, match="NaN"):
        ours.features(np.full(4000, np.nan, np.float32))
    with pytest.raises(AudioError, match="shape"):
        ours.features(np.zeros((1, 2, 4000), np.float32))


def test_do_normalize_from_preprocessor_config(saved, wav, tmp_path):
    """preprocessor_config.json do_normalize=True: the waveform is normalised as upstream."""
    import shutil

    up, d = saved["wav2vec2-large"]
    shutil.copytree(d, tmp_path / "m")
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    fe.save_pretrained(tmp_path / "m")
    ours = load_ssl(tmp_path / "m")
    assert ours.spec.do_normalize
    inputs = fe(list(wav), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ref = up(inputs["input_values"], output_hidden_states=True).hidden_states
    compare(ours.features(wav, layers=[3])[0], ref[3], atol=ATOL, name="normalised input")


def test_base_preset_shapes():
    from mlx_speech.models.ssl.spec import Wav2Vec2Spec

    spec = Wav2Vec2Spec.from_preset("wavlm_base")
    model = build_ssl_model(spec)
    n = sum(v.size for _, v in tree_flatten(model.parameters()))
    assert 94e6 < n < 95e6  # wavlm-base: 94.4M parameters (without masked_spec_embed)
    assert model.num_frames(160000) == 499 and math.isclose(16000 / spec.downsample, 50.0)


def test_input_gradient_matches_transformers(saved, wav):
    """Frozen weights, but gradients reach the waveform (perceptual / distillation losses)."""
    up, d = saved["wavlm-base"]
    ours = load_ssl(d)
    x = wav[:1, :4000]
    w = np.random.default_rng(1).standard_normal((1, ours.num_frames(4000), 64)).astype(np.float32)
    g = mx.grad(lambda a: mx.sum(ours.hidden_states(a)[2] * mx.array(w)))(mx.array(x))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    (up(xt, output_hidden_states=True).hidden_states[2] * torch.from_numpy(w)).sum().backward()
    scale = float(xt.grad.abs().max())
    compare(np.array(g) / scale, xt.grad.numpy() / scale, atol=1e-5, name="d state / d wav")
