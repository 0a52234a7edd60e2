"""``mlx-speech features``: a WAV at 24 kHz through a saved HF WavLM -> .npy equal to
``model.features``; user errors are one line with exit code 2."""

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cli import cli
from mlx_speech.audio.synth import speechlike

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
            conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, num_buckets=16,
            max_bucket_distance=32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("wavlm")
    transformers.WavLMModel(transformers.WavLMConfig(**TINY)).save_pretrained(d)
    return d


@pytest.fixture
def wav24(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, speechlike(sr=24000, seconds=0.5), 24000, subtype="FLOAT")
    return path


def test_features_command_writes_npy(weights, wav24, tmp_path):
    from mlx_speech.audio.io import load
    from mlx_speech.models.ssl.load import load_ssl

    out = tmp_path / "feats" / "f.npy"
    res = CliRunner().invoke(cli, ["features", str(wav24), "--model", "wavlm", "--weights",
                                   str(weights), "--layer", "2", "-o", str(out), "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    feats = np.load(out)
    assert feats.shape == (799, 32) and summary["shape"] == [799, 32]
    wav, sr = load(wav24, sr=16000)
    ref = load_ssl(weights).features(wav, layers=[2], sample_rate=sr)[0][0]
    np.testing.assert_allclose(feats, np.array(ref), atol=1e-6)
    res = CliRunner().invoke(cli, ["features", str(wav24), "--model", "wavlm", "--weights",
                                   str(weights), "--layer", "0", "--layer", "-1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape == (2, 799, 32)


@pytest.mark.parametrize("args,needle", [
    (["--model", "hubert"], "not 'hubert'"),
    (["--layer", "7"], "out of range"),
    (["-o", "x.txt"], "must end in .npy"),
], ids=["wrong-family", "bad-layer", "bad-output"])
def test_features_user_errors(weights, wav24, tmp_path, args, needle):
    base = {"--model": "wavlm", "--layer": "1", "-o": str(tmp_path / "f.npy")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["features", str(wav24), "--weights", str(weights)]
    for k, v in base.items():
        argv += [k, v]
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.output


def test_features_missing_weights(wav24, tmp_path):
    res = CliRunner().invoke(cli, ["features", str(wav24), "--model", "wavlm", "--weights",
                                   str(tmp_path / "nope"), "--layer", "1", "-o",
                                   str(tmp_path / "f.npy")])
    assert res.exit_code == 2 and "not found" in res.output
