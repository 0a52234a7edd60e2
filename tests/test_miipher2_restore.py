"""``mlx-speech restore``: a file streamed block by block gives the in-memory result (30 s,
at 16 and 24 kHz input), memory-flat reading, atomic output, and bad input answered in one
line with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cli import cli
from mlx_speech.audio.synth import speechlike
from mlx_speech.models.miipher2.model import Miipher2Model
from mlx_speech.models.miipher2.spec import Miipher2Spec
from mlx_speech.pipelines.restore import load_restorer, restore_file
from mlx_speech.weights.mlx import save_mlx_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import mlx.core as mx

    mx.random.seed(0)
    m = Miipher2Model(Miipher2Spec.from_preset("tiny"))
    rng = np.random.default_rng(0)
    for a in m.adapters:
        a.up.weight = mx.array(rng.standard_normal(a.up.weight.shape).astype(np.float32) * 0.2)
    path = tmp_path_factory.mktemp("restorer") / "miipher2.safetensors"
    save_mlx_model(path, m, model="miipher2", spec=m.spec)
    return path


@pytest.fixture(scope="module")
def speech30() -> np.ndarray:
    return np.asarray(speechlike(16000, 30.0, seed=2), np.float32) * 0.5


@pytest.mark.parametrize("rate", [16000, 24000])
def test_file_equals_whole_array(tmp_path, weights, speech30, rate) -> None:
    """Chunk borders leave no trace: the streamed file equals one restore() of the whole 30 s
    (the window grid is the same however the input arrives)."""
    from mlx_speech.audio.io import load, resample

    src = tmp_path / "in.wav"
    sf.write(src, resample(speech30, 16000, rate) if rate != 16000 else speech30, rate,
             subtype="FLOAT")
    model = load_restorer(weights)
    out = restore_file(src, tmp_path / "out.wav", model=model, block_seconds=1.3)
    assert out["sample_rate"] == 16000 and abs(out["seconds"] - 30.0) < 0.01
    got, sr = load(tmp_path / "out.wav")
    ref = model.restore(load(src, sr=16000)[0], 16000)
    assert sr == 16000 and got.shape == ref.shape
    # the file is 16-bit: compare within its quantisation step
    assert np.abs(got - np.clip(ref, -1, 1)).max() <= 1.0 / 32768 + 1e-6
    assert not list(tmp_path.glob(".out.wav.*"))  # no temp left behind


def test_cli_round_trip_and_json(tmp_path, weights) -> None:
    src = tmp_path / "a.wav"
    sf.write(src, np.asarray(speechlike(22050, 3.0, seed=4), np.float32) * 0.5, 22050)
    res = CliRunner().invoke(cli, ["restore", str(src), "-o", str(tmp_path / "b.flac"),
                                   "--weights", str(weights), "--json"])
    assert res.exit_code == 0, res.output
    info = sf.info(str(tmp_path / "b.flac"))
    assert info.samplerate == 16000 and abs(info.duration - 3.0) < 0.01


@pytest.mark.parametrize("case", ["missing", "empty", "nan", "short", "bad_suffix", "no_dir",
                                  "bad_weights"])
def test_cli_bad_input(tmp_path, weights, case) -> None:
    src = tmp_path / "in.wav"
    dst = tmp_path / "out.wav"
    w = str(weights)
    if case == "empty":
        sf.write(src, np.zeros(0, np.float32), 16000)
    elif case == "nan":
        sf.write(src, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    elif case == "short":
        sf.write(src, np.zeros(300, np.float32), 16000)
    elif case != "missing":
        sf.write(src, np.zeros(16000, np.float32), 16000)
    if case == "bad_suffix":
        dst = tmp_path / "out.mp4"
    elif case == "no_dir":
        dst = tmp_path / "nope" / "out.wav"
    elif case == "bad_weights":
        (tmp_path / "w.safetensors").write_bytes(b"not a checkpoint")
        w = str(tmp_path / "w.safetensors")
    dst.parent.mkdir(exist_ok=True) if case != "no_dir" else None
    existing = dst.exists()
    res = CliRunner().invoke(cli, ["restore", str(src), "-o", str(dst), "--weights", w])
    assert res.exit_code == 2, (case, res.output)
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert dst.exists() == existing
