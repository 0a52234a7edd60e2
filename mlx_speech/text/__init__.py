"""Text frontend: English normalisation, CMUdict + espeak-ng G2P, symbol tables, sentence splitting.

Framework-neutral (imports neither mlx nor torch).
"""

from mlx_speech.text.errors import TextError
from mlx_speech.text.frontend import TextFrontend, Utterance, split_sentences
from mlx_speech.text.normalize import normalize_en
from mlx_speech.text.symbols import LANGUAGES, SymbolTable

__all__ = ["LANGUAGES", "SymbolTable", "TextError", "TextFrontend", "Utterance", "normalize_en",
           "split_sentences"]
