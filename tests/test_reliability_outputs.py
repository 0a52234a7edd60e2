"""Bad-input catalogue for output paths and codes files (issue 24): one line, exit code 2,
checked before the work, and nothing left behind."""

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from safetensors.numpy import save_file

from cli import cli
from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.errors import CodesError
from mlx_speech.io.codes import FORMAT, load_codes


def _one_line(res, needle):
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.strip().count("\n") == 0, res.output
    assert needle in res.output, res.output


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=4, seconds=(0.5, 0.6)))


def test_train_out_dir_that_is_a_file(manifest, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("user data\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: mel_denoise\nmodel: {dim: 16, num_layers: 1, num_heads: 2, ffn_dim: 32}\n"
                      f"data: {{sources: [{{kind: manifest, path: {manifest}}}], batch_size: 2}}\n"
                      f"out_dir: {taken}\n")
    _one_line(CliRunner().invoke(cli, ["train", str(recipe), "--no-progress"]), "is a file, not a folder")
    assert taken.read_text() == "user data\n"
    _one_line(CliRunner().invoke(cli, ["train", str(recipe), "--no-progress", "-o", str(taken / "sub")]),
              "is a file, not a folder")


def _codes_file(path, **meta):
    base = {"format": FORMAT, "version": "1", "model": "mimi", "sample_rate": "24000",
            "frame_rate": "12.5", "num_codebooks": "2", "codebook_size": "2048", "num_samples": "3840"}
    base.update({k: str(v) for k, v in meta.items()})
    save_file({"codes": np.zeros((1, 2, 2), np.int32)}, str(path), metadata=base)
    return path


@pytest.mark.parametrize("meta, needle", [
    ({"num_samples": -5}, "num_samples"),
    ({"frame_rate": "nan"}, "frame_rate"),
    ({"frame_rate": "inf"}, "frame_rate"),
    ({"frame_rate": "-12.5"}, "frame_rate"),
    ({"sample_rate": "0"}, "sample_rate"),
], ids=["negative-samples", "nan-rate", "inf-rate", "negative-rate", "zero-sr"])
def test_codes_metadata_is_validated(tmp_path, meta, needle):
    path = _codes_file(tmp_path / "c.safetensors", **meta)
    with pytest.raises(CodesError, match=needle):
        load_codes(path)


def test_codes_metadata_good_file_loads(tmp_path):
    codes = load_codes(_codes_file(tmp_path / "c.safetensors"))
    assert codes.num_samples == 3840 and codes.frame_rate == 12.5
    json.dumps(codes.num_samples)
