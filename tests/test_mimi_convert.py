"""Mimi checkpoint formats: moshi and transformers key maps (built here from our own weights,
so no upstream package is needed), tagged mlx-speech files, detection and clear errors."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from convert.checkpoint import convert_file
from mlx_speech.models.mimi.formats import detect_format, read_upstream_state
from mlx_speech.models.mimi.load import load_mimi, save_mimi
from torch_ref.models.mimi.load import load_mimi_torch
from mlx_speech.models.mimi.hf import hf_key_map, spec_from_hf_config
from mlx_speech.models.mimi.moshi import moshi_key_map, spec_from_moshi_state
from convert.parity import compare
from mlx_speech.errors import CheckpointError
from mlx_speech.layers.rope import interleaved_to_rotate_half_perm, permute_head_rows
from mlx_speech.models.mimi.model import build_mimi
from mlx_speech.models.mimi.spec import MimiSpec, mimi_202407
from torch_ref.models.mimi.model import build_mimi as build_torch_mimi

SPEC = MimiSpec.from_preset("mimi_tiny", num_codebooks=4)


@pytest.fixture(scope="module")
def ours():
    """A tiny torch_ref Mimi with random codebooks and its state dict (numpy, torch layouts)."""
    torch.manual_seed(0)
    model = build_torch_mimi(SPEC).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("embedding_sum"):
                buf.copy_(torch.randn(buf.shape, generator=gen))
            elif name.endswith("initialized"):
                buf.fill_(1.0)
    assert len(np.unique(model.encode(torch.from_numpy(_wav()), num_codebooks=6).numpy())) > 5
    return model, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def to_moshi(state, spec, *, released_spelling=True):
    """Our state -> moshi's layout by inverting the asserted key map."""
    km = moshi_key_map(spec)
    out = {src: state[dst] for src, dst in km.copy.items()}
    out.update({src: state[dst][:, :, None] for src, dst in km.squeeze.items()})
    out.update({src: np.concatenate([state[d] for d in dsts]) for src, dsts in km.split.items()})
    if not released_spelling:
        out = {k.replace("in_proj_weight", "in_projs.0.weight").replace("out_proj.weight", "out_projs.0.weight")
               if "_transformer." in k else k: v for k, v in out.items()}
    return out


def to_hf(state, spec):
    km = hf_key_map(spec)
    perm = interleaved_to_rotate_half_perm(spec.dimension // spec.num_heads)
    out = {src: state[dst] for src, dst in km.copy.items()}
    out.update({src: state[dst][:, :, None] for src, dst in km.squeeze.items()})
    out.update({src: permute_head_rows(state[dst], num_heads=spec.num_heads, perm=perm)
                for src, dst in km.permute.items()})
    return {k.replace("embedding_sum", "embed_sum"): v for k, v in out.items()}


def hf_config(spec):
    return {"model_type": "mimi", "sampling_rate": spec.sample_rate, "frame_rate": spec.frame_rate,
            "hidden_size": spec.dimension, "num_filters": spec.n_filters,
            "upsampling_ratios": spec.ratios, "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads, "num_key_value_heads": spec.num_heads,
            "intermediate_size": spec.ffn_dim, "sliding_window": spec.context,
            "vector_quantization_hidden_dimension": spec.rvq_dim, "codebook_dim": spec.rvq_dim,
            "codebook_size": spec.codebook_size, "num_quantizers": spec.total_codebooks,
            "num_semantic_quantizers": spec.num_semantic, "upsample_groups": spec.dimension,
            "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
            "use_causal_conv": True, "use_conv_shortcut": False, "some_future_field": 1}


def _wav(n=480):
    return np.random.default_rng(0).uniform(-0.5, 0.5, (1, n)).astype(np.float32)


@pytest.mark.parametrize("released_spelling", [True, False], ids=["in_proj_weight", "in_projs.0"])
def test_moshi_format_round_trip(ours, tmp_path, released_spelling):
    model, state = ours
    path = tmp_path / "moshi.safetensors"
    save_file(to_moshi(state, SPEC, released_spelling=released_spelling), str(path))
    assert detect_format(path) == "moshi"
    converted, spec, fmt = read_upstream_state(path, spec=SPEC)
    assert fmt == "moshi" and set(converted) == set(state)
    for k in state:
        np.testing.assert_array_equal(converted[k], state[k], err_msg=k)
    m = load_mimi(path, spec=SPEC)
    compare(m.decode(m.encode(mx.array(_wav()))), model.decode(model.encode(torch.from_numpy(_wav()))),
            atol=1e-5, name="moshi-format load")


def test_moshi_pickle_checkpoint(ours, tmp_path):
    model, state = ours
    path = tmp_path / "mimi.pt"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in to_moshi(state, SPEC).items()}}, path)
    t = load_mimi_torch(path, spec=SPEC)
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k])


