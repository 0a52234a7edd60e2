"""``mlx-speech codec encode / decode / roundtrip --model dac`` with tiny random DAC checkpoints.

A non-causal model (Descript's layout: the pipeline streams it with look-ahead) and a causal one
(our speech presets' layout), each saved as a tagged file. The codes file must equal the batch
``encode`` of the same audio, the decoded file the batch ``decode``; bad input is one line and
exit 2.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import mlx_speech
from cli import cli
from mlx_speech.audio.io import resample
from mlx_speech.audio.synth import speechlike
from mlx_speech.io.codes import load_codes, save_codes
from mlx_speech.models.dac.model import DACModel
from mlx_speech.models.dac.spec import dac_tiny
from mlx_speech.pipelines.codec import CHUNK_FRAMES, bitrate_kbps
from mlx_speech.weights.mlx import save_mlx_model

HOP, FRAME_RATE = 40, 400.0  # dac_tiny at 16 kHz


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.stderr


def _checkpoint(path, spec):
    mx.random.seed(0)
    model = DACModel(spec)
    model.eval()
    save_mlx_model(path, model, model="dac", spec=spec)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dac_cli")
    weights = {"noncausal": _checkpoint(tmp / "dac_nc.safetensors", dac_tiny()),
               "causal": _checkpoint(tmp / "dac_c.safetensors", dac_tiny(causal=True)),
               "44k": _checkpoint(tmp / "dac_44k.safetensors",
                                  dac_tiny().replace(sample_rate=44100)),
               "hybrid": _checkpoint(tmp / "dac_hybrid_nc.safetensors",
                                     dac_tiny(transformer_layers=2))}
    wav = speechlike(sr=16000, seconds=0.6)  # 240 frames: ten pieces of CHUNK_FRAMES
    assert wav.size // HOP > 2 * CHUNK_FRAMES
    src = tmp / "speech16k.wav"
    sf.write(src, wav, 16000, subtype="FLOAT")
    return weights, src, wav


@pytest.mark.parametrize("kind", ["noncausal", "causal"])
def test_encode_decode_equal_the_batch_calls(files, tmp_path, kind):
    weights, src, wav = files
    model = mlx_speech.load(weights[kind], family="dac")
    codes_path = tmp_path / "codes.safetensors"
    res = _run("codec", "encode", src, "-o", codes_path, "--model", "dac", "--weights",
               weights[kind], "-n", "3", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    codes = load_codes(codes_path)
    assert (codes.model, codes.sample_rate, codes.frame_rate) == ("dac", 16000, FRAME_RATE)
    assert codes.num_codebooks == 3 == summary["num_codebooks"]
    assert codes.codebook_size == 64 and codes.num_samples == wav.size  # the largest level
    assert summary["kbps"] == pytest.approx(FRAME_RATE * (6 + 5 + 5) / 1000)  # [64, 32, 32]
    expected = np.array(model.encode(mx.array(wav[None]), num_codebooks=3))
    np.testing.assert_array_equal(codes.codes, expected)  # chunked CLI path == batch call

    out = tmp_path / "decoded.wav"
    res = _run("codec", "decode", codes_path, "-o", out, "--model", "dac", "--weights",
               weights[kind], "--no-progress")
    assert res.exit_code == 0, res.output
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and audio.size == wav.size
    ref = np.array(model.decode(mx.array(expected)))[0, :wav.size]
    assert np.abs(audio - np.clip(ref, -1, 1)).max() < 1e-4  # PCM_16 rounding


def test_roundtrip_and_resampling_notice(files, tmp_path):
    weights, _, wav = files
    src = tmp_path / "speech24k.wav"
    sf.write(src, resample(wav, 16000, 24000), 24000, subtype="FLOAT")
    res = _run("codec", "roundtrip", src, "--model", "dac", "--weights", weights["noncausal"],
               "-o", tmp_path / "rt.wav", "--json")
    assert res.exit_code == 0, res.output
    assert "resampling" in res.stderr and "24000 Hz to 16000 Hz" in res.stderr
    data = json.loads(res.stdout)
    assert np.isfinite(data["snr_db"]) and data["num_codebooks"] == 4
    assert sf.info(str(tmp_path / "rt.wav")).samplerate == 16000


def test_bitrate_counts_each_level():
    model = DACModel(dac_tiny())
    assert bitrate_kbps(model, 4) == pytest.approx(FRAME_RATE * (6 + 3 * 5) / 1000)


def _encode(files, tmp_path, kind="noncausal"):
    weights, src, _ = files
    path = tmp_path / f"{kind}.safetensors"
    assert _run("codec", "encode", src, "-o", path, "--model", "dac", "--weights", weights[kind],
                "--no-progress").exit_code == 0
    return path


def test_codes_of_another_rate_are_refused(files, tmp_path):
    weights, _, _ = files
    path = _encode(files, tmp_path)
    res = CliRunner().invoke(cli, ["codec", "decode", str(path), "-o", str(tmp_path / "o.wav"),
                                   "--model", "dac", "--weights", str(weights["44k"])])
    _one_line_error(res, "16000 Hz / 400 frames/s, this dac runs at 44100 Hz")
    assert not (tmp_path / "o.wav").exists()


def test_code_out_of_its_level_range_is_refused(files, tmp_path):
    weights, _, _ = files
    codes = np.zeros((1, 2, 5), np.int32)
    codes[0, 1, 3] = 40  # below the file's codebook_size (64, level 0) but level 1 has 32
    path = save_codes(tmp_path / "c.safetensors", codes, model="dac", sample_rate=16000,
                      frame_rate=FRAME_RATE, codebook_size=64, num_samples=5 * HOP)
    res = CliRunner().invoke(cli, ["codec", "decode", str(path), "-o", str(tmp_path / "o.wav"),
                                   "--model", "dac", "--weights", str(weights["causal"])])
    _one_line_error(res, "code 40 in codebook 1 is out of range 0..31 for this dac")


def test_codes_of_another_model_are_refused(files, tmp_path):
    weights, _, _ = files
    path = save_codes(tmp_path / "m.safetensors", np.zeros((1, 2, 5), np.int32), model="mimi",
                      sample_rate=24000, frame_rate=12.5, codebook_size=2048, num_samples=9600)
    res = CliRunner().invoke(cli, ["codec", "decode", str(path), "-o", str(tmp_path / "o.wav"),
                                   "--model", "dac", "--weights", str(weights["causal"])])
    _one_line_error(res, "made by model 'mimi', cannot decode with 'dac'")


def test_bad_options_and_unstreamable_models(files, tmp_path):
    weights, src, _ = files
    out = tmp_path / "c.safetensors"
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(out), "--model", "dac",
                                   "--weights", str(weights["causal"]), "-n", "7"])
    _one_line_error(res, "num_codebooks must be an int in 1..4, got 7")
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(out), "--model", "dac",
                                   "--weights", str(weights["hybrid"])])
    _one_line_error(res, "cannot be processed in pieces")
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(out), "--model", "dac",
                                   "--weights", str(tmp_path / "none.safetensors")])
    assert res.exit_code == 2 and "not found" in res.stderr
    assert not out.exists()
