"""``mlx-speech eval tts``: WER helpers, the recogniser, MCD, and the teacher vs Griffin-Lim vs
neural vocoder table (pocketsphinx, speechmos and mel-cepstral-distance are optional)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from mlx_speech.audio.io import save
from mlx_speech.errors import AudioError
from mlx_speech.eval.tts import wer, words
from mlx_speech.pipelines.synth import ASSETS, Synthesizer


def test_wer_counts_edits():
    assert wer("a b c d".split(), "a b c d".split()) == (0, 4)
    assert wer("a b c d".split(), "a x c".split()) == (2, 4)  # one substitution, one deletion
    assert wer([], ["a"]) == (1, 0)
    assert wer("the cat".split(), "the the cat".split()) == (1, 2)


def test_words_normalise_like_the_frontend():
    assert words("Dr. Smith paid $5, didn't he?") == ["doctor", "smith", "paid", "five", "dollars", "didn't", "he"]


def test_recognizer_transcribes_teacher_speech(tmp_path):
    pytest.importorskip("pocketsphinx")
    import shutil

    if shutil.which("festival") is None:
        pytest.skip("festival not installed")
    from mlx_speech.data.voices import Voice, synthesize
    from mlx_speech.eval.tts import Recognizer

    syn = synthesize(Voice("festival", "cmu_us_slt_arctic_hts", "en"), "The morning train was late again today.")
    hyp = Recognizer()(syn.wav, syn.sample_rate).split()
    errors, n = wer(words("The morning train was late again today."), hyp)
    assert errors / n <= 0.5




def test_mcd_orders_distortions():
    pytest.importorskip("mel_cepstral_distance")
    from mlx_speech.audio.quality import mcd

    wav = Synthesizer(vocoder="griffin-lim").synthesize("The cat is sleeping on the warm carpet.")
    r = np.random.default_rng(0)
    assert mcd(wav, 22050, wav, 22050) == 0.0
    slight = mcd(wav, 22050, wav + 0.003 * r.standard_normal(wav.shape), 22050)
    heavy = mcd(wav, 22050, wav + 0.05 * r.standard_normal(wav.shape), 22050)
    assert 0 < slight < heavy
    # time-warped copy (slower by 10 %): DTW keeps it close
    stretched = np.interp(np.linspace(0, len(wav) - 1, int(len(wav) * 1.1)), np.arange(len(wav)), wav)
    assert mcd(wav, 22050, stretched, 22050) < heavy
    with pytest.raises(AudioError):
        mcd(wav, 22050, np.zeros(4000), 22050)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    for module in ("mel_cepstral_distance", "speechmos", "pocketsphinx"):
        pytest.importorskip(module)
    """Two 'teacher' recordings: the bundled voice's own Griffin-Lim synthesis of the text."""
    d = tmp_path_factory.mktemp("heldout")
    (d / "wavs").mkdir()
    syn = Synthesizer(vocoder="griffin-lim")
    lines = []
    for i, text in enumerate(["The soup needs a little more salt.", "Thank you for helping me."]):
        path = d / "wavs" / f"en_{i:06d}.wav"
        save(path, syn.synthesize(text), syn.sample_rate)
        lines.append(json.dumps({"path": f"wavs/{path.name}", "text": text, "lang": "en"}))
    (d / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_eval_compares_teacher_griffin_lim_and_neural(teacher_dir, tmp_path):
    from mlx_speech.eval.tts import evaluate, markdown_table
    from mlx_speech.models.vocos.model import VocosGenerator
    from mlx_speech.models.vocos.spec import VocosSpec
    from mlx_speech.weights.mlx import save_mlx_model

    voice = tmp_path / "voice"
    voice.mkdir()
    for f in ("acoustic.safetensors", "voice.json"):
        (voice / f).write_bytes((ASSETS / "en_slt" / f).read_bytes())
    spec = VocosSpec.from_preset("tiny")
    save_mlx_model(voice / "vocoder.safetensors", VocosGenerator(spec), model="vocos", spec=spec)
    meta = json.loads((voice / "voice.json").read_text())
    (voice / "voice.json").write_text(json.dumps({**meta, "vocoder": "neural"}))

    rep = evaluate(str(voice), teacher_dir)
    assert list(rep["systems"]) == ["teacher", "griffin-lim", "neural"]
    gl, neural, teacher = (rep["systems"][k] for k in ("griffin-lim", "neural", "teacher"))
    assert teacher["mcd_db"] is None and gl["mcd_db"] is not None and neural["mcd_db"] is not None
    # the teacher here IS our Griffin-Lim synthesis (deterministic), stored as 16-bit PCM (which
    # alone can change a pocketsphinx transcript: its WER is not compared)
    assert gl["mcd_db"] < 0.1 and 0 <= gl["wer"] <= 1
    assert neural["mcd_db"] > 1.0  # an untrained vocoder is far from it
    for row in rep["systems"].values():
        assert 1.0 <= row["dnsmos_ovrl"] <= 5.0
    assert rep["words"] == 12 and len(rep["transcripts"]) == 2
    table = markdown_table(rep)
    assert table.count("\n") == 4 and "| neural |" in table

    res = CliRunner().invoke(cli, ["eval", "tts", "--teacher-dir", str(teacher_dir), "--voice", str(voice),
                                   "--vocoder", "griffin-lim", "--no-dnsmos", "--no-wer", "--markdown",
                                   "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "| griffin-lim | - | 0.0" in res.output and "neural" not in res.output
    assert json.loads((tmp_path / "r.json").read_text())["words"] is None
