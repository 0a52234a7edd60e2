"""The numpy tables of the SSL encoders, shared by the MLX models and their torch_ref mirror.

Every table here is computed once per input length (or once per model) in numpy and handed to
the framework as an array, so both frameworks index with the same integers and add the same
float32 constants; keeping them in one framework-free module is what lets
:mod:`torch_ref.models.ssl` reuse them without reaching mlx.

* WavLM: :func:`relative_position_buckets` (T5-style bidirectional buckets of ``key - query``;
  see :mod:`mlx_speech.models.ssl.wavlm` for the upstream quirks it reproduces).
* w2v-BERT 2.0 relative positions: :func:`relative_sinusoids` (Transformer-XL), the per-length
  index tables of :func:`w2v_bert_positions` and :func:`rotary_tables` (rotate-half RoPE).
* w2v-BERT 2.0 front end: the Kaldi mel filterbank, the Povey window and the constants of
  transformers' ``SeamlessM4TFeatureExtractor`` (:mod:`mlx_speech.models.ssl.fbank`).

Imports numpy only.
"""

from __future__ import annotations

import math

import numpy as np

# --- w2v-BERT fbank constants (SeamlessM4TFeatureExtractor) -----------------------------------
FRAME_LENGTH = 400
HOP_LENGTH = 160
FFT_LENGTH = 512
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
INT16_SCALE = 32768.0
NORM_EPS = 1e-7


def relative_position_buckets(query_length: int, key_length: int, *, num_buckets: int,
                              max_distance: int) -> np.ndarray:
    """``(T, S)`` int32 bucket of ``key - query`` for every pair (WavLM / T5 bidirectional)."""
    rel = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).astype(np.int64) * half
    dist = np.abs(rel)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        # float32 throughout, as upstream (the python-float divisor rounds to float32 there)
        large = np.log(dist.astype(np.float32) / np.float32(max_exact))
        large = large / np.float32(math.log(max_distance / max_exact))
        large = large * np.float32(half - max_exact)
        large = np.float32(max_exact) + large
    large = np.where(dist < max_exact, 0, large)  # keep the unused -inf out of the cast
    large = np.minimum(large.astype(np.int64), half - 1)
    buckets += np.where(dist < max_exact, dist, large)
    return buckets.astype(np.int32)


def relative_sinusoids(length: int, dim: int) -> np.ndarray:
    """``(2T-1, dim)`` float32 sinusoids of relative positions ``T-1, T-2, ..., -(T-1)``."""
    pos = np.arange(length - 1, -length, -1).astype(np.float32)[:, None]
    div = np.exp(np.arange(0, dim, 2).astype(np.float32) * np.float32(-(math.log(10000.0) / dim)))
    angle = pos * div.astype(np.float32)
    pe = np.zeros((2 * length - 1, dim), np.float32)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle)
    return pe


def rotary_tables(length: int, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """``(cos, sin)`` each ``(T, Dh)`` float32, rotate-half layout (frequencies repeated)."""
    inv = (np.float32(1.0) / (np.float32(base) ** (np.arange(0, head_dim, 2).astype(np.float32)
                                                   / np.float32(head_dim)))).astype(np.float32)
    freqs = np.arange(length, dtype=np.float32)[:, None] * inv[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def w2v_bert_positions(position_type: str | None, length: int, *, hidden_size: int,
                       num_heads: int, left_max: int, right_max: int,
                       rotary_base: float) -> dict[str, np.ndarray]:
    """Per-forward position tables of a w2v-BERT encoder of ``length`` frames (numpy).

    ``"relative"``: ``sinusoids (2T-1, D)`` and ``skew (T, T)`` int32, the column
    ``T - 1 - i + j`` of the sinusoid scores that holds query ``i``, key ``j``;
    ``"relative_key"``: ``distance (T, T)`` int32, ``clip(j - i, -L, R) + L`` (a row of the
    distance table); ``"rotary"``: ``cos`` / ``sin`` ``(T, Dh)``; None: no tables.
    """
    T = length
    if position_type == "relative":
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        return {"sinusoids": relative_sinusoids(T, hidden_size),
                "skew": (T - 1 - i + j).astype(np.int32)}
    if position_type == "relative_key":
        d = np.arange(T)[None, :] - np.arange(T)[:, None]
        d = np.clip(d, -left_max, right_max)
        return {"distance": (d + left_max).astype(np.int32)}
    if position_type == "rotary":
        cos, sin = rotary_tables(T, hidden_size // num_heads, rotary_base)
        return {"cos": cos, "sin": sin}
    return {}


def kaldi_mel(freq: np.ndarray | float) -> np.ndarray:
    """Hz -> Kaldi mel, ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def kaldi_mel_filters(*, num_mel_bins: int = 80, sample_rate: int = 16000,
                      fft_length: int = FFT_LENGTH, f_min: float = 20.0,
                      f_max: float | None = None) -> np.ndarray:
    """``(fft_length // 2 + 1, num_mel_bins)`` float64 triangles, built in the mel domain."""
    f_max = sample_rate / 2 if f_max is None else f_max
    n_bins = fft_length // 2 + 1
    bin_mel = kaldi_mel(np.arange(n_bins) * (sample_rate / fft_length))
    edges = np.linspace(kaldi_mel(f_min), kaldi_mel(f_max), num_mel_bins + 2)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - left) / (center - left)
    falling = (right - bin_mel[:, None]) / (right - center)
    return np.maximum(0.0, np.minimum(rising, falling))


def povey_window(length: int = FRAME_LENGTH) -> np.ndarray:
    """Kaldi's Povey window: the symmetric Hann window to the power 0.85 (float64)."""
    n = np.arange(length)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (length - 1))
    return np.power(hann, 0.85)


def fbank_frames(num_samples: int) -> int:
    """Fbank frames for ``num_samples`` 16 kHz samples (400-sample windows every 160, not
    centred)."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // HOP_LENGTH


def fbank_batch_layout(lengths: list[int], stride: int) -> tuple[int, int, np.ndarray]:
    """``(padded_len, total, mask)`` for a batch of fbank rows of ``lengths`` frames.

    Upstream pads every row to the longest, then to a multiple of 2, then cuts to a multiple of
    ``stride``; ``total`` frames are stacked ``stride`` at a time and a stacked frame is valid
    where its frame ``index % stride == 1`` is real: ``mask (B, total // stride)`` bool.
    """
    longest = max(lengths)
    padded_len = longest + longest % 2
    total = padded_len - padded_len % stride
    mask = np.arange(total)[None, :] < np.array(lengths)[:, None]
    return padded_len, total, mask[:, 1::stride]
