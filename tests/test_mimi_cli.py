"""``mlx-speech codec encode / decode / roundtrip`` with a tiny Mimi, and the codes file."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from safetensors.numpy import save_file

from cli import cli
from mlx_speech.models.mimi.load import save_mimi
from mlx_speech.audio.io import resample
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import CodesError
from mlx_speech.io.codes import FORMAT, check_compatible, load_codes, save_codes
from mlx_speech.models.mimi.model import build_mimi
from mlx_speech.models.mimi.spec import MimiSpec


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("codec")
    mx.random.seed(0)
    model = build_mimi(MimiSpec.from_preset("mimi_tiny", num_codebooks=4))
    rng = np.random.default_rng(0)
    for group in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
        for level in group.levels:
            level.codebook.embedding_sum = mx.array(
                rng.standard_normal(level.codebook.embedding_sum.shape).astype(np.float32))
            level.codebook.initialized = mx.ones((1,))
    model.eval()
    weights = tmp / "tiny_mimi.safetensors"
    save_mimi(weights, model)
    wav16 = speechlike(sr=16000, seconds=0.6)
    src = tmp / "speech16k.wav"
    sf.write(src, wav16, 16000, subtype="FLOAT")
    return model, weights, src, wav16


def test_encode_decode_files(setup, tmp_path):
    model, weights, src, wav16 = setup
    codes_path = tmp_path / "codes.safetensors"
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(codes_path), "--weights",
                                   str(weights), "-n", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert "resampling" in res.stderr and "16000 Hz to 24000 Hz" in res.stderr
    summary = json.loads(res.stdout)
    codes = load_codes(codes_path)
    assert (codes.model, codes.sample_rate, codes.frame_rate) == ("mimi", 24000, 500.0)
    assert codes.num_codebooks == 3 == summary["num_codebooks"] and codes.codebook_size == 64
    wav24 = resample(wav16, 16000, 24000)
    assert codes.num_samples == wav24.size and codes.num_frames == -(-wav24.size // 48)
    expected = np.array(model.encode(mx.array(wav24[None]), num_codebooks=3))
    np.testing.assert_array_equal(codes.codes, expected)  # chunked CLI path == batch call

    out = tmp_path / "decoded.wav"
    res = _run("codec", "decode", codes_path, "-o", out, "--weights", weights, "--no-progress")
    assert res.exit_code == 0, res.output
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 24000 and audio.size == wav24.size
    ref = np.array(model.decode(mx.array(expected)))[0, :wav24.size]
    assert np.abs(audio - np.clip(ref, -1, 1)).max() < 1e-4  # PCM_16 rounding


def test_roundtrip_prints_metrics(setup, tmp_path):
    _, weights, src, _ = setup
    res = _run("codec", "roundtrip", src, "--weights", weights, "-o", tmp_path / "rt.wav", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {"snr_db", "mel_distance", "pesq", "stoi"} <= set(data)
    assert np.isfinite(data["snr_db"]) and data["mel_distance"] > 0
    assert isinstance(data["pesq"], (float, str))
    assert (tmp_path / "rt.wav").exists()


def _codes_file(path, *, model="mimi", codes=None, sample_rate=24000, frame_rate=500.0):
    codes = np.zeros((1, 2, 5), np.int32) if codes is None else codes
    meta = {"format": FORMAT, "version": "1", "model": model, "sample_rate": str(sample_rate),
            "frame_rate": str(frame_rate), "num_codebooks": str(codes.shape[1]),
            "codebook_size": "64", "num_samples": "240", "source": "x.wav"}
    save_file({"codes": codes}, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("kind,needle", [
    ("other-model", "made by model 'dac', cannot decode with 'mimi'"),
    ("out-of-range", "code 64 out of range 0..63"),
    ("other-rate", "16000 Hz"),
    ("garbage", "not a readable codes file"),
    ("not-codes", "not an mlx-speech codes file"),
    ("missing", "codes file not found"),
])
def test_decode_errors_are_one_line(setup, tmp_path, kind, needle):
    _, weights, _, _ = setup
    path = tmp_path / "codes.safetensors"
    if kind == "other-model":
        _codes_file(path, model="dac")
    elif kind == "out-of-range":
        _codes_file(path, codes=np.full((1, 2, 5), 64, np.int32))
    elif kind == "other-rate":
        _codes_file(path, sample_rate=16000)
    elif kind == "garbage":
        path.write_bytes(b"\x00garbage" * 10)
    elif kind == "not-codes":
        save_file({"codes": np.zeros((1, 2, 5), np.int32)}, str(path))
    res = CliRunner().invoke(cli, ["codec", "decode", str(path), "-o", str(tmp_path / "o.wav"),
                                   "--weights", str(weights)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.stderr
    assert not (tmp_path / "o.wav").exists()


def test_encode_errors(setup, tmp_path):
    _, weights, src, _ = setup
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(tmp_path / "c.safetensors"),
                                   "--weights", str(tmp_path / "none.safetensors")])
    assert res.exit_code == 2 and "not found" in res.stderr
    res = CliRunner().invoke(cli, ["codec", "encode", str(tmp_path / "nope.wav"), "-o",
                                   str(tmp_path / "c.safetensors"), "--weights", str(weights)])
    assert res.exit_code == 2 and "nope.wav" in res.stderr
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(tmp_path / "c.safetensors"),
                                   "--weights", str(weights), "-n", "7"])
    assert res.exit_code == 2 and "num_codebooks" in res.stderr


def test_codes_file_api(tmp_path):
    path = save_codes(tmp_path / "c.safetensors", np.ones((1, 3, 4), np.int64), model="mimi",
                      sample_rate=24000, frame_rate=12.5, codebook_size=2048, num_samples=7680)
    codes = load_codes(path)
    assert codes.codes.dtype == np.int32 and codes.num_frames == 4
    check_compatible(codes, model="mimi", sample_rate=24000, frame_rate=12.5, codebook_size=2048,
                     total_codebooks=32)
    with pytest.raises(CodesError, match="decodes 1..2"):
        check_compatible(codes, model="mimi", sample_rate=24000, frame_rate=12.5,
                         codebook_size=2048, total_codebooks=2)
    with pytest.raises(CodesError, match="outside 0..2047"):
        save_codes(tmp_path / "d.safetensors", np.full((1, 1, 1), 2048), model="mimi",
                   sample_rate=24000, frame_rate=12.5, codebook_size=2048, num_samples=1)