def test_moshi_spec_counts_codebooks_from_keys():
    keys = {f"quantizer.rvq_first.vq.layers.0._codebook.{s}": 0 for s in ("embedding_sum",)}
    keys.update({f"quantizer.rvq_rest.vq.layers.{i}._codebook.embedding_sum": 0 for i in range(31)})
    spec = spec_from_moshi_state(keys, num_codebooks=16)
    assert (spec.total_codebooks, spec.num_semantic, spec.num_codebooks) == (32, 1, 16)
    assert spec_from_moshi_state(keys).num_codebooks == 8
    assert len(moshi_key_map(mimi_202407()).upstream_keys()) == 318  # = moshi's state dict


def test_moshi_mismatches_name_the_keys(ours, tmp_path):
    _, state = ours
    good = to_moshi(state, SPEC)
    cases = {
        "unexpected encoder.model.99.conv.conv.weight": {**good, "encoder.model.99.conv.conv.weight": np.zeros(1)},
        "missing decoder.model.0.conv.conv.bias": {k: v for k, v in good.items()
                                                   if k != "decoder.model.0.conv.conv.bias"},
    }
    both = dict(good)
    key = next(k for k in good if k.endswith("self_attn.in_proj_weight"))
    both[key.replace("in_proj_weight", "in_projs.0.weight")] = good[key]
    cases["both spellings"] = both
    for expected, st in cases.items():
        path = tmp_path / "bad.safetensors"
        save_file(st, str(path))
        with pytest.raises(CheckpointError, match=expected):
            load_mimi(path, spec=SPEC)
    bad_shape = dict(good)
    bad_shape["quantizer.rvq_rest.vq.layers.1._codebook.embedding_sum"] = np.zeros((32, 16), np.float32)
    path = tmp_path / "bad_shape.safetensors"
    save_file(bad_shape, str(path))
    with pytest.raises(CheckpointError, match="rvq_rest.levels.1.codebook.embedding_sum"):
        load_mimi(path, spec=SPEC)
    with pytest.raises(CheckpointError, match="rvq_rest.levels.1.codebook.embedding_sum"):
        load_mimi_torch(path, spec=SPEC)


@pytest.mark.parametrize("nested", [False, True], ids=["flat-file", "nested-names"])
def test_transformers_format_round_trip(ours, tmp_path, nested):
    model, state = ours
    hf = to_hf(state, SPEC)
    if nested:  # transformers >= 5 in-memory names
        hf = {k.replace("encoder.layers.", "encoder.encoder_seanet.layers.")
               .replace("encoder_transformer.", "encoder.encoder_transformer.")
               .replace("downsample.", "encoder.downsample."): v for k, v in hf.items()}
    save_file(hf, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf_config(SPEC)))
    assert detect_format(tmp_path) == "transformers"
    m = load_mimi(tmp_path, num_codebooks=4)
    assert m.spec == SPEC
    compare(m.decode(m.encode(mx.array(_wav()))), model.decode(model.encode(torch.from_numpy(_wav()))),
            atol=1e-5, name="hf-format load")
    t = load_mimi_torch(tmp_path / "model.safetensors", num_codebooks=4)
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)


def test_transformers_config_and_errors(ours, tmp_path):
    spec = spec_from_hf_config({"model_type": "mimi"}, num_codebooks=12)
    assert spec == mimi_202407(12)
    with pytest.raises(CheckpointError, match="use_conv_shortcut"):
        spec_from_hf_config({"use_conv_shortcut": True})
    _, state = ours
    save_file(to_hf(state, SPEC), str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="config.json"):
        load_mimi(tmp_path / "model.safetensors")


def test_tagged_checkpoints(ours, tmp_path):
    model, state = ours
    tpath, mpath, back = tmp_path / "t.safetensors", tmp_path / "m.safetensors", tmp_path / "b.safetensors"
    save_mimi(tpath, model)
    assert detect_format(tpath) == "mlx-speech"
    m = load_mimi(tpath, num_codebooks=2)
    assert m.num_codebooks == 2
    save_mimi(mpath, m)
    convert_file(mpath, back, target="torch")  # the registry knows "mimi"
    t = load_mimi_torch(back)
    for k, v in t.state_dict().items():  # MLX -> file -> torch is exact
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)
    compare(m.decode(m.encode(mx.array(_wav()))), model.decode(model.encode(torch.from_numpy(_wav()), num_codebooks=2)),
            atol=1e-5)


def test_detect_format_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        detect_format(tmp_path / "nope.safetensors")
    save_file({"foo.weight": np.zeros(2, np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match="not a Mimi checkpoint"):
        detect_format(tmp_path / "x.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="readable"):
        detect_format(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="without model.safetensors"):
        detect_format(tmp_path)
    other = build_mimi(SPEC)
    from mlx_speech.weights.mlx import save_mlx_model
    from mlx_speech.quantize.rvq import build_residual_vq
    from mlx_speech.specs.quantize import RVQSpec
    save_mlx_model(tmp_path / "rvq.safetensors", build_residual_vq(RVQSpec()), model="residual_vq",
                   spec=RVQSpec())
    with pytest.raises(CheckpointError, match="'residual_vq' checkpoint, not Mimi"):
        load_mimi(tmp_path / "rvq.safetensors")
    del other
