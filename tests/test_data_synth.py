"""Offline corpus generation with festival / espeak-ng / flite, and a tiny model trained on it.

Each synthesizer test skips with a reason when its Debian package is missing (CI installs them:
see .ci/run).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlx_speech.audio.io import info
from mlx_speech.data.manifest import DataError, read_manifest
from mlx_speech.data.sentences import SENTENCES
from mlx_speech.data.synth_corpus import synth_corpus
from mlx_speech.data.voices import Voice, available_voices, synthesize

_ALL = available_voices(["en", "hi", "te"])


def _voice(engine: str, lang: str, name: str | None = None) -> Voice:
    for v in _ALL[lang]:
        if v.engine == engine and (name is None or v.name == name):
            return v
    pytest.skip(f"{engine} voice for {lang} ({name or 'any'}) not installed "
                f"(apt-get install festival festvox-* espeak-ng flite)")


def _check_timings(timings, duration, *, contiguous: bool):
    """Labels with ``0 <= start < end <= duration`` in order; phones tile the audio."""
    assert timings, "no timings"
    prev_end = 0.0
    for label, start, end in timings:
        assert label and 0.0 <= start < end <= duration + 1e-4, (label, start, end, duration)
        if contiguous:
            assert start == pytest.approx(prev_end, abs=1e-3), (label, start, prev_end)
        else:
            assert start >= prev_end - 1e-3, (label, start, prev_end)
        prev_end = end


@pytest.mark.parametrize("engine, lang, name", [
    ("festival", "en", "cmu_us_slt_arctic_hts"), ("festival", "hi", "hindi_NSK_diphone"),
    ("festival", "te", "telugu_NSK_diphone"), ("espeak", "en", None), ("espeak", "hi", None),
    ("espeak", "te", None), ("flite", "en", "slt"),
], ids=["festival-en", "festival-hi", "festival-te", "espeak-en", "espeak-hi", "espeak-te", "flite-en"])
def test_each_synthesizer_gives_audio_and_timings(engine, lang, name):
    voice = _voice(engine, lang, name)
    text = SENTENCES[lang][1]
    syn = synthesize(voice, text)
    duration = len(syn.wav) / syn.sample_rate
    assert syn.sample_rate in (16000, 22050, 32000) and 0.5 < duration < 15
    assert np.isfinite(syn.wav).all() and np.abs(syn.wav).max() > 0.05
    _check_timings(syn.phones, duration, contiguous=True)
    assert syn.phones[-1][2] == pytest.approx(duration, abs=0.05)
    assert syn.words is not None, "word timings missing"
    _check_timings(syn.words, duration, contiguous=False)
    words = [w.strip(".,?!।") for w in text.split()]
    assert [w for w, _, _ in syn.words] == words or len(syn.words) == len(words)


def test_missing_synthesizer_and_bad_language_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no installed synthesizer speaks hi"):
        synth_corpus(tmp_path, langs=["hi"], n=1, engines=["flite"], progress=False)
    with pytest.raises(DataError, match="unsupported language 'fr'"):
        synth_corpus(tmp_path, langs=["en", "fr"], n=1, progress=False)
    with pytest.raises(DataError, match="unknown synthesizer 'mbrola'"):
        synth_corpus(tmp_path, langs=["en"], n=1, engines=["mbrola"], progress=False)
    out = subprocess.run([sys.executable, "-m", "cli", "data", "synth-corpus", "--langs", "xx",
                          "-o", str(tmp_path / "c")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "unsupported language 'xx'" in out.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not all(_ALL[x] for x in ("en", "hi", "te")):
        pytest.skip("needs a synthesizer for en, hi and te (festival + festvox-hi/te-nsk or espeak-ng)")
    out = tmp_path_factory.mktemp("synth")
    proc = subprocess.run([sys.executable, "-m", "cli", "data", "synth-corpus", "--langs", "en,hi,te",
                           "--n", "24", "-o", str(out), "--workers", "2", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_synth_corpus_writes_wavs_text_timings_and_manifest(corpus):
    out, summary = corpus
    assert summary["utterances"] == 24 and summary["per_language"] == {"en": 8, "hi": 8, "te": 8}
    items = read_manifest(out / "manifest.jsonl")
    assert len(items) == 24 and len({it.speaker for it in items}) >= 6
    engines = {it.speaker.split("_")[0] for it in items}
    assert engines == {e for e in ("festival", "espeak", "flite")
                       if any(v.engine == e for vs in _ALL.values() for v in vs)}
    for it in items:
        meta = info(it.path)
        assert meta["sample_rate"] == 16000 and meta["channels"] == 1
        assert meta["duration_s"] == pytest.approx(it.duration, abs=1e-3)
        assert 0.3 < meta["peak"] <= 0.81
        assert it.text in SENTENCES[it.lang]
        assert (out / "wavs" / (os.path.basename(it.path)[:-4] + ".txt")).read_text().strip() == it.text
        _check_timings(it.phones, it.duration, contiguous=True)
        speech = [p for p in it.phones if p[0] != "pau"]
        assert speech[0][1] <= 0.12  # leading silence trimmed to at most 0.1 s
        if it.words is not None:
            _check_timings(it.words, it.duration, contiguous=False)
    assert sum(it.words is not None for it in items) >= 20
    again = synth_corpus(out.parent / "again", langs=["en", "hi", "te"], n=3, progress=False)
    first = read_manifest(out / "manifest.jsonl")[:3]
    assert [it.text for it in read_manifest(again["manifest"])] == [it.text for it in first]


def test_tiny_model_learns_on_the_generated_corpus(corpus, tmp_path):
    """Acceptance: loss decreases; the progress bar and the JSONL log show it."""
    out, _ = corpus
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "task: mel_denoise\n"
        "model: {dim: 32, num_layers: 1, num_heads: 4, ffn_dim: 64,\n"
        "        spec_augment: {time_masks: 1, time_width: 5}}\n"
        f"data: {{sources: [{{kind: manifest, path: {out / 'manifest.jsonl'}}}], batch_size: 6,\n"
        "       crop_seconds: 0.6, val_fraction: 0.25, bucket_size: 2}\n"
        "optimizer: {lr: 0.004, warmup_steps: 4, min_lr_ratio: 0.1}\n"
        "ema: {decay: 0.9}\n"
        "steps: 40\nval_every: 20\nmonitor: {log_every: 5}\ncheckpoint: {every: 20}\n")
    proc = subprocess.run([sys.executable, "-m", "cli", "train", str(recipe), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    bar = proc.stderr
    assert "40/40" in bar and "step/s" in bar and "loss=" in bar and "val_loss" in bar
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    vals = [r["val_loss"] for r in recs if "val_loss" in r]
    assert len(losses) == 9 and len(vals) == 2
    assert np.mean(losses[-3:]) < 0.85 * losses[0], losses
    assert vals[-1] < vals[0] * 1.05 or vals[-1] < losses[0]
    assert "loss" in proc.stdout and "val_loss" in proc.stdout
