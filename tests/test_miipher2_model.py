"""Miipher-2 in MLX: the untrained adapters reproduce the backbone, only adapters and vocoder
train (the backbone gets no gradient), a pretrained backbone loads from a transformers folder
and its features match transformers' hidden state ``layer``, restore is any-length, streamed
equal to batch, and bad input gets one clear error."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_speech
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import AudioError, CheckpointError, SpecError
from mlx_speech.models.miipher2.model import Miipher2Model, linear_upsample_plan, with_backbone
from mlx_speech.models.miipher2.spec import Miipher2Spec
from mlx_speech.models.ssl.spec import Wav2Vec2Spec
from mlx_speech.weights.mlx import save_mlx_model

TINY_WAVLM = Wav2Vec2Spec(model_type="wavlm", hidden_size=32, num_hidden_layers=3,
                          num_attention_heads=2, intermediate_size=64, conv_dim=[32] * 7,
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
TINY_VOC = dict(n_mels=32, upsample_rates=[5, 4, 4, 2], upsample_kernel_sizes=[11, 8, 8, 4],
                upsample_initial_channel=32, resblock="2", resblock_kernel_sizes=[3, 5],
                resblock_dilation_sizes=[[1, 2], [2, 6]])


def tiny(**changes) -> Miipher2Spec:
    return Miipher2Spec.from_preset("tiny").replace(**changes)


def wavlm_tiny(**changes) -> Miipher2Spec:
    return tiny(**{"backbone": TINY_WAVLM.to_dict(), "layer": 2, "feature_upsample": 2,
                   "vocoder": TINY_VOC, **changes})


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.asarray(speechlike(16000, 1.5, seed=3), np.float32)


def _perturb_adapters(model: Miipher2Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for a in model.adapters:
        a.up.weight = mx.array(rng.standard_normal(a.up.weight.shape).astype(np.float32) * 0.2)


@pytest.mark.parametrize("make", [tiny, wavlm_tiny], ids=["w2v_bert", "wavlm"])
def test_untrained_adapters_reproduce_the_backbone(make, speech) -> None:
    m = Miipher2Model(make())
    x = mx.array(speech[None])
    np.testing.assert_array_equal(np.array(m.features(x)), np.array(m.features(x, adapt=False)))
    _perturb_adapters(m)
    assert float(mx.abs(m.features(x) - m.features(x, adapt=False)).max()) > 1e-3
    y = m(x)
    assert y.shape == (1, m.features(x).shape[1] * m.hop_length)


@pytest.mark.parametrize("make", [tiny, wavlm_tiny], ids=["w2v_bert", "wavlm"])
def test_backbone_gets_no_gradient(make, speech) -> None:
    m = Miipher2Model(make())
    _perturb_adapters(m)
    trainable = {k for k, _ in tree_flatten(m.trainable_parameters())}
    assert trainable and all(k.startswith(("adapters.", "vocoder.")) for k in trainable)
    assert any(k.startswith("backbone.") for k, _ in tree_flatten(m.parameters()))
    x = mx.array(speech[None])

    def loss(model):
        return mx.square(model.features(x)).mean() + mx.square(model(x)).mean()

    _, grads = nn.value_and_grad(m, loss)(m)
    flat = dict(tree_flatten(grads))
    assert not any(k.startswith("backbone.") for k in flat)
    assert any(k.startswith("adapters.") and float(mx.abs(v).max()) > 0 for k, v in flat.items())
    assert any(k.startswith("vocoder.") and float(mx.abs(v).max()) > 0 for k, v in flat.items())


def test_linear_upsample_matches_definition() -> None:
    i0, i1, w = linear_upsample_plan(3, 2)
    x = np.array([0.0, 1.0, 4.0])
    got = x[i0] * (1 - w) + x[i1] * w
    np.testing.assert_allclose(got, [0.0, 0.25, 0.75, 1.75, 3.25, 4.0])


@pytest.mark.parametrize("make", [tiny, wavlm_tiny], ids=["w2v_bert", "wavlm"])
def test_restore_any_length_and_streaming(make) -> None:
    m = Miipher2Model(make())
    _perturb_adapters(m)
    w = np.asarray(speechlike(16000, 4.7, seed=5), np.float32)
    whole = m.restore(w, 16000)
    assert whole.shape == (w.size,) and np.isfinite(whole).all()
    for block in (999, 16000):
        m.reset_state()
        parts = [m.restore_step(w[i:i + block], final=i + block >= w.size)
                 for i in range(0, w.size, block)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    m.reset_state()
    short = m.restore(w[:900], 16000)
    assert short.shape == (900,)
    # another input rate: resampled to 16 kHz first; output at the model's rate
    up = m.restore(np.asarray(speechlike(24000, 1.0, seed=5), np.float32), 24000)
    assert up.shape == (16000,)


@pytest.mark.parametrize("bad, match", [
    (np.zeros(0, np.float32), "empty"),
    (np.full(4000, np.nan, np.float32), "NaN"),
    (np.zeros((2, 4000), np.float32), "mono"),
    (np.zeros(100, np.float32), "too short"),
])
def test_restore_bad_input(bad, match) -> None:
    m = Miipher2Model(tiny())
    with pytest.raises(AudioError, match=match):
        m.restore(bad, 16000)


def test_spec_checks() -> None:
    with pytest.raises(SpecError, match="layer"):
        tiny(layer=5)
    with pytest.raises(SpecError, match="n_mels"):
        tiny(vocoder={**tiny().vocoder, "n_mels": 31})
    with pytest.raises(SpecError, match="hop"):
        tiny(sample_rate=24000)
    with pytest.raises(SpecError, match="model_type"):
        tiny(backbone={"model_type": "bert"})
    with pytest.raises(SpecError, match="unknown key"):
        tiny(backbone={**tiny().backbone, "hiden_size": 3})
    assert Miipher2Spec.from_preset("w2v_bert_l8").hop_length == 480


def test_tagged_file_round_trip(tmp_path, speech) -> None:
    m = Miipher2Model(tiny())
    _perturb_adapters(m)
    save_mlx_model(tmp_path / "r.safetensors", m, model="miipher2", spec=m.spec)
    back = mlx_speech.load(tmp_path / "r.safetensors")
    assert isinstance(back, Miipher2Model) and back.spec == m.spec
    x = mx.array(speech[None])
    np.testing.assert_array_equal(np.array(back(x)), np.array(m(x)))


torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.mark.upstream
def test_pretrained_backbone_matches_transformers(tmp_path, speech) -> None:
    """A transformers WavLM folder (4 layers) into a layer-2 model: the unadapted features
    equal transformers' hidden state 2 (the later layers are dropped)."""
    torch.manual_seed(0)
    cfg = transformers.WavLMConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                   intermediate_size=64, conv_dim=[32] * 7,
                                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    up = transformers.WavLMModel(cfg).eval()
    up.save_pretrained(tmp_path / "wavlm")
    from mlx_speech.models.miipher2.load import backbone_config_for

    bb = backbone_config_for(tmp_path / "wavlm")
    spec = wavlm_tiny(backbone={**bb, "num_hidden_layers": 4})
    m = with_backbone(Miipher2Model(spec), tmp_path / "wavlm")
    with torch.no_grad():
        ref = up(torch.from_numpy(speech[None]), output_hidden_states=True).hidden_states[2]
    got = m.features(mx.array(speech[None]), adapt=False)
    np.testing.assert_allclose(np.array(got), ref.numpy(), atol=1e-4)
    # a folder of another architecture is refused by name
    wide = wavlm_tiny(backbone={**bb, "hidden_size": 64, "num_hidden_layers": 4},
                      vocoder={**TINY_VOC, "n_mels": 64})
    with pytest.raises(CheckpointError, match="hidden_size"):
        with_backbone(Miipher2Model(wide), tmp_path / "wavlm")


def test_compiled_restore_follows_weight_changes() -> None:
    """restore() runs a compiled window forward; new weights (training, loading) are seen."""
    mx.random.seed(0)  # the size of the perturbation's effect depends on the initial weights
    m = Miipher2Model(tiny())
    w = np.asarray(speechlike(16000, 1.0, seed=9), np.float32)
    first = m.restore(w, 16000)
    _perturb_adapters(m, seed=4)
    second = m.restore(w, 16000)
    assert np.abs(second - first).max() > 1e-4
    direct = np.array(m(mx.array(np.concatenate([w, np.zeros(640, np.float32)]))[None]))[0]
    np.testing.assert_allclose(second, direct[:w.size], atol=1e-5)
