"""torch_ref/models/ssl, the torch mirror of the SSL encoders: against transformers (random-init
upstream models saved with ``save_pretrained`` and loaded by our torch loader), against the MLX
encoders on the same weights (hidden states, fbank features, ``features``), state-dict keys and
layout kinds equal to MLX's, the parallel ``adapters=`` of ``hidden_states`` in both frameworks,
``torch_ref.load`` of a transformers folder and freezing.

Tiny configs (2 layers x 32 wide, 0.25 s of audio): every family and position type in seconds.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mlx.core as mx  # noqa: E402
import mlx.nn as mnn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from convert.parity import compare, copy_mlx_to_torch  # noqa: E402
from mlx_speech.errors import AudioError, CheckpointError  # noqa: E402
from mlx_speech.models.ssl import load as mlx_load  # noqa: E402
from mlx_speech.models.ssl.spec import W2VBertSpec, Wav2Vec2Spec  # noqa: E402
from mlx_speech.weights.core import param_kinds  # noqa: E402
from mlx_speech.weights.layout import to_mlx  # noqa: E402
from torch_ref.models.ssl import load as t_load  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UP_ATOL = 1e-5  # torch_ref vs transformers: same framework, same maths (measured ~1e-6)
MLX_ATOL = 1e-4  # torch_ref vs MLX (measured ~3e-6)
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             conv_dim=[16, 16, 24], conv_stride=[5, 2, 2], conv_kernel=[10, 3, 2],
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
# 4000 samples -> 199 frames; 32 buckets / distance 64: WavLM's log-spaced buckets are used
WAVLM = dict(num_buckets=32, max_bucket_distance=64)
LARGE = dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)
W2V_CASES = {
    "wavlm-base": ("wavlm", WAVLM),
    "wavlm-large": ("wavlm", dict(WAVLM, **LARGE)),
    "hubert-base": ("hubert", {}),
    "hubert-batchnorm": ("hubert", dict(conv_pos_batch_norm=True, feat_proj_layer_norm=False)),
    "wav2vec2-base": ("wav2vec2", {}),
    "wav2vec2-large": ("wav2vec2", LARGE),
}
BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            conv_depthwise_kernel_size=5, left_max_position_embeddings=8,
            right_max_position_embeddings=4)
POSITIONS = ["relative_key", "relative", "rotary", None]
BERT_CASES = {f"w2v-bert-{p}": p for p in POSITIONS}
ALL_CASES = [*W2V_CASES, *BERT_CASES]
UPSTREAM_CLASS = {"wavlm": "WavLM", "hubert": "Hubert", "wav2vec2": "Wav2Vec2"}


def _spec(name):
    if name in W2V_CASES:
        kind, extra = W2V_CASES[name]
        return Wav2Vec2Spec(model_type=kind, **SMALL, **extra)
    return W2VBertSpec(**BERT, position_embeddings_type=BERT_CASES[name])


def _randomize(model, seed=1):
    """Every MLX parameter drawn afresh: norm gains near 1, positive running variances."""
    rng = np.random.default_rng(seed)
    new = []
    for k, v in tree_flatten(model.parameters()):
        owner = k.split(".")[-2]
        if k.endswith("running_var"):
            a = rng.uniform(0.5, 2.0, v.shape)
        elif k.endswith("gru_rel_pos_const") or ("norm" in owner and k.endswith("weight")):
            a = 1.0 + 0.1 * rng.standard_normal(v.shape)
        else:
            a = 0.1 * rng.standard_normal(v.shape)
        new.append((k, mx.array(a.astype(np.float32))))
    model.load_weights(new)


@pytest.fixture(scope="module")
def pairs():
    """name -> (MLX model, torch_ref model) with the same random weights (no transformers)."""
    out = {}
    for name in ALL_CASES:
        m = mlx_load.build_ssl_model(_spec(name))
        _randomize(m)
        m.eval()
        t = copy_mlx_to_torch(m, t_load.build_ssl_model(_spec(name))).eval()
        out[name] = (m, t)
    return out


@pytest.fixture(scope="module")
def wav():
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x + 0.05 * rng.standard_normal(4000),
                     0.2 * rng.standard_normal(4000)]).astype(np.float32)


@pytest.fixture(scope="module")
def speech():
    from mlx_speech.audio.synth import speechlike

    # 0.8 s and 0.5625 s: 78 and 54 fbank frames, both rows padded after stacking
    s = np.asarray(speechlike(16000, 0.8, seed=1), np.float32)
    return [s, 0.5 * s[:9000]]


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(transformers, tmp_path_factory):
    """name -> (random-init transformers model, its save_pretrained folder), every case once."""
    out = {}
    for name in ALL_CASES:
        torch.manual_seed(0)
        if name in W2V_CASES:
            kind, extra = W2V_CASES[name]
            cls = UPSTREAM_CLASS[kind]
            model = getattr(transformers, f"{cls}Model")(
                getattr(transformers, f"{cls}Config")(**SMALL, **extra))
        else:
            model = transformers.Wav2Vec2BertModel(transformers.Wav2Vec2BertConfig(
                **BERT, position_embeddings_type=BERT_CASES[name]))
        model.eval()
        with torch.no_grad():  # constants and small inits made non-trivial
            for k, p in model.named_parameters():
                if "gru_rel_pos_const" in k or "rel_attn_embed" in k or "pos_bias" in k:
                    p.normal_(1.0 if "const" in k else 0.0, 0.5)
                elif "batch_norm" in k or "layer_norm" in k:
                    p.add_(torch.randn_like(p) * 0.1)
                elif k.startswith("encoder.layers") and p.ndim >= 2:
                    p.normal_(0.0, 0.08)
            for k, b in model.named_buffers():
                if k.endswith("running_mean"):
                    b.normal_()
                elif k.endswith("running_var"):
                    b.uniform_(0.5, 2.0)
        d = tmp_path_factory.mktemp(name)
        model.save_pretrained(d)
        out[name] = (model, d)
    return out


@pytest.fixture(scope="module")
def fbank_inputs(transformers, speech):
    fe = transformers.SeamlessM4TFeatureExtractor()
    return fe(speech, sampling_rate=16000, return_tensors="np", padding=True)


# --- (a) torch_ref vs transformers --------------------------------------------------------------
@pytest.mark.upstream
@pytest.mark.parametrize("name", list(W2V_CASES))
def test_wav2vec2_family_matches_transformers(saved, wav, name):
    up, d = saved[name]
    ours = t_load.load_ssl(d)
    with torch.no_grad():
        ref = up(torch.from_numpy(wav), output_hidden_states=True)
        states = ours.hidden_states(torch.from_numpy(wav))
        last = ours(torch.from_numpy(wav))
    assert len(states) == len(ref.hidden_states) == SMALL["num_hidden_layers"] + 1
    for i, (a, b) in enumerate(zip(states, ref.hidden_states)):
        compare(a, b, atol=UP_ATOL, name=f"{name} hidden_states[{i}]")
    compare(last, ref.last_hidden_state, atol=UP_ATOL, name=f"{name} last_hidden_state")
    for a, b in zip(states, states[1:]):  # not a test of constants: every layer acts
        assert float((a - b).abs().max()) > 0.05


@pytest.mark.upstream
@pytest.mark.parametrize("name", list(BERT_CASES))
def test_w2v_bert_matches_transformers_padded(saved, fbank_inputs, name):
    up, d = saved[name]
    ours = t_load.load_ssl(d, family="w2v-bert")
    feats = torch.from_numpy(fbank_inputs["input_features"])
    mask = torch.from_numpy(fbank_inputs["attention_mask"])
    assert mask.sum(1).tolist() == [39, 27]  # both rows padded: every mask path runs
    with torch.no_grad():
        ref = up(feats, attention_mask=mask, output_hidden_states=True)
        states = ours.hidden_states(feats, mask=mask.bool())
        last = ours(feats, mask.bool())
    for i, (a, b) in enumerate(zip(states, ref.hidden_states)):
        compare(a, b, atol=UP_ATOL, name=f"{name} hidden_states[{i}]")
    compare(last, ref.last_hidden_state, atol=UP_ATOL, name=f"{name} last_hidden_state")


@pytest.mark.upstream
def test_fbank_matches_feature_extractor_and_mlx(fbank_inputs, speech):
    feats, mask = t_load.KaldiFbank()(speech)
    np.testing.assert_array_equal(mask.numpy(), fbank_inputs["attention_mask"].astype(bool))
    compare(feats, fbank_inputs["input_features"], atol=2e-4, name="torch fbank vs upstream")
    mfeats, mmask = mlx_load.KaldiFbank()(speech)
    np.testing.assert_array_equal(mask.numpy(), np.array(mmask))
    compare(mfeats, feats, atol=MLX_ATOL, name="MLX fbank vs torch fbank")


@pytest.mark.upstream
def test_padded_batch_matches_attention_mask_and_mlx(saved, wav):
    """lengths= as transformers' attention_mask (layer-norm extractor: padding-safe), and MLX."""
    up, d = saved["wav2vec2-large"]
    ours, theirs = t_load.load_ssl(d), mlx_load.load_ssl(d)
    lengths = [4000, 2800]
    x = wav.copy()
    x[1, lengths[1]:] = 0.0
    mask = torch.zeros(2, 4000, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    with torch.no_grad():
        ref = up(torch.from_numpy(x), attention_mask=mask, output_hidden_states=True)
        states = ours.hidden_states(torch.from_numpy(x), lengths=lengths)
    mstates = theirs.hidden_states(mx.array(x), lengths=lengths)
    valid = ours.num_frames(lengths[1])
    for i, (a, b, c) in enumerate(zip(states, ref.hidden_states, mstates)):
        compare(a[0], b[0], atol=UP_ATOL, name=f"padded row 0 state {i}")
        compare(a[1, :valid], b[1, :valid], atol=UP_ATOL, name=f"padded row 1 state {i}")
        compare(c, a, atol=MLX_ATOL, name=f"padded batch MLX vs torch state {i}")


@pytest.mark.upstream
def test_reverse_map_loads_into_transformers(saved, transformers, wav):
    """torch_ref -> transformers state dict -> a fresh upstream model (strict): same outputs."""
    up, d = saved["wavlm-base"]
    ours = t_load.load_ssl(d)
    torch.manual_seed(1)
    fresh = transformers.WavLMModel(up.config).eval()
    state = {k: torch.from_numpy(v) for k, v in t_load.to_hf_state(ours).items()}
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert unexpected == [] and missing in ([], ["masked_spec_embed"])
    with torch.no_grad():
        compare(fresh(torch.from_numpy(wav)).last_hidden_state,
                up(torch.from_numpy(wav)).last_hidden_state, atol=UP_ATOL, name="round trip")


# --- (e), (f) torch_ref.load and freezing ----------------------------------------------------
@pytest.mark.upstream
def test_torch_ref_load_finds_the_folder_and_freezes(saved):
    import torch_ref

    model = torch_ref.load(saved["hubert-base"][1])
    assert isinstance(model, t_load.Wav2Vec2Model) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    bert = torch_ref.load(saved["w2v-bert-relative"][1], family="ssl")
    assert isinstance(bert, t_load.W2VBertModel)
    assert not any(p.requires_grad for p in bert.parameters())
    trainable = t_load.load_ssl(saved["hubert-base"][1], freeze=False)
    assert all(p.requires_grad for p in trainable.parameters())
    with pytest.raises(CheckpointError, match="not 'wavlm'"):
        t_load.load_ssl(saved["hubert-base"][1], family="wavlm")


# --- (b), (c) torch_ref vs MLX on the same weights -----------------------------------------
@pytest.mark.parametrize("name", ALL_CASES)
def test_keys_and_layout_kinds_equal_mlx(pairs, name):
    m, t = pairs[name]
    mlx_params = dict(tree_flatten(m.parameters()))
    state = t.state_dict()
    assert sorted(state) == sorted(mlx_params)
    kinds = param_kinds(t)
    assert kinds == param_kinds(m)  # both trees declare the same layout kinds
    for k, v in state.items():  # shapes agree once the declared kind is converted
        assert to_mlx(kinds[k], v.numpy(), k).shape == mlx_params[k].shape, k
    assert any(kind == "conv1d" for kind in kinds.values())


@pytest.mark.parametrize("name", list(W2V_CASES))
def test_wav2vec2_family_matches_mlx(pairs, wav, name):
    m, t = pairs[name]
    with torch.no_grad():
        states = t.hidden_states(torch.from_numpy(wav))
        last = t(torch.from_numpy(wav))
    for i, (a, b) in enumerate(zip(m.hidden_states(mx.array(wav)), states)):
        compare(a, b, atol=MLX_ATOL, name=f"{name} MLX vs torch state {i}")
    compare(m(mx.array(wav)), last, atol=MLX_ATOL, name=f"{name} MLX vs torch last")


@pytest.mark.parametrize("name", list(BERT_CASES))
def test_w2v_bert_matches_mlx_padded(pairs, speech, name):
    m, t = pairs[name]
    feats, mask = t_load.KaldiFbank()(speech)
    with torch.no_grad():
        states = t.hidden_states(feats, mask=mask)
    mstates = m.hidden_states(mx.array(feats.numpy()), mask=mx.array(mask.numpy()))
    for i, (a, b) in enumerate(zip(mstates, states)):
        compare(a, b, atol=MLX_ATOL, name=f"{name} MLX vs torch state {i}")


@pytest.mark.parametrize("name", ["wavlm-base", "w2v-bert-relative_key"])
def test_features_match_mlx(pairs, speech, name):
    """features(): the waveform path (resampling, fbank for w2v-BERT) agrees across frameworks."""
    from mlx_speech.audio.io import resample

    m, t = pairs[name]
    x24 = resample(speech[1], 16000, 24000)
    ours = t.features(torch.from_numpy(x24), layers=[0, -1], sample_rate=24000)
    theirs = m.features(x24, layers=[0, -1], sample_rate=24000)
    assert [tuple(f.shape) for f in ours] == [f.shape for f in theirs]
    assert not any(f.requires_grad for f in ours)
    for a, b in zip(theirs, ours):
        compare(a, b, atol=MLX_ATOL, name=f"{name} features")


def test_bad_input_same_errors(pairs):
    m, t = pairs["hubert-base"]
    for model in (m, t):
        with pytest.raises(AudioError, match="shorter than the encoder's receptive field"):
            model.features(np.zeros(20, np.float32))
        with pytest.raises(AudioError, match="NaN"):
            model.features(np.full(4000, np.nan, np.float32))
        with pytest.raises(ValueError, match="out of range"):
            model.features(np.zeros(4000, np.float32), layers=[3])
    with pytest.raises(AudioError, match="at least 400 samples"):
        pairs["w2v-bert-rotary"][1].features(np.zeros(300, np.float32))


# --- (d) parallel adapters -------------------------------------------------------------------
def _inputs(name, wav, speech):
    """``(mlx kwargs, torch kwargs)`` of ``hidden_states`` for the case's input kind."""
    if name in W2V_CASES:
        return {"wav": mx.array(wav)}, {"wav": torch.from_numpy(wav)}
    feats, mask = t_load.KaldiFbank()(speech)
    return ({"input_features": mx.array(feats.numpy()), "mask": mx.array(mask.numpy())},
            {"input_features": feats, "mask": mask})


def _linear_pair(dim, seed):
    """An MLX and a torch Linear(dim, dim) with the same weights (a nonzero adapter)."""
    rng = np.random.default_rng(seed)
    w = (0.2 * rng.standard_normal((dim, dim))).astype(np.float32)
    b = (0.1 * rng.standard_normal(dim)).astype(np.float32)
    ml = mnn.Linear(dim, dim)
    ml.load_weights([("weight", mx.array(w)), ("bias", mx.array(b))])
    tl = torch.nn.Linear(dim, dim)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(w))
        tl.bias.copy_(torch.from_numpy(b))
    return ml, tl


