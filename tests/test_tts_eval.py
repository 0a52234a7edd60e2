"""WER helpers of the intelligibility check (pocketsphinx itself is optional)."""

from __future__ import annotations

import pytest

from mlx_speech.eval.tts import wer, words


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
