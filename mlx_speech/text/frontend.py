"""Text -> sentences -> phone symbols -> ids: the whole frontend behind one class.

``TextFrontend().encode("Hello there. It's 5 pm.")`` returns one :class:`Utterance` per
sentence (long sentences are further split at commas) with its normalised text, phones
(``<sil>`` first and last, ``<sp>`` at inner punctuation) and ids from :class:`SymbolTable`.
Empty or unspeakable text is a :class:`TextError`.
"""

from __future__ import annotations

import dataclasses
import re

from mlx_speech.text.adapt import TOKENS, FrontendAdaptation
from mlx_speech.text.errors import TextError
from mlx_speech.text.g2p import english_word, indic_words
from mlx_speech.text.normalize import normalize_en
from mlx_speech.text.symbols import LANGUAGES, SIL, SP, SymbolTable

MAX_WORDS = 40  # longer sentences are split at commas / semicolons, then every MAX_WORDS words
_SENT_END = re.compile(r"(?<=[.!?।])[\"')\]]*\s+")
_PAUSE = set(",;:()\"-—")


@dataclasses.dataclass(frozen=True)
class Utterance:
    text: str
    phones: tuple[str, ...]
    ids: tuple[int, ...]


def split_sentences(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Sentences of ``text``; any longer than ``max_words`` words is cut at clause marks, then hard."""
    out = []
    for sent in _SENT_END.split(text.strip()):
        sent = sent.strip()
        if not sent:
            continue
        if len(sent.split()) <= max_words:
            out.append(sent)
            continue
        chunk: list[str] = []
        for clause in re.split(r"(?<=[,;:])\s+", sent):
            words = clause.split()
            if chunk and len(chunk) + len(words) > max_words:
                out.append(" ".join(chunk))
                chunk = []
            while len(words) > max_words:
                out.append(" ".join(words[:max_words]))
                words = words[max_words:]
            chunk += words
        if chunk:
            out.append(" ".join(chunk))
    return out


class TextFrontend:
    """Normalise, split and phonemise text of one of :data:`LANGUAGES`."""

    def __init__(self, table: SymbolTable | None = None, adaptation: FrontendAdaptation | None = None) -> None:
        self.table = table or SymbolTable()
        self.adaptation = adaptation  # a voice's teacher-matched English forms (text/adapt.py)

    def phonemize(self, sentence: str, lang: str = "en") -> list[str]:
        """Phones of one sentence: ``<sil> ... <sil>`` with ``<sp>`` at inner punctuation (and, for
        English with an adaptation, the teacher's word forms and its pauses between words)."""
        if lang not in LANGUAGES:
            raise TextError(f"unsupported language {lang!r}; choose from {', '.join(LANGUAGES)}")
        phones = [SIL]
        if lang == "en":
            tokens = TOKENS.findall(normalize_en(sentence))
            ad = self.adaptation
            breaks = ad.breaks(tokens) if ad is not None else set()
            for k, tok in enumerate(tokens):
                if tok[0] in _PAUSE:
                    if phones[-1] != SP and len(phones) > 1:
                        phones.append(SP)
                else:
                    phones += english_word(tok) if ad is None else ad.pronounce(tok, english_word(tok))
                    if k in breaks:
                        phones.append(SP)
        else:
            for clause in re.split(r"[,;:]", sentence):
                for word in indic_words(clause, lang):
                    phones += word
                if len(phones) > 1 and phones[-1] != SP:
                    phones.append(SP)
        if phones[-1] == SP:
            phones.pop()
        phones.append(SIL)
        return phones

    def encode(self, text: str, lang: str = "en") -> list[Utterance]:
        """Sentences of ``text`` as :class:`Utterance` (at least one; else :class:`TextError`)."""
        if not isinstance(text, str):
            raise TextError(f"text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise TextError("text is empty: give something to say")
        if lang == "en":  # expand "Dr." / "3.5" first so their periods do not end a sentence
            text = normalize_en(text)
        out = []
        for sent in split_sentences(text):
            phones = self.phonemize(sent, lang)
            if len(phones) > 2:
                out.append(Utterance(sent, tuple(phones), tuple(self.table.encode(phones))))
        if not out:
            raise TextError(f"nothing speakable in {text[:60]!r} {_why_unspeakable(text, lang)}")
        return out


def _why_unspeakable(text: str, lang: str) -> str:
    """The reason for an empty phone sequence: no letters at all, or letters of a script the
    language's frontend does not read (Hindi text given to an English voice)."""
    import unicodedata  # noqa: PLC0415

    letters = [c for c in text if c.isalpha()]
    if not letters and not any(c.isdigit() for c in text):
        return "(no letters or digits)"
    scripts = sorted({unicodedata.name(c, "UNKNOWN").split()[0].title() for c in letters})
    return (f"for language {lang!r}: the text is in {', '.join(scripts) or 'another'} script, "
            f"which this voice does not speak; use a voice for that language")