@pytest.mark.parametrize("name", ["wavlm-base", "wav2vec2-large", "w2v-bert-relative"])
def test_zero_adapters_change_nothing(pairs, wav, speech, name):
    m, t = pairs[name]
    mk, tk = _inputs(name, wav, speech)
    plain_m = m.hidden_states(**mk)
    with_m = m.hidden_states(**mk, adapters=[mx.zeros_like, mx.zeros_like])
    for a, b in zip(plain_m, with_m):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    with torch.no_grad():
        plain_t = t.hidden_states(**tk)
        with_t = t.hidden_states(**tk, adapters=torch.nn.ModuleList(
            [_Zero(), _Zero()]))  # an nn.ModuleList is accepted as the sequence
    for a, b in zip(plain_t, with_t):
        assert torch.equal(a, b)


class _Zero(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("name", ["wavlm-base", "hubert-base", "w2v-bert-relative_key"])
def test_nonzero_adapters_match_mlx(pairs, wav, speech, name):
    """x_next = layer_i(x) + adapter_i(x): MLX and torch agree, and the adapter acts."""
    m, t = pairs[name]
    mk, tk = _inputs(name, wav, speech)
    (ml0, tl0), (ml1, tl1) = _linear_pair(32, 3), _linear_pair(32, 4)
    cases = [([ml0, ml1], [tl0, tl1]), ([None, ml1], [None, tl1]), ([ml0], [tl0])]
    plain = m.hidden_states(**mk)
    for m_ad, t_ad in cases:
        mstates = m.hidden_states(**mk, adapters=m_ad)
        with torch.no_grad():
            tstates = t.hidden_states(**tk, adapters=t_ad)
        for i, (a, b) in enumerate(zip(mstates, tstates)):
            compare(a, b, atol=MLX_ATOL, name=f"{name} adapters {len(m_ad)} state {i}")
        first = next(i for i, a in enumerate(m_ad) if a is not None)  # first adapted layer
        np.testing.assert_array_equal(np.array(mstates[first]), np.array(plain[first]))
        assert float(mx.abs(mstates[first + 1] - plain[first + 1]).max()) > 1e-2
    # the adapter reads the layer's input: state 1 = layer_0(h0) + adapter_0(h0)
    with torch.no_grad():
        h = t.hidden_states(**tk, upto=1)
        h_ad = t.hidden_states(**tk, upto=1, adapters=[tl0])
    compare(h_ad[1], h[1] + tl0(h[0]), atol=1e-6, name="parallel adapter formula")


def test_adapter_gradients_with_frozen_backbone(pairs, wav):
    """A frozen backbone passes gradients to its adapters only (Miipher-2's training setup)."""
    _, t = pairs["wavlm-base"]
    t.requires_grad_(False)
    try:
        adapters = torch.nn.ModuleList([torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)])
        states = t.hidden_states(torch.from_numpy(wav), adapters=adapters)
        states[-1].square().mean().backward()
        assert all(p.grad is not None and float(p.grad.abs().max()) > 0
                   for p in adapters.parameters())
        assert all(p.grad is None for p in t.parameters())
    finally:
        t.requires_grad_(True)


def test_adapter_argument_errors(pairs, wav):
    m, t = pairs["hubert-base"]
    for model, x, zero in ((m, mx.array(wav), mx.zeros_like),
                           (t, torch.from_numpy(wav), torch.zeros_like)):
        with pytest.raises(ValueError, match="3 adapters for 2 layers"):
            model.hidden_states(x, adapters=[zero] * 3)
        with pytest.raises(TypeError, match=r"adapters\[1\] is not callable"):
            model.hidden_states(x, adapters=[zero, 3])
        with pytest.raises(TypeError, match="sequence of callables"):
            model.hidden_states(x, adapters=zero)
