"""Symbol tables per language: the integer ids the acoustic model embeds.

One shared id space so a multilingual model has one embedding table: ids 0..2 are
``<pad>``, ``<sil>`` (utterance start/end), ``<sp>`` (pause at punctuation); English uses
ARPAbet without stress (CMUdict's ``AH0`` becomes ``ax``, as festival's lexicon writes it);
Hindi and Telugu use the IPA tokens espeak-ng produces (stress marks dropped, length kept),
tagged with the language so the same IPA letter in two languages may differ.
"""

from __future__ import annotations

from mlx_speech.text.errors import TextError

PAD, SIL, SP = "<pad>", "<sil>", "<sp>"
SPECIAL = (PAD, SIL, SP)

ARPABET = ("aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh "
           "t th uh uw v w y z zh").split()

# Union of espeak-ng's hi / te inventories (measured on our sentence lists) plus neighbours.
INDIC_IPA = ("a aː ã aɪ aʊ b bʰ c cʰ cː d dʰ e eː ẽː f h i iː ĩ j k kʰ l m n o oː õ p pʰ r s t tʰ "
             "tː u uː ũ z ɔ ɔː ɖ ɖʰ ə ɛ ɛː ɛ̃ ɟ ɟʰ ɡ ɡʰ ɪ ɭ ɳ ɾ ɕ ʂ ʃ ʈ ʈʰ ʊ ʋ ʌ ʲ ŋ ɲ x").split()

LANGUAGES = ("en", "hi", "te")


def language_symbols(lang: str) -> list[str]:
    """The phone symbols of ``lang`` (without the shared specials)."""
    if lang == "en":
        return list(ARPABET)
    if lang in ("hi", "te"):
        return [f"{lang}:{p}" for p in INDIC_IPA]
    raise TextError(f"unsupported language {lang!r}; choose from {', '.join(LANGUAGES)}")


def all_symbols(langs: tuple[str, ...] | list[str] = LANGUAGES) -> list[str]:
    """The full table: specials, then each language's phones in order."""
    out = list(SPECIAL)
    for lang in langs:
        out += language_symbols(lang)
    return out


class SymbolTable:
    """Symbol <-> id mapping. ``encode`` raises :class:`TextError` naming an unknown symbol."""

    def __init__(self, langs: tuple[str, ...] | list[str] = LANGUAGES) -> None:
        self.langs = tuple(langs)
        self.symbols = all_symbols(self.langs)
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._ids

    def encode(self, phones: list[str]) -> list[int]:
        try:
            return [self._ids[p] for p in phones]
        except KeyError as exc:
            raise TextError(f"symbol {exc.args[0]!r} is not in the symbol table") from None

    def decode(self, ids: list[int]) -> list[str]:
        return [self.symbols[i] for i in ids]


# Festival / flite segment labels that are not our symbols (the rest are ARPAbet as ours).
_FESTIVAL_TO_ARPA = {"pau": "<sp>", "h#": "<sp>", "sil": "<sp>", "dx": "d", "axr": "er", "ix": "ih",
                     "el": "l", "em": "m", "en": "n", "nx": "n", "hv": "hh"}


def corpus_phones(labels: list[str]) -> list[str]:
    """Festival / flite segment labels -> our English symbols (pauses at the ends -> ``<sil>``)."""
    out = [_FESTIVAL_TO_ARPA.get(lab, lab) for lab in labels]
    if out and out[0] == "<sp>":
        out[0] = "<sil>"
    if out and out[-1] == "<sp>":
        out[-1] = "<sil>"
    return out
