"""Bad-input catalogue for checkpoints (issue 24): tampered files are refused before anything
is written, with one line and exit code 2."""

import mlx.core as mx
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from mlx_speech.registry import get_model
from mlx_speech.weights.checkpoint import save_checkpoint
from mlx_speech.weights.mlx import mlx_to_numpy

SPEC = {"num_layers": 1, "dim": 16, "num_heads": 2, "ffn_dim": 32}


def _arrays():
    entry = get_model("transformer")
    mx.random.seed(0)
    return mlx_to_numpy(entry.build_mlx(entry.build_spec(SPEC))), entry.build_spec(SPEC).to_dict()


def _tamper(arrays, how):
    key = next(k for k, v in arrays.items() if v.ndim == 2)
    w = arrays[key]
    arrays[key] = {"shape": w[:, :-1], "ndim": w[None], "int": w.astype(np.int32),
                   "nan-free-int64": np.round(w * 100).astype(np.int64)}[how]
    return key


@pytest.mark.parametrize("how", ["shape", "ndim", "int", "nan-free-int64"])
@pytest.mark.parametrize("target", ["to-torch", "to-mlx"])
def test_convert_refuses_tampered_tensors(tmp_path, how, target):
    arrays, spec = _arrays()
    key = _tamper(arrays, how)
    src, dst = tmp_path / "bad.safetensors", tmp_path / "out.safetensors"
    save_checkpoint(src, arrays, fmt="mlx", model="transformer", spec=spec)
    res = CliRunner().invoke(cli, ["convert", target, str(src), str(dst)])
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and key in res.output, res.output
    assert not dst.exists()


def test_convert_still_converts_a_good_file(tmp_path):
    arrays, spec = _arrays()
    src, dst = tmp_path / "ok.safetensors", tmp_path / "out.safetensors"
    save_checkpoint(src, arrays, fmt="mlx", model="transformer", spec=spec)
    res = CliRunner().invoke(cli, ["convert", "to-torch", str(src), str(dst)])
    assert res.exit_code == 0 and dst.is_file(), res.output
