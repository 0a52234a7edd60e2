"""``mlx-speech codec encode / decode / roundtrip --model bsq-vit`` with a tiny random BSQ-ViT
saved as a tagged file: the codes file equals the batch ``encode``, the decoded file the batch
``decode`` (the pipeline runs both in pieces of ``CHUNK_FRAMES``); bad input is one line and
exit 2."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import mlx_speech
from cli import cli
from mlx_speech.audio.synth import speechlike
from mlx_speech.io.codes import load_codes
from mlx_speech.models.bsq_vit.model import BSQViTModel
from mlx_speech.models.bsq_vit.spec import bsq_vit_tiny
from mlx_speech.pipelines.codec import CHUNK_FRAMES
from mlx_speech.weights.mlx import save_mlx_model

FRAME, FRAME_RATE = 640, 25.0  # bsq_vit_tiny


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bsq_cli")
    mx.random.seed(0)
    model = BSQViTModel(bsq_vit_tiny())
    weights = tmp / "bsq_tiny.safetensors"
    save_mlx_model(weights, model, model="bsq_vit", spec=model.spec)
    wav = speechlike(sr=16000, seconds=2.3)  # 58 frames: more than two CHUNK_FRAMES pieces
    assert wav.size // FRAME > 2 * CHUNK_FRAMES and wav.size % FRAME
    src = tmp / "speech16k.wav"
    sf.write(src, wav, 16000, subtype="FLOAT")
    return weights, src, wav


def test_encode_decode_equal_the_batch_calls(files, tmp_path):
    weights, src, wav = files
    model = mlx_speech.load(weights, family="bsq_vit")
    codes_path = tmp_path / "codes.safetensors"
    res = _run("codec", "encode", src, "-o", codes_path, "--model", "bsq-vit", "--weights",
               weights, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    codes = load_codes(codes_path)
    assert (codes.model, codes.sample_rate, codes.frame_rate) == ("bsq_vit", 16000, FRAME_RATE)
    assert codes.num_codebooks == 8 == summary["num_codebooks"] and codes.codebook_size == 512
    assert codes.num_samples == wav.size
    assert summary["kbps"] == pytest.approx(FRAME_RATE * 8 * 9 / 1000)  # 4 bands x 18 bits
    expected = np.array(model.encode(mx.array(wav[None])))
    np.testing.assert_array_equal(codes.codes, expected)

    out = tmp_path / "decoded.wav"
    res = _run("codec", "decode", codes_path, "-o", out, "--model", "bsq_vit", "--weights",
               weights, "--no-progress")
    assert res.exit_code == 0, res.output
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and audio.size == wav.size
    ref = np.array(model.decode(mx.array(expected)))[0, :wav.size]
    assert np.abs(audio - np.clip(ref, -1, 1)).max() < 1e-4  # PCM_16 rounding


def test_roundtrip_writes_audio_and_scores(files, tmp_path):
    weights, src, wav = files
    out = tmp_path / "rt.wav"
    res = _run("codec", "roundtrip", src, "--model", "bsq-vit", "--weights", weights, "-o", out,
               "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["model"] == "bsq_vit" and data["num_codebooks"] == 8
    assert np.isfinite(data["snr_db"])
    assert sf.info(str(out)).frames == wav.size


def test_bad_options_are_one_line(files, tmp_path):
    weights, src, _ = files
    out = tmp_path / "c.safetensors"
    for n, needle in (("3", "all 8 codes"), ("65", "1..64 codebooks")):
        res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(out), "--model",
                                       "bsq-vit", "--weights", str(weights), "-n", n])
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(out), "--model",
                                   "bsq-transformer", "--weights", str(weights)])
    assert res.exit_code == 2 and "bsq_vit" in res.stderr
    assert not out.exists()
