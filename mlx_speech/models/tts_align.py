"""Learned alignment helpers: beta-binomial prior, monotonic alignment search, forward-sum loss.

The acoustic model's aligner scores every (mel frame, phone) pair (``FastSpeech2.alignment_scores``,
``(B, T, N)``). Training adds the log of a beta-binomial prior (frames near the diagonal are
likelier), normalises over the frames of each phone (``log P(frame | phone)``), and maximises
the total probability of all monotonic paths (the forward-sum loss: each frame stays on its
phone or moves to the next, starting on the first phone and ending on the last). Durations for
the length regulator come from the single best path (monotonic alignment search, a Viterbi
pass in numpy); once those are trusted, a binarization loss pulls the soft alignment onto that
path. All are written here from the definitions; ``torch_ref/models/tts_align.py`` mirrors the
MLX losses.

Why over frames: normalised over phones instead (``log P(phone | frame)``), a symbol that is in
every utterance (``<sil>``) got the most consistent gradient, its key moved to the middle of all
frames and it claimed most of every utterance within 20 steps (measured on a 160-utterance
festival corpus: MAS boundary error 23 frames against 8.4 for a uniform split, still there after
300 steps; the same with a CTC blank, cosine scores, frozen mel features or normalised mels).
Normalised over frames, a phone that claims many frames spreads its probability thin, so hubs
cost; the same corpus reached 6.0 frames after 100 aligner steps.

The numpy half (prior, search) imports no mlx, so torch_ref shares it; the MLX functions import
``mlx.core`` when called.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import gammaln

if TYPE_CHECKING:
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


def batch_log_prior(text_lengths: np.ndarray, mel_lengths: np.ndarray, N: int, T: int,
                    scaling: float = 1.0) -> np.ndarray:
    """Padded ``(B, T, N)`` float32 beta-binomial log priors (zeros outside each utterance)."""
    out = np.zeros((len(text_lengths), T, N), np.float32)
    for i, (n, t) in enumerate(zip(text_lengths, mel_lengths)):
        out[i, :t, :n] = beta_binomial_log_prior(int(n), int(t), scaling)
    return out


def uniform_durations(N: int, T: int) -> np.ndarray:
    """``T`` frames split as evenly as possible over ``N`` phones (the no-aligner baseline)."""
    return np.diff(np.round(np.linspace(0, T, N + 1))).astype(np.int32)


def boundary_errors(phones: list[str], durations: np.ndarray, ref_phones: list[str],
                    ref_durations: np.ndarray) -> np.ndarray:
    """``|end frame - reference end frame|`` of every phone the two sequences share (matched by
    :class:`difflib.SequenceMatcher`, so the phone sets may differ), the last phone excluded."""
    ends, ref_ends = np.cumsum(durations), np.cumsum(ref_durations)
    sm = difflib.SequenceMatcher(a=list(phones), b=list(ref_phones), autojunk=False)
    out = [abs(int(ends[i + k]) - int(ref_ends[j + k])) for i, j, size in sm.get_matching_blocks()
           for k in range(size) if i + k < len(phones) - 1 and j + k < len(ref_phones) - 1]
    return np.array(out, np.float64)


def log_attention(scores: mx.array, log_prior: mx.array, text_mask: mx.array, mel_mask: mx.array) -> mx.array:
    """``(B, T, N)`` aligner scores + log prior -> log-softmax over each phone's (real) frames.

    ``text_mask (B, N)`` / ``mel_mask (B, T)`` are True on real steps; padded entries get ``NEG``."""
    import mlx.core as mx  # noqa: PLC0415

    s = mx.where(text_mask[:, None, :] & mel_mask[:, :, None], scores + log_prior, NEG)
    return s - mx.logsumexp(s, axis=1, keepdims=True)


def forward_sum_loss(log_attn: mx.array, text_lengths: mx.array, mel_lengths: mx.array) -> mx.array:
    """Mean over the batch of ``-log P(all monotonic paths) / frames`` (see the module docstring)."""
    import mlx.core as mx  # noqa: PLC0415

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


def binarization_loss(log_attn: mx.array, hard: mx.array) -> mx.array:
    """``-mean log attention`` on the hard (MAS) path; ``hard (B, T, N)`` is 0/1, zero on padding."""
    import mlx.core as mx  # noqa: PLC0415

    return -mx.sum(log_attn * hard) / mx.maximum(mx.sum(hard), 1.0)
