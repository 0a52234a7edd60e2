"""HiFi-GAN generator: MLX vs torch_ref parity (V1/V2/V3 structure), weight-norm fold, and
loading the official ``{'generator': state_dict}`` layout."""

from __future__ import annotations

import numpy as np
import pytest

import mlx.core as mx

from convert.parity import build_pair, compare
from mlx_speech.models.hifigan.spec import HiFiGANSpec

torch = pytest.importorskip("torch")

# Reduced channel widths keep the V1 (resblock "1") and V3 (resblock "2") structures fast.
SPECS = {
    "v1-structure": HiFiGANSpec.from_preset("v1").replace(upsample_initial_channel=32),
    "v3-structure": HiFiGANSpec.from_preset("v3").replace(upsample_initial_channel=32),
}


def _pair(spec):
    from mlx_speech.models.hifigan.model import HiFiGANGenerator
    from torch_ref.models.hifigan.model import HiFiGANGenerator as T

    return build_pair(HiFiGANGenerator, T, spec=spec)


@pytest.mark.parametrize("name", list(SPECS))
def test_generator_parity(name):
    m, t = _pair(SPECS[name])
    mel = np.random.default_rng(0).standard_normal((2, 10, 80)).astype(np.float32)
    a = m(mx.array(mel))
    with torch.no_grad():
        b = t(torch.from_numpy(mel))
    assert a.shape == (2, 10 * 256)
    r = compare(a, b, atol=1e-4, name=name)
    assert r.max_abs < 1e-4
    assert float(np.abs(np.array(a)).std()) > 1e-3


def test_remove_weight_norm_is_exact():
    m, _ = _pair(SPECS["v3-structure"])
    mel = mx.array(np.random.default_rng(1).standard_normal((1, 8, 80)).astype(np.float32))
    before = np.array(m(mel))
    m.remove_weight_norm()
    assert not any(k.endswith("weight_g") for k, _ in mlx_speech_params(m))
    np.testing.assert_allclose(np.array(m(mel)), before, atol=1e-6)


def mlx_speech_params(m):
    from mlx_speech.weights.core import flatten_tree

    return flatten_tree(m.parameters()).items()


def test_presets_validate():
    assert HiFiGANSpec.from_preset("v1").hop_length == 256
    assert HiFiGANSpec.from_preset("v2").upsample_initial_channel == 128
    assert HiFiGANSpec.from_preset("v3").resblock == "2"
    with pytest.raises(Exception, match="upsample"):
        HiFiGANSpec.from_dict({"upsample_rates": [8, 8], "upsample_kernel_sizes": [16]})


def test_official_layout_checkpoint_loads_and_matches(tmp_path):
    from mlx_speech.models.hifigan.load import load_official_generator
    from torch_ref.models.hifigan.official import save_official_generator

    spec = SPECS["v1-structure"]
    _, t = _pair(spec)
    keys = list(t.state_dict())
    assert "conv_pre.weight_g" in keys and "resblocks.0.convs1.0.weight_v" in keys and "ups.1.bias" in keys
    path = tmp_path / "g_00000000"
    save_official_generator(path, t)
    m = load_official_generator(path, spec)
    mel = np.random.default_rng(2).standard_normal((1, 9, 80)).astype(np.float32)
    with torch.no_grad():
        ref = t(torch.from_numpy(mel))
    compare(m(mx.array(mel)), ref, atol=1e-4, name="official layout")


def test_parametrized_keys_and_mismatch_errors(tmp_path):
    from mlx_speech.models.hifigan.load import load_official_generator
    from mlx_speech.errors import CheckpointError

    spec = SPECS["v3-structure"]
    _, t = _pair(spec)
    sd = t.state_dict()
    renamed = {k.replace("weight_g", "parametrizations.weight.original0")
                .replace("weight_v", "parametrizations.weight.original1"): v for k, v in sd.items()}
    torch.save({"generator": renamed}, tmp_path / "param.pt")
    m = load_official_generator(tmp_path / "param.pt", spec)
    mel = np.random.default_rng(3).standard_normal((1, 6, 80)).astype(np.float32)
    with torch.no_grad():
        compare(m(mx.array(mel)), t(torch.from_numpy(mel)), atol=1e-4)
    sd.pop("conv_post.bias")
    torch.save({"generator": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="conv_post.bias"):
        load_official_generator(tmp_path / "bad.pt", spec)
    torch.save({"discriminator": {}}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="generator"):
        load_official_generator(tmp_path / "none.pt", spec)
