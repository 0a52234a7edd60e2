"""Registered models through checkpoint files and the `mlx-speech convert` CLI: exact round trips."""

import json

import mlx.core as mx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import cli
from mlx_speech.weights.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from mlx_speech.weights.mlx import load_mlx_model, save_mlx_model
from torch_ref.weights import load_torch_model
from mlx_speech.weights.mlx import mlx_to_numpy
from convert.parity import compare, randomize_all
from mlx_speech.errors import CheckpointError
from mlx_speech.registry import get_model

CASES = [
    pytest.param("transformer", {"num_layers": 2, "dim": 32, "num_heads": 4, "ffn_dim": 64,
                                 "layer_scale": 0.1}, id="transformer"),
    pytest.param("conformer", {"num_layers": 1, "dim": 32, "num_heads": 4, "ffn_dim": 64,
                               "kernel_size": 7}, id="conformer"),
]


def _model(name, spec):
    entry = get_model(name)
    spec = entry.build_spec(spec)
    mx.random.seed(0)
    m = entry.build_mlx(spec)
    randomize_all(m, scale=0.2)  # zero-initialised parts (layer scale, biases) get real values
    m.eval()
    return entry, spec, m


@pytest.mark.parametrize("name,spec", CASES)
def test_cli_round_trip_is_bit_exact_and_outputs_match(name, spec, tmp_path):
    entry, spec, m = _model(name, spec)
    src = tmp_path / "model.safetensors"
    save_mlx_model(src, m, model=name, spec=spec)
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", "to-torch", str(src), str(tmp_path / "t.safetensors")])
    assert res.exit_code == 0, res.output
    assert read_metadata(tmp_path / "t.safetensors")["format"] == "torch"
    res = runner.invoke(cli, ["convert", "to-mlx", str(tmp_path / "t.safetensors"), str(tmp_path / "m.safetensors")])
    assert res.exit_code == 0, res.output
    original = mlx_to_numpy(m)
    back, meta = load_checkpoint(tmp_path / "m.safetensors")
    assert meta["format"] == "mlx" and json.loads(meta["spec"]) == spec.to_dict()
    assert back.keys() == original.keys()
    for k in original:
        assert np.array_equal(back[k], original[k]), k

    # The torch-layout file loads into torch_ref and computes what the MLX model computes.
    tm, _ = load_torch_model(tmp_path / "t.safetensors")
    tm.eval()
    x = np.random.default_rng(0).standard_normal((2, 12, spec.dim)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x))
    compare(m(mx.array(x)), ref, atol=1e-5, name=name)
    # ... and both layouts load into MLX identically (a file is recognised by its tag).
    m_from_torch, _ = load_mlx_model(tmp_path / "t.safetensors")
    for k, v in mlx_to_numpy(m_from_torch).items():
        assert np.array_equal(v, original[k]), k


def test_converting_twice_is_harmless(tmp_path):
    entry, spec, m = _model("transformer", {"num_layers": 1, "dim": 16, "num_heads": 2, "ffn_dim": 32})
    src = tmp_path / "a.safetensors"
    save_mlx_model(src, m, model="transformer", spec=spec)
    runner = CliRunner()
    assert runner.invoke(cli, ["convert", "to-mlx", str(src), str(tmp_path / "b.safetensors")]).exit_code == 0
    a, _ = load_checkpoint(src)
    b, _ = load_checkpoint(tmp_path / "b.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    _, spec, m = _model("transformer", {"num_layers": 1, "dim": 16, "num_heads": 2, "ffn_dim": 32})
    arrays = mlx_to_numpy(m)
    arrays.pop(next(iter(arrays)))
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, arrays, fmt="mlx", model="transformer", spec=spec.to_dict())
    with pytest.raises(CheckpointError, match="missing"):
        load_mlx_model(bad)
    res = CliRunner().invoke(cli, ["convert", "to-torch", str(bad), str(tmp_path / "o.safetensors")])
    assert res.exit_code == 2 and "missing" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.safetensors").exists()
    save_checkpoint(bad, mlx_to_numpy(m), fmt="mlx", model="no-such-model", spec={})
    with pytest.raises(CheckpointError, match="unknown model 'no-such-model'"):
        load_mlx_model(bad)
    save_checkpoint(bad, mlx_to_numpy(m), fmt="mlx", model="transformer", spec={**spec.to_dict(), "dim": 24})
    with pytest.raises(CheckpointError, match="shape mismatch|does not match"):
        load_mlx_model(bad)


def test_same_source_and_destination_refused(tmp_path):
    _, spec, m = _model("transformer", {"num_layers": 1, "dim": 16, "num_heads": 2, "ffn_dim": 32})
    src = tmp_path / "a.safetensors"
    save_mlx_model(src, m, model="transformer", spec=spec)
    before = src.read_bytes()
    res = CliRunner().invoke(cli, ["convert", "to-torch", str(src), str(src)])
    assert res.exit_code == 2 and "same file" in res.output
    assert src.read_bytes() == before


KIND_CASES = [
    ("mimi", "mimi_tiny"), ("mimi9", "mimi9_tiny"), ("hifigan", None), ("fastspeech2", None),
    ("transformer", None), ("bridge_quantizer", None),
]


@pytest.mark.parametrize("name,preset", KIND_CASES, ids=[c[0] for c in KIND_CASES])
def test_torch_tree_declares_the_same_kinds(name, preset):
    """torch_ref layers declare the MLX twins' PARAM_KINDS, so the torch side converts alone."""
    from mlx_speech.weights.core import param_kinds

    entry = get_model(name)
    spec_cls = type(entry.build_spec({}))
    spec = spec_cls.from_preset(preset) if preset else entry.build_spec({})
    m_kinds = param_kinds(entry.build_mlx(spec))
    t_kinds = param_kinds(entry.build_torch(spec))
    assert set(m_kinds) <= set(t_kinds), sorted(set(m_kinds) - set(t_kinds))[:5]
    assert {k: t_kinds[k] for k in m_kinds} == m_kinds
    assert any(k != "plain" for k in m_kinds.values()) or name in ("transformer", "bridge_quantizer")


def test_torch_side_loads_either_layout_without_mlx(tmp_path):
    import subprocess
    import sys

    entry, spec, m = _model("mimi", {"frame_rate": 500.0, "dimension": 32, "n_filters": 8,
                                     "ratios": [4, 3, 2], "num_layers": 1, "num_heads": 2,
                                     "ffn_dim": 64, "context": 6, "rvq_dim": 16,
                                     "codebook_size": 64, "total_codebooks": 4,
                                     "num_codebooks": 4})
    save_mlx_model(tmp_path / "m.safetensors", m, model="mimi", spec=spec)
    res = CliRunner().invoke(cli, ["convert", "to-torch", str(tmp_path / "m.safetensors"),
                                   str(tmp_path / "t.safetensors")])
    assert res.exit_code == 0, res.output
    code = (
        "import sys\n"
        "from torch_ref.weights import load_torch_model\n"
        f"a, _ = load_torch_model({str(tmp_path / 'm.safetensors')!r})\n"
        f"b, _ = load_torch_model({str(tmp_path / 't.safetensors')!r})\n"
        "sa, sb = a.state_dict(), b.state_dict()\n"
        "assert sa.keys() == sb.keys() and all(bool((sa[k] == sb[k]).all()) for k in sa)\n"
        "assert not any(n == 'mlx' or n.startswith('mlx.') for n in sys.modules), 'mlx imported'\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
