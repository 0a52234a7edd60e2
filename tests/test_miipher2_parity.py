"""Miipher-2, MLX vs torch_ref on the same weights: adapted and unadapted features, the
vocoder, the restored audio, the same keys both ways through tagged files, and the torch
backbone left without gradient."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import mlx_speech
from convert.parity import copy_mlx_to_torch
from mlx_speech.audio.synth import speechlike
from mlx_speech.models.miipher2.model import Miipher2Model
from mlx_speech.models.miipher2.spec import Miipher2Spec
from mlx_speech.models.ssl.spec import Wav2Vec2Spec
from mlx_speech.weights.core import flatten_tree
from mlx_speech.weights.mlx import save_mlx_model

torch = pytest.importorskip("torch")
from torch_ref.models.miipher2.model import Miipher2Model as TModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ATOL = 1e-4

WAVLM = Wav2Vec2Spec(model_type="wavlm", hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, conv_dim=[32] * 7,
                     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2).to_dict()
VOC = dict(n_mels=32, upsample_rates=[5, 4, 4, 2], upsample_kernel_sizes=[11, 8, 8, 4],
           upsample_initial_channel=32, resblock="2", resblock_kernel_sizes=[3, 5],
           resblock_dilation_sizes=[[1, 2], [2, 6]])
SPECS = {
    "w2v_bert": lambda: Miipher2Spec.from_preset("tiny"),
    "wavlm_up2": lambda: Miipher2Spec.from_preset("tiny").replace(
        backbone=WAVLM, layer=2, feature_upsample=2, vocoder=VOC),
}


def twins(name: str, seed: int = 0):
    mx.random.seed(seed)
    m = Miipher2Model(SPECS[name]())
    rng = np.random.default_rng(seed)
    for a in m.adapters:  # untrained adapters add zeros: give them something to compare
        a.up.weight = mx.array(rng.standard_normal(a.up.weight.shape).astype(np.float32) * 0.2)
        a.up.bias = mx.array(rng.standard_normal(a.up.bias.shape).astype(np.float32) * 0.1)
    t = TModel(m.spec).eval()
    copy_mlx_to_torch(m, t)
    return m, t


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.stack([np.asarray(speechlike(16000, 1.3, seed=s), np.float32) for s in (1, 2)])


@pytest.mark.parametrize("name", list(SPECS))
def test_forward_parity(name, speech) -> None:
    m, t = twins(name)
    x = mx.array(speech)
    xt = torch.from_numpy(speech)
    with torch.no_grad():
        for adapt in (False, True):
            a = np.array(m.features(x, adapt=adapt))
            b = t.features(xt, adapt=adapt).numpy()
            np.testing.assert_allclose(a, b, atol=ATOL, err_msg=f"features adapt={adapt}")
        feats = np.random.default_rng(0).standard_normal(a.shape).astype(np.float32)
        np.testing.assert_allclose(np.array(m.synthesize(mx.array(feats))),
                                   t.synthesize(torch.from_numpy(feats)).numpy(), atol=ATOL)
        np.testing.assert_allclose(np.array(m(x)), t(xt).numpy(), atol=ATOL)


@pytest.mark.parametrize("name", list(SPECS))
def test_restore_parity(name) -> None:
    m, t = twins(name, seed=1)
    w = np.asarray(speechlike(16000, 4.4, seed=7), np.float32)
    a, b = m.restore(w, 16000), t.restore(w, 16000)
    assert a.shape == b.shape == (w.size,)
    np.testing.assert_allclose(a, b, atol=ATOL)
    t.reset_state()
    parts = [t.restore_step(w[i:i + 5000], final=i + 5000 >= w.size)
             for i in range(0, w.size, 5000)]
    np.testing.assert_array_equal(np.concatenate(parts), b)


def test_keys_and_tagged_files_both_ways(tmp_path, speech) -> None:
    import torch_ref
    from torch_ref.weights import save_torch_model

    m, t = twins("w2v_bert")
    assert set(t.state_dict()) == set(flatten_tree(m.parameters()))
    save_mlx_model(tmp_path / "m.safetensors", m, model="miipher2", spec=m.spec)
    t2 = torch_ref.load(tmp_path / "m.safetensors")
    save_torch_model(tmp_path / "t.safetensors", t2, model="miipher2", spec=t2.spec)
    m2 = mlx_speech.load(tmp_path / "t.safetensors")
    x = mx.array(speech)
    np.testing.assert_allclose(np.array(m2(x)), np.array(m(x)), atol=1e-6)


def test_torch_backbone_gets_no_gradient(speech) -> None:
    _, t = twins("wavlm_up2")
    t.train()
    y = t(torch.from_numpy(speech))
    (y.square().mean() + t.features(torch.from_numpy(speech)).square().mean()).backward()
    assert all(p.grad is None and not p.requires_grad for p in t.backbone.parameters())
    assert all(p.grad is not None for p in t.adapters.parameters())
    assert all(p.grad is not None for p in t.vocoder.parameters())
