"""A synthetic speech-like corpus (numpy only, no synthesizer): for tests, benchmarks, smoke runs.

Each utterance is :func:`mlx_speech.audio.synth.speechlike` with its own f0, length and seed,
written as 16-bit WAV with a JSONL manifest. It has no words; use ``synth-corpus`` for speech.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlx_speech.audio.io import save
from mlx_speech.audio.synth import speechlike
from mlx_speech.data.manifest import Item, write_manifest


def write_toy_corpus(directory: str | os.PathLike, *, n: int = 16, sample_rate: int = 16000,
                     seconds: tuple[float, float] = (0.6, 1.4), langs: tuple[str, ...] = ("en",),
                     seed: int = 0) -> Path:
    """Write ``n`` utterances under ``directory/wavs`` and return ``directory/manifest.jsonl``."""
    root = Path(directory)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        dur = float(rng.uniform(*seconds))
        f0 = float(rng.uniform(90.0, 220.0))
        wav = 0.5 * speechlike(sr=sample_rate, seconds=dur, f0=f0, seed=seed * 100003 + i)
        path = save(root / "wavs" / f"toy_{i:05d}.wav", wav, sample_rate)
        items.append(Item(path=str(path), text="", lang=langs[i % len(langs)], speaker=f"toy{i % 4}",
                          duration=len(wav) / sample_rate, sample_rate=sample_rate))
    return write_manifest(root / "manifest.jsonl", items)
