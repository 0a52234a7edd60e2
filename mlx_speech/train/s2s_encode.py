"""Tokenising the ``s2s`` task's audio with the MLX codec into the codes cache that
:mod:`mlx_speech.train.s2s_data` reads (layout and keys there).

The codec is the registered family ``cache.codec`` with the weights ``cache.weights``, loaded
once per call with ``cache.num_codebooks`` codebooks; each file is read as the codec's input
(mono, resampled to its rate, with :func:`~mlx_speech.pipelines.codec.read_audio`) and coded
in pieces as ``mlx-speech codec encode`` does, so a cached file equals that command's codes.
"""

from __future__ import annotations

from typing import Any

from mlx_speech.errors import SpecError
from mlx_speech.pipelines.codec import encode_wav, load_codec, read_audio
from mlx_speech.train.s2s_data import CodesCache


def encode_into_cache(cache: CodesCache, audios: list[str], *, codebook_size: int,
                      progress: bool = False) -> int:
    """Code ``audios`` into ``cache``; returns how many. The codec's codebooks must hold
    ``codebook_size`` codes (the model's ``codebook_size``)."""
    from tqdm import tqdm  # noqa: PLC0415

    codec: Any = load_codec(cache.codec, cache.weights, num_codebooks=cache.num_codebooks)
    if codec.codebook_size != codebook_size:
        raise SpecError(f"{cache.weights}: the {cache.codec} codec has codebooks of "
                        f"{codec.codebook_size} codes but model.arch.codebook_size is "
                        f"{codebook_size}")
    for path in tqdm(audios, desc="codes cache", unit="file", disable=not progress, leave=False):
        wav = read_audio(path, codec.sample_rate)
        codes = encode_wav(codec, wav)
        cache.write(path, codes[0], num_samples=wav.size)
    return len(audios)
