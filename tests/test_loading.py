"""``mlx_speech.load`` / ``torch_ref.load``: one entry point for every family and format, and
``mlx-speech codec`` driven by the registry (a mimi9 folder round-trips through the CLI)."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from test_mimi9_surgery import DIMS, TINY, sources  # noqa: F401  (module fixture)

import mlx_speech
import torch_ref
from cli import cli
from convert.mimi_surgery import surgery
from convert.parity import compare
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import CheckpointError
from mlx_speech.models.mimi.load import load_mimi
from mlx_speech.registry import codec_names, families, get_codec

ASSETS = mlx_speech.__path__[0] + "/assets/tts/en_slt"


def _wav(n: int = 960, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, n)).astype(np.float32) * 0.1


def test_registry_lists_every_family_and_codec():
    assert {"mimi", "mimi9", "ssl", "tts", "hifigan", "dac", "bsq_vit"} <= set(families())
    assert codec_names() == ["bsq_vit", "dac", "mimi", "mimi9"]
    assert (get_codec("mimi9").max_codebooks, get_codec("mimi").max_codebooks) == (9, 32)


def test_moshi_file(sources):  # noqa: F811
    path, spec, _ = sources["moshi"]
    model = mlx_speech.load(path, spec=spec)
    assert type(model).__name__ == "MimiModel" and model.spec == spec
    ref = load_mimi(path, spec=spec)
    wav = mx.array(_wav())
    assert np.array_equal(np.array(model.encode(wav)), np.array(ref.encode(wav)))
    twin = torch_ref.load(path, spec=spec)
    with torch.no_grad():
        codes = twin.encode(torch.from_numpy(np.array(wav)))
    assert np.array_equal(codes.numpy(), np.array(model.encode(wav)))


def test_transformers_mimi_folder(sources):  # noqa: F811
    folder, _, _ = sources["transformers"]
    model = mlx_speech.load(folder, num_codebooks=3)
    assert type(model).__name__ == "MimiModel" and model.num_codebooks == 3
    assert model.encode(mx.array(_wav())).shape[1] == 3


def test_mimi9_folder_both_frameworks(sources, tmp_path):  # noqa: F811
    path, spec, _ = sources["moshi"]
    surgery(path, tmp_path / "m9", spec=spec, echo=None, **DIMS)
    model = mlx_speech.load(tmp_path / "m9")
    twin = torch_ref.load(tmp_path / "m9", family="mimi9")
    assert type(model).__name__ == type(twin).__name__ == "Mimi9Model"
    wav = _wav(seed=1)
    with torch.no_grad():
        ref = twin.encode(torch.from_numpy(wav))
    assert np.array_equal(np.array(model.encode(mx.array(wav))), ref.numpy())
    with pytest.raises(CheckpointError, match="a 'mimi9' checkpoint, not a mimi model"):
        mlx_speech.load(tmp_path / "m9", family="mimi")


def test_hf_wavlm_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=48, conv_dim=(16, 16), conv_stride=(5, 2),
                                   conv_kernel=(10, 3), num_conv_pos_embeddings=8,
                                   num_conv_pos_embedding_groups=2, num_buckets=16,
                                   max_bucket_distance=40)
    torch.manual_seed(0)
    up = transformers.WavLMModel(cfg).eval()
    up.save_pretrained(tmp_path)
    model = mlx_speech.load(tmp_path)
    assert model.spec.model_type == "wavlm"
    wav = np.random.default_rng(0).standard_normal((1, 1600)).astype(np.float32)
    with torch.no_grad():
        ref = up(torch.from_numpy(wav)).last_hidden_state
    compare(model.features(mx.array(wav), layers=[-1], sample_rate=16000)[0], ref, atol=1e-4,
            name="wavlm via load")
    twin = torch_ref.load(tmp_path)  # torch_ref/models/ssl mirrors the encoders
    assert type(twin).__name__ == type(model).__name__ == "Wav2Vec2Model"
    with torch.no_grad():
        compare(twin(torch.from_numpy(wav)), ref, atol=1e-5, name="wavlm via torch_ref.load")


def test_format_without_torch_twin(tmp_path, monkeypatch):
    """A format registered without a torch loader is refused by torch_ref.load in one line."""
    import torch_ref.loading
    from mlx_speech.registry import Format

    fmt = Format("mlx-only folder", detect="x:y", mlx="x:y")
    monkeypatch.setattr(torch_ref.loading, "find", lambda path, family=None: ("format", fmt))
    with pytest.raises(CheckpointError, match="no torch_ref twin"):
        torch_ref.load(tmp_path)


def test_official_hifigan_generator(tmp_path):
    from mlx_speech.models.hifigan.spec import HiFiGANSpec
    from torch_ref.models.hifigan.model import HiFiGANGenerator
    from torch_ref.models.hifigan.official import save_official_generator

    spec = HiFiGANSpec.from_preset("v1").replace(upsample_initial_channel=32)
    torch.manual_seed(0)
    gen = HiFiGANGenerator(spec).eval()
    save_official_generator(tmp_path / "g_00000000", gen)
    config = {("num_mels" if k == "n_mels" else k): v for k, v in spec.to_dict().items()
              if k != "weight_norm"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = mlx_speech.load(tmp_path / "g_00000000")
    twin = torch_ref.load(tmp_path / "g_00000000", family="hifigan")
    mel = np.random.default_rng(2).standard_normal((1, 9, 80)).astype(np.float32)
    with torch.no_grad():
        ref = gen(torch.from_numpy(mel))
        got_t = twin(torch.from_numpy(mel))
    compare(model(mx.array(mel)), ref, atol=1e-4, name="hifigan via load")
    compare(got_t, ref, atol=1e-5, name="torch_ref hifigan via load")


def test_bundled_voice_both_frameworks():
    model = mlx_speech.load(ASSETS)
    twin = torch_ref.load(ASSETS)
    assert type(model).__name__ == type(twin).__name__ == "FastSpeech2"
    assert set(dict(twin.named_parameters())) == set(
        k for k, _ in __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(
            model.parameters()))


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="weights not found"):
        mlx_speech.load(tmp_path / "nope.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        mlx_speech.load(tmp_path / "empty.safetensors")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
        mlx_speech.load(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="unknown model family 'dac0'"):
        mlx_speech.load(tmp_path / "notes.txt", family="dac0")


def test_codec_cli_mimi9_round_trip(sources, tmp_path):  # noqa: F811
    path, spec, _ = sources["moshi"]
    surgery(path, tmp_path / "m9", spec=spec, echo=None, **DIMS)
    src = tmp_path / "speech.wav"
    sf.write(src, speechlike(sr=24000, seconds=0.2), 24000, subtype="FLOAT")
    codes = tmp_path / "codes.safetensors"
    run = CliRunner().invoke
    res = run(cli, ["codec", "encode", str(src), "-o", str(codes), "--model", "mimi9",
                    "--weights", str(tmp_path / "m9"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_codebooks"] == 9
    out = tmp_path / "out.wav"
    res = run(cli, ["codec", "decode", str(codes), "-o", str(out), "--model", "mimi9", "--weights",
                    str(tmp_path / "m9"), "--json"])
    assert res.exit_code == 0, res.output
    audio, sr = sf.read(out)
    assert sr == 24000 and audio.size == sf.info(src).frames and np.isfinite(audio).all()
    model = mlx_speech.load(tmp_path / "m9")
    ref = np.array(model.decode(model.encode(mx.array(sf.read(src)[0][None].astype(np.float32)))))
    assert np.abs(audio - ref[0, :audio.size]).max() < 1e-4
    res = run(cli, ["codec", "encode", str(src), "-o", str(tmp_path / "c2.safetensors"), "--model",
                    "mimi9", "--weights", str(tmp_path / "m9"), "-n", "10"])
    assert res.exit_code == 2 and "mimi9 uses 1..9 codebooks, got 10" in res.output
    res = run(cli, ["codec", "decode", str(codes), "-o", str(out), "--model", "mimi", "--weights",
                    str(tmp_path / "m9")])
    assert res.exit_code == 2 and "a 'mimi9' checkpoint, not a mimi model" in res.output


def test_eval_commands_come_from_the_registry():
    from mlx_speech.registry import evals

    assert set(evals()) == {"bsq_vit", "dac", "mimi9", "restore", "tts"}
    res = CliRunner().invoke(cli, ["eval", "--help"])
    assert res.exit_code == 0 and all(n in res.output for n in ("dac", "mimi9", "tts"))
    res = CliRunner().invoke(cli, ["eval", "dac0"])
    assert res.exit_code == 2 and "No such command 'dac0'" in res.output


def test_the_one_strict_check_names_every_problem():
    from mlx_speech.weights.strict import check_state

    want = {"a.weight": (2, 3), "a.bias": (2,), "b": (4,)}
    with pytest.raises(CheckpointError, match=r"x\.safetensors: state does not match the model: "
                                              r"missing b; unexpected c"):
        check_state({"a.weight": np.zeros((2, 3)), "a.bias": np.zeros(2), "c": np.zeros(1)}, want,
                    where="x.safetensors", what="the model")
    with pytest.raises(CheckpointError, match=r"shape mismatch: a\.weight \(3, 2\) != \(2, 3\)"):
        check_state({"a.weight": np.zeros((3, 2)), "a.bias": np.zeros(2), "b": np.zeros(4)}, want)
    check_state({"a.weight": (2, 3), "a.bias": (2,), "b": (4,)}, want)  # shapes as tuples pass
