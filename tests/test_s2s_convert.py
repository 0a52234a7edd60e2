"""``convert_file``: a wav through a random-init tiny Mimi and a tiny s2s model, in batch and
streaming mode (the same audio; one latency line per frame), and its bad input."""

import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import CheckpointError, SpecError, UserError
from mlx_speech.models.mimi.model import build_mimi
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.models.s2s.encdec import S2SModel
from mlx_speech.models.s2s.spec import S2SSpec
from mlx_speech.pipelines.s2s_convert import convert_file
from mlx_speech.weights.mlx import save_mlx_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s2s_convert")
    mx.random.seed(0)
    mimi = build_mimi(MimiSpec.from_preset("mimi_tiny", num_codebooks=4))
    codec = tmp / "mimi_tiny.safetensors"
    save_mlx_model(codec, mimi, model="mimi", spec=mimi.spec)
    spec = S2SSpec.from_preset("s2s_tiny").replace(codebook_size=64, codec_weights=str(codec),
                                                   num_speakers=2)
    model = S2SModel(spec)
    weights = tmp / "s2s.safetensors"
    save_mlx_model(weights, model, model="s2s", spec=spec)
    src = tmp / "in16k.wav"
    sf.write(src, 0.5 * speechlike(sr=16000, seconds=0.06), 16000)
    return tmp, weights, codec, src


def test_batch_and_streaming_give_the_same_audio(setup, tmp_path):
    _, weights, _, src = setup
    notes: list[str] = []
    a = convert_file(src, tmp_path / "a.wav", weights=weights, speaker=1, notice=notes.append)
    assert any("resampling" in n for n in notes)
    lines: list[str] = []
    b = convert_file(src, tmp_path / "b.wav", weights=weights, speaker=1, stream=True,
                     notice=lines.append)
    frames = a["frames"]
    assert frames == 30 and b["frames"] == frames  # 0.06 s at the tiny Mimi's 500 Hz
    assert sum(line.startswith("frame ") for line in lines) == frames
    assert set(b["latency_ms"]) == {"first_frame", "mean", "max", "frame_period"}
    wa, sra = sf.read(tmp_path / "a.wav", dtype="float32")
    wb, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    assert sra == 24000 and wa.size == 1440 and a["seconds"] == pytest.approx(0.06)
    np.testing.assert_allclose(wa, wb, atol=1e-5)
    c = convert_file(src, tmp_path / "c.wav", weights=weights, max_frames=10, temperature=0.8,
                     top_k=8, seed=1, notice=lambda _: None)
    assert c["seconds"] == pytest.approx(10 / 500)
    json.dumps(b)  # the summary is plain data


def test_bad_input_is_one_line_and_writes_nothing(setup, tmp_path):
    tmp, weights, codec, src = setup
    dst = tmp_path / "out.wav"
    cases = [
        (dict(dst_wav=tmp_path), UserError, "is a folder"),
        (dict(dst_wav=tmp_path / "out.mp4"), UserError, "not .mp4"),
        (dict(speaker=2), SpecError, "speaker id 2 is out of range"),
        (dict(emotion=0), SpecError, "no emotion embedding"),
        (dict(weights=codec), CheckpointError, "not a s2s model"),
        (dict(codec_weights=tmp / "missing.safetensors"), CheckpointError, "not found"),
        (dict(src_wav=tmp / "missing.wav"), UserError, "audio file not found"),
        (dict(top_p=0.0, temperature=1.0), SpecError, "top_p"),
    ]
    for over, err, msg in cases:
        kw = {"src_wav": src, "dst_wav": dst, "weights": weights, **over}
        with pytest.raises(err, match=msg) as info:
            convert_file(kw.pop("src_wav"), kw.pop("dst_wav"), notice=lambda _: None, **kw)
        assert "\n" not in str(info.value)
        assert not dst.exists()
    other = S2SSpec.from_preset("s2s_tiny").replace(codec_weights=str(codec))  # 16 codes, not 64
    bad = tmp_path / "other.safetensors"
    save_mlx_model(bad, S2SModel(other), model="s2s", spec=other)
    with pytest.raises(CheckpointError, match="codebooks of 64 codes, the model 16"):
        convert_file(src, dst, weights=bad, notice=lambda _: None)


def test_cli_default_command_and_stream(setup, tmp_path):
    """`mlx-speech s2s IN -o OUT` is `s2s convert`; --stream prints a latency line per frame;
    bad input is one line, exit 2."""
    from click.testing import CliRunner

    from cli import cli

    _, weights, _, src = setup
    res = CliRunner().invoke(cli, ["s2s", str(src), "-o", str(tmp_path / "o.wav"), "--weights",
                                   str(weights), "--speaker", "1", "--stream", "--json"])
    assert res.exit_code == 0, res.output
    assert sum(line.startswith("frame ") for line in res.stderr.splitlines()) == 30
    assert json.loads(res.stdout)["frames"] == 30
    res = CliRunner().invoke(cli, ["s2s", "--help"])
    assert res.exit_code == 0 and "convert" in res.output
    res = CliRunner().invoke(cli, ["s2s", str(src), "-o", str(tmp_path / "p.wav"), "--weights",
                                   str(weights), "--speaker", "5"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "p.wav").exists()
