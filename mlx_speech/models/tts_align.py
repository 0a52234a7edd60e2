"""Learned alignment helpers: beta-binomial prior, monotonic alignment search, forward-sum loss.

The acoustic model's aligner scores every (mel frame, phone) pair (``FastSpeech2.alignment_scores``,
``(B, T, N)``). Training adds the log of a beta-binomial prior (frames near the diagonal are
likelier), normalises over phones, and maximises the total probability of all monotonic paths
(the forward-sum loss: each frame stays on its phone or moves to the next, starting on the
first phone and ending on the last). Durations for the length regulator come from the single
best path (monotonic alignment search, a Viterbi pass in numpy). Both are written here from
the definitions; ``torch_ref/models/tts_align.py`` mirrors the loss.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

import mlx.core as mx

NEG = -1e4  # "impossible" in log space, finite so gradients stay finite


def beta_binomial_log_prior(N: int, T: int, scaling: float = 1.0) -> np.ndarray:
    """``(T, N)`` log-probabilities: frame t's phone ~ BetaBinomial(N-1, a=s(t+1), b=s(T-t))."""
    k = np.arange(N)[None, :].astype(np.float64)
    t = np.arange(T)[:, None].astype(np.float64)
    a, b, n = scaling * (t + 1), scaling * (T - t), N - 1
    logc = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    logp = logc + gammaln(k + a) + gammaln(n - k + b) - gammaln(n + a + b) \
        - (gammaln(a) + gammaln(b) - gammaln(a + b))
    return logp.astype(np.float32)


def monotonic_alignment_search(log_probs: np.ndarray) -> np.ndarray:
    """Best monotonic path through ``(T, N)`` log-probs (T >= N) -> frames per phone ``(N,)``.

    The path starts at (0, 0), ends at (T-1, N-1), and each step keeps the phone or advances one;
    every phone gets at least one frame."""
    T, N = log_probs.shape
    if T < N:
        raise ValueError(f"alignment needs at least as many frames ({T}) as phones ({N})")
    Q = np.full((T, N), -np.inf)
    Q[0, 0] = log_probs[0, 0]
    for t in range(1, T):
        stay = Q[t - 1]
        move = np.concatenate([[-np.inf], Q[t - 1, :-1]])
        Q[t] = np.maximum(stay, move) + log_probs[t]
    durations = np.zeros(N, np.int32)
    n = N - 1
    for t in range(T - 1, -1, -1):
        durations[n] += 1
        if t > 0 and n > 0 and Q[t - 1, n - 1] >= Q[t - 1, n]:  # unreachable states are -inf
            n -= 1
    return durations


def batch_durations(log_probs: np.ndarray, text_lengths: np.ndarray, mel_lengths: np.ndarray) -> np.ndarray:
    """MAS over a padded batch ``(B, T, N)`` -> ``(B, N)`` int32 (zeros past each text)."""
    out = np.zeros((log_probs.shape[0], log_probs.shape[2]), np.int32)
    for i, (n, t) in enumerate(zip(text_lengths, mel_lengths)):
        out[i, :n] = monotonic_alignment_search(log_probs[i, :t, :n])
    return out


def log_attention(scores: mx.array, log_prior: mx.array, text_mask: mx.array) -> mx.array:
    """``(B, T, N)`` aligner scores + log prior -> log-softmax over (real) phones."""
    s = mx.where(text_mask[:, None, :], scores + log_prior, NEG)
    return s - mx.logsumexp(s, axis=-1, keepdims=True)


def forward_sum_loss(log_attn: mx.array, text_lengths: mx.array, mel_lengths: mx.array) -> mx.array:
    """Mean over the batch of ``-log P(all monotonic paths) / frames`` (see the module docstring)."""
    B, T, N = log_attn.shape
    n_idx = mx.arange(N)[None, :]
    alpha = mx.where(n_idx == 0, log_attn[:, 0], NEG)
    for t in range(1, T):
        shifted = mx.concatenate([mx.full((B, 1), NEG), alpha[:, :-1]], axis=1)
        new = mx.logaddexp(alpha, shifted) + log_attn[:, t]
        alive = (t < mel_lengths)[:, None]
        alpha = mx.where(alive, new, alpha)
    last = mx.take_along_axis(alpha, (text_lengths - 1)[:, None].astype(mx.int32), axis=1)[:, 0]
    return -mx.mean(last / mel_lengths.astype(last.dtype))
