"""CLI: info, audio inspect/convert, demo, and the one-line error contract (exit code 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cli import cli
from mlx_speech.audio.synth import speechlike


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, speechlike(sr=16000, seconds=0.5), 16000)
    return path


@pytest.mark.cpu_only  # expects the private OpenBLAS of Linux CPU installs
def test_info_reports_blas_and_device():
    res = _run("info", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["blas"] in {"openblas", "accelerate", "reference", "system"}
    assert "mlx_device" in data and data["memory_total_gib"] > 0
    if sys.platform.startswith("linux"):
        assert data["blas"] == "openblas", data["blas_detail"]


def test_audio_inspect_and_convert(wav, tmp_path):
    res = _run("audio", "inspect", "--json", str(wav))
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)[str(wav)]
    assert d["sample_rate"] == 16000 and d["channels"] == 1
    out = tmp_path / "out" / "x.flac"
    res = _run("audio", "convert", str(wav), str(out), "--sr", "24000")
    assert res.exit_code == 0, res.output
    info = sf.info(out)
    assert info.samplerate == 24000 and abs(info.frames - 12000) <= 2


@pytest.mark.parametrize("args,needle", [
    (["audio", "inspect", "missing.wav"], "missing.wav"),
    (["audio", "convert", "missing.wav", "out.wav"], "missing.wav"),
    (["convert", "to-torch", "missing.safetensors", "o.safetensors"], "checkpoint not found"),
], ids=["inspect-missing", "convert-missing", "ckpt-missing"])
def test_user_errors_are_one_line_exit_2(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out.wav").exists()


def test_corrupt_audio_is_one_line(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    proc = subprocess.run([sys.executable, "-m", "cli", "audio", "inspect", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "bad.wav" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "cli", "--verbose", "audio", "inspect", str(bad)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_demo_writes_wav_and_metrics(tmp_path):
    out = tmp_path / "demo.wav"
    res = _run("demo", "-o", str(out), "--n-iter", "8", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    y, sr = sf.read(out)
    assert sr == data["sample_rate"] and y.shape[0] == int(round(data["duration_s"] * sr))
    assert np.isfinite(y).all() and np.abs(y).max() > 0.01
    # The reconstruction must be spectrally close to the input even though its phase differs.
    assert data["spectral_convergence"] < 0.5 and data["mel_distance"] < 1.0, data


def test_demo_on_user_input_resamples(wav, tmp_path):
    out = tmp_path / "demo.wav"
    res = _run("demo", "--input", str(wav), "-o", str(out), "--n-iter", "4", "--json")
    assert res.exit_code == 0, res.output
    assert sf.info(out).samplerate == 22050


def test_readme_main_command_speaks(tmp_path, monkeypatch):
    """README's main job (after the install) is `mlx-speech synth ...` with the bundled voice."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("<!-- main-command -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    install, _, command = block.strip().partition(" && ")
    assert install == "python3 -m pip install -e ."
    args = shlex.split(command)
    assert args[:2] == ["mlx-speech", "synth"]
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, args[1:], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = tmp_path / args[args.index("-o") + 1]
    audio, sr = sf.read(out)
    assert sr == 22050 and 0.5 < len(audio) / sr < 3.0
    assert np.isfinite(audio).all() and 0.01 < np.sqrt(np.mean(audio ** 2)) < 0.5
