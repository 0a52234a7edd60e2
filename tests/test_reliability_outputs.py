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


# --- codec: output paths are checked before the model is loaded; nothing left behind --------
from test_mimi_cli import setup  # noqa: E402,F401  (module fixture: tiny Mimi + a 16 kHz clip)


@pytest.mark.parametrize("cmd, out, needle", [
    ("encode", "codes.wav", "codes files are written as .safetensors, not .wav"),
    ("encode", "missing_dir/codes.safetensors", "does not exist"),
    ("encode", ".", "is a folder"),
    ("decode", "out.safetensors", "audio files are written as .wav / .flac / .ogg"),
    ("decode", ".", "is a folder"),
    ("roundtrip", "out.mp4", "audio files are written as"),
], ids=["encode-wav-name", "encode-no-folder", "encode-dir", "decode-suffix", "decode-dir",
        "roundtrip-suffix"])
def test_codec_output_paths_fail_before_any_work(setup, tmp_path, cmd, out, needle):  # noqa: F811
    _, _, src, _ = setup
    dst = tmp_path / out if out != "." else tmp_path
    # bogus weights: an error about them would mean the model was loaded before the check
    res = CliRunner().invoke(cli, ["codec", cmd, str(src), "-o", str(dst), "--weights",
                                   str(tmp_path / "no_weights.safetensors")])
    _one_line(res, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_roundtrip_of_a_clip_shorter_than_the_mel_window(setup, tmp_path):  # noqa: F811
    _, weights, _, _ = setup
    src = tmp_path / "short.wav"
    sf.write(src, (np.sin(np.arange(500) / 5) * 0.3).astype(np.float32), 24000)
    out = tmp_path / "out.wav"
    res = CliRunner().invoke(cli, ["codec", "roundtrip", str(src), "-o", str(out), "--weights",
                                   str(weights), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert str(report["mel_distance"]).startswith("unavailable") and "snr_db" in report
    assert sf.info(out).frames == 500


def test_streamed_encode_equals_whole_array(setup):  # noqa: F811
    from mlx_speech.pipelines.codec import encode_blocks, encode_wav

    model, _, _, _ = setup
    wav = np.random.default_rng(1).standard_normal(5000).astype(np.float32) * 0.1
    whole = encode_wav(model, wav)
    cuts = [0, 7, 1000, 1001, 2999, 5000]
    blocks = [wav[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    streamed, n = encode_blocks(model, iter(blocks), total_samples=wav.size)
    assert n == wav.size and np.array_equal(streamed, whole)


def test_encode_reads_the_file_in_blocks(setup, tmp_path, monkeypatch):  # noqa: F811
    """A long file never sits in memory whole: every block the encoder sees is small."""
    import mlx_speech.audio.stream as stream

    model, weights, _, _ = setup
    src = tmp_path / "long.wav"
    sf.write(src, np.random.default_rng(2).standard_normal(30000).astype(np.float32) * 0.1, 24000)
    sizes = []
    real = stream.mono_blocks

    def small_blocks(*a, **k):
        for b in real(*a, **{**k, "block_frames": 4096}):
            sizes.append(b.size)
            yield b
    monkeypatch.setattr(stream, "mono_blocks", small_blocks)
    codes = tmp_path / "c.safetensors"
    res = CliRunner().invoke(cli, ["codec", "encode", str(src), "-o", str(codes), "--weights",
                                   str(weights), "--json"])
    assert res.exit_code == 0, res.output
    assert len(sizes) == 8 and max(sizes) == 4096 and sum(sizes) == 30000
    from mlx_speech.pipelines.codec import encode_wav
    assert np.array_equal(load_codes(codes).codes, encode_wav(model, sf.read(src, dtype="float32")[0]))


def test_stale_temp_cleanup_spares_user_files(tmp_path):
    from mlx_speech.utils.atomic import atomic_write_text, remove_stale_temps

    atomic_write_text(tmp_path / "metrics.jsonl", "{}\n")
    stale = ".metrics.jsonl.k2x_9abc.jsonl"  # what a kill -9 before the rename leaves
    (tmp_path / stale).write_bytes(b"partial")
    keep = [".notes.txt.abcd1234.md", ".bashrc", "user.jsonl", ".config.yaml.12345678"]
    for name in keep:
        (tmp_path / name).write_text("user data")
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [stale]
    assert all((tmp_path / name).read_text() == "user data" for name in keep)
    assert (tmp_path / "metrics.jsonl").read_text() == "{}\n"
