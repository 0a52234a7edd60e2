"""The numpy half of learned alignment: beta-binomial prior, monotonic alignment search (a
Viterbi pass), durations of a batch, boundary errors against reference timings. Framework-free,
shared by both back ends; the losses are in :mod:`mlx_speech.train.tts_align` and its torch_ref
twin (see there for the method and why it normalises over frames)."""

from __future__ import annotations

import difflib

import numpy as np
from scipy.special import gammaln


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
