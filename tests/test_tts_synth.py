"""The bundled voice and ``mlx-speech synth``: loads, speaks, honours speed, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import mlx.core as mx

from cli import cli
from mlx_speech.audio.io import load
from mlx_speech.pipelines.synth import ASSETS, DEFAULT_VOICE, Synthesizer

VOICE = ASSETS / DEFAULT_VOICE


@pytest.fixture(scope="module")
def synth():
    return Synthesizer()


def test_bundled_voice_is_small_and_tagged():
    files = {p.name: p.stat().st_size for p in VOICE.iterdir()}
    assert {"acoustic.safetensors", "voice.json"} <= set(files)
    assert sum(files.values()) < 35 * 2**20
    assert files.get("vocoder.safetensors", 0) < 20 * 2**20
    meta = json.loads((VOICE / "voice.json").read_text())
    assert meta["language"] == "en" and meta["mel_preset"] == "hifigan_22k"


def test_bundled_voices_are_registered():
    from mlx_speech.pipelines.synth import bundled_voices

    assert {"en_slt", "hi_nsk", "te_nsk"} <= set(bundled_voices())
    total = sum(p.stat().st_size for v in ("en_slt", "hi_nsk", "te_nsk", "vocoders") for p in (ASSETS / v).iterdir())
    assert total < 56 * 2**20  # 44.5 MB of voices + the NSK voices' shared vocoder (5.6 MB, float16)


@pytest.mark.parametrize("lists", [
    ("train_en.txt", "train_en_more.txt", "dev_en.txt", "heldout_en.txt"),
    ("train_hi.txt", "heldout_hi.txt"),
    ("train_te.txt", "heldout_te.txt"),
], ids=["en", "hi", "te"])
def test_sentence_lists_are_disjoint(lists):
    """No sentence of a held-out (or dev) list was trained on: the eval numbers depend on it.
    The lists are read as the corpus generator reads them."""
    from mlx_speech.train.tts_features import read_sentences

    seen: dict[str, str] = {}
    for name in lists:
        lines = [ln.lower() for ln in read_sentences(ASSETS / name)]
        assert len(lines) == len(set(lines)), f"{name} repeats a sentence"
        for ln in lines:
            assert ln not in seen, f"{name} and {seen.get(ln)} share {ln!r}"
            seen[ln] = name


@pytest.mark.parametrize("voice, lang, text, script", [
    ("hi_nsk", "hi", "बच्चे बगीचे में खेल रहे हैं। कल बारिश होगी।", (0x0900, 0x097F)),
    ("te_nsk", "te", "పిల్లలు తోటలో ఆడుకుంటున్నారు. రేపు వర్షం పడుతుంది.", (0x0C00, 0x0C7F)),
])
def test_indian_voices_speak_their_scripts(voice, lang, text, script):
    syn = Synthesizer(voice)
    assert syn.language == lang and syn.sample_rate == 22050
    utts = syn.frontend.encode(text, lang)
    assert len(utts) == 2 and all(len(u.ids) > 5 for u in utts)
    wav = syn.synthesize(text)
    assert 1.5 < len(wav) / syn.sample_rate < 10.0
    assert float(np.sqrt(np.mean(wav ** 2))) > 0.01 and np.isfinite(wav).all()
    meta = json.loads((ASSETS / voice / "voice.json").read_text())
    assert meta["language"] == lang and meta["alignment"] == "learned"
    # their default vocoder: the shared NSK Vocos (one file for both voices of the one speaker)
    assert syn.vocoder_name == "neural" and syn.own_vocoder() == ASSETS / "vocoders" / "nsk.safetensors"
    gl = Synthesizer(voice, vocoder="griffin-lim").synthesize(text)  # the fallback: same frames
    assert abs(gl.shape[0] - wav.shape[0]) <= syn.mel.hop_length * len(utts)
    assert all(script[0] <= ord(c) <= script[1] for c in text if c.isalpha())


def test_shared_vocoder_names_a_bundled_file(tmp_path, monkeypatch):
    """voice.json "shared_vocoder": a bundled vocoder by name (never a path); errors in one line."""
    import shutil

    import mlx_speech.pipelines.synth as synth_mod
    from mlx_speech.errors import CheckpointError

    shared = tmp_path / "vocoders"
    shared.mkdir()
    shutil.copy(VOICE / "vocoder.safetensors", shared / "spk.safetensors")
    monkeypatch.setattr(synth_mod, "SHARED_VOCODERS", shared)
    voice = tmp_path / "v"
    voice.mkdir()
    shutil.copy(VOICE / "acoustic.safetensors", voice)
    meta = json.loads((VOICE / "voice.json").read_text())
    for name, err in [("spk", None), ("../v/acoustic", "letters, digits"), ("other", "no bundled shared vocoder 'other'"),
                      (3, "letters, digits")]:
        (voice / "voice.json").write_text(json.dumps({**meta, "shared_vocoder": name}))
        if err is None:
            syn = Synthesizer(voice)
            assert syn.vocoder_name == "neural" and syn.own_vocoder() == shared / "spk.safetensors"
            assert np.isfinite(syn.synthesize("Hi there.")).all()
        else:
            with pytest.raises(CheckpointError, match=err):
                Synthesizer(voice)
    res = CliRunner().invoke(cli, ["synth", "Hi.", "--weights", str(voice), "-o", str(tmp_path / "o.wav")])
    assert res.exit_code == 2 and "letters, digits" in res.output and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output and not (tmp_path / "o.wav").exists()


def test_bundled_voice_speaks_with_plausible_duration(synth):
    wav = synth.synthesize("The morning train was late again today.")
    seconds = len(wav) / synth.sample_rate
    assert 1.0 < seconds < 5.0  # the teacher says it in ~2.2 s
    rms = float(np.sqrt(np.mean(wav ** 2)))
    assert rms > 0.01 and np.isfinite(wav).all()
    # energy is not flat: speech has loud and quiet stretches
    frames = wav[: len(wav) // 512 * 512].reshape(-1, 512)
    e = np.sqrt((frames ** 2).mean(1))
    assert e.max() > 5 * np.percentile(e, 10)


def test_speed_changes_duration(synth):
    text = "She bought fresh bread from the corner shop."
    n1 = len(synth.synthesize(text))
    n2 = len(synth.synthesize(text, speed=1.5))
    assert 0.5 * n1 < n2 < 0.8 * n1


def test_mlx_and_torch_checkpoint_agree_on_bundled_weights(synth):
    torch = pytest.importorskip("torch")
    from torch_ref.weights import load_torch_model

    t, _ = load_torch_model(VOICE / "acoustic.safetensors")
    t.eval()
    ids = list(synth.frontend.encode("Hello there, my friend.")[0].ids)
    mel_m, dur_m = synth.acoustic.synthesize(mx.array([ids], dtype=mx.int32))
    mel_t, dur_t = t.synthesize(torch.tensor([ids]))
    np.testing.assert_array_equal(np.array(dur_m), dur_t.numpy())
    assert np.abs(np.array(mel_m) - mel_t.numpy()).max() < 1e-3


def test_cli_synth_writes_speech(tmp_path):
    out = tmp_path / "hello.wav"
    r = CliRunner().invoke(cli, ["synth", "Hello there. It is 5 pm.", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    wav, sr = load(out)
    assert sr == 22050 and info["sentences"] == 2
    assert 1.0 < len(wav) / sr < 6.0 and np.abs(wav).max() > 0.05


def test_cli_synth_from_file_with_speed(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("We walked along the river until sunset.\n", encoding="utf-8")
    out = tmp_path / "f.wav"
    r = CliRunner().invoke(cli, ["synth", "--file", str(src), "-o", str(out), "--speed", "1.3", "--pitch", "2",
                                 "--gl-iters", "8"])
    assert r.exit_code == 0, r.output
    assert out.is_file()


@pytest.mark.parametrize("args, message", [
    (["synth", ""], "empty"),
    (["synth", "?!"], "nothing speakable"),
    (["synth"], "either as an argument or with --file"),
    (["synth", "hi", "--speed", "9"], "speed"),
    (["synth", "hi", "--pitch", "30"], "pitch"),
    (["synth", "hi", "--speaker", "3"], "speaker 3 out of range"),
    (["synth", "hi", "--voice", "no_such_voice"], "not found"),
    (["synth", "hi", "--vocoder", "griffin-lim", "--vocoder-weights", "x.pt"], "needs a neural vocoder"),
    (["synth", "hi", "--vocoder-weights", "x.pt"], "not found"),
    (["synth", "hi", "--vocoder", "neural", "--weights", "{plain}"], "ships no neural vocoder"),
    (["synth", "hi", "--vocoder-weights", str(VOICE / "acoustic.safetensors")], "not a vocoder checkpoint"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_cli_synth_user_errors(tmp_path, args, message):
    plain = tmp_path / "plain"  # the bundled voice without its neural vocoder
    plain.mkdir()
    for f in ("acoustic.safetensors", "voice.json"):
        (plain / f).write_bytes((VOICE / f).read_bytes())
    args = [a.replace("{plain}", str(plain)) for a in args]
    r = CliRunner().invoke(cli, args + ["-o", str(tmp_path / "x.wav")])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_cli_synth_with_official_hifigan_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from torch_ref.models.hifigan.official import save_official_generator
    from mlx_speech.models.hifigan.spec import HiFiGANSpec
    from torch_ref.models.hifigan.model import HiFiGANGenerator

    spec = HiFiGANSpec.from_preset("tiny")
    torch.manual_seed(0)
    save_official_generator(tmp_path / "g_00000001", HiFiGANGenerator(spec))
    (tmp_path / "config.json").write_text(json.dumps({**spec.to_dict(), "num_mels": 80, "sampling_rate": 22050}))
    out = tmp_path / "h.wav"
    r = CliRunner().invoke(cli, ["synth", "Good morning.", "-o", str(out), "--vocoder", "hifigan",
                                 "--hifigan", str(tmp_path / "g_00000001")])
    assert r.exit_code == 0, r.output
    wav, sr = load(out)
    assert len(wav) % 256 == 0 and len(wav) / sr > 0.3  # random weights: length only


def test_synth_cli_subprocess_fresh_process(tmp_path):
    out = tmp_path / "p.wav"
    r = subprocess.run([sys.executable, "-m", "cli", "synth", "Yes.", "-o", str(out)], capture_output=True,
                       text=True, cwd=str(VOICE.parents[3]), timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.is_file()
