"""Text frontend: normalisation, G2P (CMUdict + espeak-ng fallback), hi/te, sentence splitting."""

from __future__ import annotations

import shutil

import pytest

from mlx_speech.text import SymbolTable, TextError, TextFrontend, normalize_en, split_sentences
from mlx_speech.text.numbers import cardinal, ordinal, year

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (42, "forty-two"), (100, "one hundred"),
    (1234, "one thousand two hundred thirty-four"), (1_000_001, "one million one"), (-5, "minus five"),
], ids=str)
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (12, "twelfth"),
                                      (21, "twenty-first"), (40, "fortieth"), (100, "one hundredth")], ids=str)
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize("n, words", [(1984, "nineteen eighty-four"), (2005, "two thousand five"),
                                      (1900, "nineteen hundred"), (2024, "twenty twenty-four"),
                                      (1907, "nineteen oh seven")], ids=str)
def test_year(n, words):
    assert year(n) == words


@pytest.mark.parametrize("text, expected", [
    ("It costs $3.50.", "It costs three dollars and fifty cents."),
    ("Pay $1 now", "Pay one dollar now"),
    ("£20 and €0.99", "twenty pounds and ninety-nine cents"),
    ("$1.5 million", "one point five million dollars"),
    ("On 2024-01-15 we met.", "On January fifteenth, twenty twenty-four we met."),
    ("Born 12/25/1999.", "Born December twenty-fifth, nineteen ninety-nine."),
    ("Due Jan. 5th, 2021", "Due January fifth, twenty twenty-one"),
    ("the 3rd of May", "the third of May"),
    ("Dr. Smith and Mr. Jones", "Doctor Smith and Mister Jones"),
    ("St. Paul lives on Main St.", "Saint Paul lives on Main Street."),
    ("In 1984, 1,234 people came.", "In nineteen eighty-four, one thousand two hundred thirty-four people came."),
    ("Pi is 3.14", "Pi is three point one four"),
    ("It is 50% off", "It is fifty percent off"),
    ("at 3:30 pm", "at three thirty p m"),
    ("at 10:00", "at ten o'clock"),
    ("Agent 007", "Agent zero zero seven"),
    ("10 km away", "ten kilometers away"),
    ("salt & pepper", "salt and pepper"),
    ("an MP3 file", "an MP three file"),
], ids=lambda x: x if len(x) < 30 else None)
def test_normalize_en(text, expected):
    assert normalize_en(text) == expected


def test_english_phones_cmudict():
    fe = TextFrontend()
    (u,) = fe.encode("Hello, world!")
    assert u.phones == ("<sil>", "hh", "ax", "l", "ow", "<sp>", "w", "er", "l", "d", "<sil>")
    assert fe.table.decode(list(u.ids)) == list(u.phones)


@needs_espeak
def test_oov_word_uses_espeak_and_acronyms_are_spelled():
    fe = TextFrontend()
    phones = fe.phonemize("blorptastic")
    assert phones[0] == "<sil>" and phones[-1] == "<sil>"
    body = phones[1:-1]
    assert body[:3] == ["b", "l", "ao"] and "t" in body and body[-1] == "k"
    assert fe.phonemize("XQZ")[1:-1] == ["eh", "k", "s", "k", "y", "uw", "z", "iy"]
    assert all(p in fe.table for p in body)


@needs_espeak
@pytest.mark.parametrize("lang, text", [("hi", "नमस्ते दुनिया, आप कैसे हैं?"), ("te", "నమస్కారం ప్రపంచం")])
def test_hindi_telugu(lang, text):
    (u,) = TextFrontend().encode(text, lang)
    body = u.phones[1:-1]
    assert len(body) >= 8
    assert all(p.startswith(f"{lang}:") or p == "<sp>" for p in body)
    assert f"{lang}:n" in body and f"{lang}:m" in body


def test_symbol_table_is_stable():
    t = SymbolTable()
    assert t.symbols[:3] == ["<pad>", "<sil>", "<sp>"]
    assert len(t) == 179  # the bundled voice's embedding size: do not reorder
    with pytest.raises(TextError, match="not in the symbol table"):
        t.encode(["<sil>", "qq"])


@pytest.mark.parametrize("bad", ["", "   \n\t", "?!...", "---"])
def test_empty_or_unspeakable_text_is_a_clear_error(bad):
    with pytest.raises(TextError):
        TextFrontend().encode(bad)


def test_non_string_and_unknown_language():
    with pytest.raises(TextError, match="string"):
        TextFrontend().encode(None)  # type: ignore[arg-type]
    with pytest.raises(TextError, match="unsupported language"):
        TextFrontend().encode("hello", "fr")


def test_sentence_splitting_and_very_long_input():
    assert split_sentences("One two. Three four! Five?") == ["One two.", "Three four!", "Five?"]
    long_sentence = ", ".join(["the cat sat on the mat"] * 30) + "."
    parts = split_sentences(long_sentence, max_words=40)
    assert len(parts) > 3 and all(len(p.split()) <= 40 for p in parts)
    assert " ".join(parts).split() == long_sentence.split()
    no_commas = " ".join(["word"] * 95)
    assert [len(p.split()) for p in split_sentences(no_commas, max_words=40)] == [40, 40, 15]
    utts = TextFrontend().encode("The train was late again today. " * 200)
    assert len(utts) == 200 and all(u.phones[0] == "<sil>" for u in utts)


def test_abbreviation_period_does_not_split():
    utts = TextFrontend().encode("Dr. Smith arrived. He paid $2.50.")
    assert [u.text for u in utts] == ["Doctor Smith arrived.", "He paid two dollars and fifty cents."]
