"""SSL checkpoint loading errors and specs: every mismatch names the keys; bad directories and
configs give one-line user errors; specs and duration helpers import neither mlx nor torch."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mlx_speech.models.ssl.hf import DROPPED, hf_to_mlx_state, read_hf_dir, renames
from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.ssl.load import load_ssl
from mlx_speech.models.ssl.spec import W2VBertSpec, Wav2Vec2Spec, spec_from_hf_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
            conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("hubert")
    transformers.HubertModel(transformers.HubertConfig(**TINY)).save_pretrained(d)
    return d


def test_rename_list_covers_upstream_exactly(hubert_dir):
    spec, state = read_hf_dir(hubert_dir)
    table = renames(spec)
    # every upstream key is renamed, folded (weight norm) or dropped on purpose
    folded = {k for k in state if "parametrizations" in k}
    dropped = {k for k in state if k not in table and k not in folded}
    assert dropped == {"masked_spec_embed"}
    assert len(table) == len(state) - len(folded) + 1 - len(dropped)
    assert len(set(v for v, _ in table.values())) == len(table)  # no two keys on one name


def test_missing_and_unexpected_keys_are_named(hubert_dir):
    spec, state = read_hf_dir(hubert_dir)
    broken = dict(state)
    broken.pop("encoder.layers.1.attention.k_proj.weight")
    broken["encoder.layers.1.attention.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError) as err:
        hf_to_mlx_state(spec, broken)
    msg = str(err.value)
    assert "encoder.layers.1.attention.k_proj.weight" in msg and "attention.extra.weight" in msg


def test_shape_mismatch_is_named(hubert_dir, tmp_path):
    spec, state = read_hf_dir(hubert_dir)
    from safetensors.numpy import save_file

    state = dict(state)
    state["feature_projection.projection.weight"] = np.zeros((32, 15), np.float32)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((hubert_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="feature_projection.projection.weight"):
        load_ssl(tmp_path)


def test_half_of_a_weight_norm_pair(hubert_dir):
    spec, state = read_hf_dir(hubert_dir)
    state = dict(state)
    state.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original0")
    with pytest.raises(CheckpointError, match="needs both"):
        hf_to_mlx_state(spec, state)


def test_directory_errors(tmp_path, hubert_dir):
    with pytest.raises(CheckpointError, match="not found"):
        load_ssl(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_ssl(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_ssl(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable JSON"):
        load_ssl(tmp_path)
    with pytest.raises(CheckpointError, match="is a 'hubert' model, not 'wavlm'"):
        load_ssl(hubert_dir, family="wavlm")
    with pytest.raises(CheckpointError, match="unknown SSL family"):
        load_ssl(hubert_dir, family="bert")


def test_config_errors():
    with pytest.raises(SpecError, match="model_type 'bert'"):
        spec_from_hf_config({"model_type": "bert"})
    with pytest.raises(SpecError, match="add_adapter"):
        spec_from_hf_config({"model_type": "wav2vec2", "add_adapter": True})
    with pytest.raises(SpecError, match="hidden_act"):
        spec_from_hf_config({"model_type": "wav2vec2-bert", "hidden_act": "gelu"})
    with pytest.raises(SpecError, match="divisible"):
        Wav2Vec2Spec(hidden_size=100, num_attention_heads=12).validate()


def test_presets_and_upstream_defaults_agree():
    """Our presets equal transformers' default configs where those are the published ones."""
    for preset, cfg in [("wavlm_base", transformers.WavLMConfig()),
                        ("hubert_base", transformers.HubertConfig()),
                        ("wav2vec2_base", transformers.Wav2Vec2Config())]:
        ours = Wav2Vec2Spec.from_preset(preset)
        assert ours == spec_from_hf_config(cfg.to_dict())
    assert W2VBertSpec.from_preset("w2v_bert_2_0") == spec_from_hf_config(
        transformers.Wav2Vec2BertConfig().to_dict())
    assert all(reason for reason in DROPPED.values())


def test_specs_and_durations_import_neither_mlx_nor_torch():
    code = ("import sys, mlx_speech.models.ssl.spec, mlx_speech.teachers.durations, mlx_speech.teachers; "
            "print(','.join(m for m in ('mlx.core', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
