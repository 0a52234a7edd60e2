"""Boundary checks and code statistics shared by every quantizer (MLX).

Latents are ``(B, F, D)`` (frames, dim); codes are ``(B, K, F)`` int32. A user error (wrong
rank or width, codes out of range, too many levels) raises :class:`CodesError` with one line.
The numpy sampling helpers come from :mod:`mlx_speech.utils.sampling`, shared with torch_ref, so
both draw the same indices from the same ``np.random.Generator``.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from mlx_speech.errors import AudioError, CodesError
from mlx_speech.utils.sampling import dropout_levels, sample_indices  # noqa: F401 (re-exported)


def check_wav(wav: mx.array, where: str) -> mx.array:
    """The waveform argument of a codec's coding calls: a float ``(B, T)`` array
    (:class:`AudioError` otherwise)."""
    if not isinstance(wav, mx.array):
        raise AudioError(f"{where}: expected an mx.array waveform (B, T), got {type(wav).__name__}")
    if wav.ndim != 2 or not mx.issubdtype(wav.dtype, mx.floating):
        raise AudioError(f"{where}: expected a float waveform (B, T), got {wav.dtype} "
                         f"{tuple(wav.shape)}")
    return wav


def check_latents(x: mx.array, dim: int, where: str) -> None:
    """``x`` must be a float ``(B, F, dim)`` array."""
    if not isinstance(x, mx.array):
        raise CodesError(f"{where}: expected an mx.array of latents (B, F, {dim}), got {type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != dim:
        raise CodesError(f"{where}: expected latents of shape (B, F, {dim}), got {tuple(x.shape)}")
    if not mx.issubdtype(x.dtype, mx.floating):
        raise CodesError(f"{where}: latents must be floating point, got {x.dtype}")


def check_num_levels(num_levels: int | None, total: int, where: str) -> int:
    """Resolve ``num_levels`` (None = all) and check it is in ``1..total``."""
    if num_levels is None:
        return total
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or not 1 <= num_levels <= total:
        raise CodesError(f"{where}: num_levels must be an int in 1..{total}, got {num_levels!r}")
    return num_levels


def check_codes(codes: mx.array, sizes: list[int], where: str) -> mx.array:
    """``codes`` must be integer ``(B, K', F)`` with ``1 <= K' <= len(sizes)`` and
    ``0 <= codes[:, k] < sizes[k]``; returns them as int32."""
    if not isinstance(codes, mx.array):
        raise CodesError(f"{where}: expected an mx.array of codes (B, K, F), got {type(codes).__name__}")
    if codes.ndim != 3:
        raise CodesError(f"{where}: expected codes of shape (B, K, F), got {tuple(codes.shape)}")
    if not mx.issubdtype(codes.dtype, mx.integer):
        raise CodesError(f"{where}: codes must be integers, got {codes.dtype}")
    k = codes.shape[1]
    if not 1 <= k <= len(sizes):
        raise CodesError(f"{where}: got {k} codebooks, expected 1..{len(sizes)}")
    if codes.size:
        lo = np.array(mx.min(codes, axis=(0, 2))).astype(np.int64)
        hi = np.array(mx.max(codes, axis=(0, 2))).astype(np.int64)
        for i in range(k):
            if lo[i] < 0 or hi[i] >= sizes[i]:
                bad = lo[i] if lo[i] < 0 else hi[i]
                raise CodesError(f"{where}: code {bad} in codebook {i} is out of range 0..{sizes[i] - 1}")
    return codes.astype(mx.int32)


def histogram(codes: mx.array, size: int) -> mx.array:
    """Counts ``(size,)`` float32 of the flat int codes."""
    flat = codes.reshape(-1)
    return mx.zeros((size,), dtype=mx.float32).at[flat].add(mx.ones(flat.shape, dtype=mx.float32))


def usage_stats(counts: mx.array) -> dict[str, mx.array]:
    """``perplexity`` = exp(entropy) of the code distribution (1 .. K) and ``usage`` = fraction
    of codes used at least once, from ``counts (K,)``."""
    total = mx.maximum(counts.sum(), 1.0)
    p = counts / total
    logp = mx.log(mx.maximum(p, 1e-30))
    entropy = -(p * logp).sum()
    return {"perplexity": mx.exp(entropy), "usage": (counts > 0).astype(mx.float32).mean()}


def masked_mean(err: mx.array, sample_mask: mx.array | None) -> mx.array:
    """Mean of ``err (B, ...)``; with ``sample_mask (B,)`` only over the kept batch items."""
    if sample_mask is None:
        return err.mean()
    per_item = err.reshape(err.shape[0], -1).mean(axis=1)
    return (per_item * sample_mask).sum() / mx.maximum(sample_mask.sum(), 1.0)
