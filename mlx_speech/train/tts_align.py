"""Learned alignment helpers: beta-binomial prior, monotonic alignment search, forward-sum loss.

The acoustic model's aligner scores every (mel frame, phone) pair (``FastSpeech2.alignment_scores``,
``(B, T, N)``). Training adds the log of a beta-binomial prior (frames near the diagonal are
likelier), normalises over the frames of each phone (``log P(frame | phone)``), and maximises
the total probability of all monotonic paths (the forward-sum loss: each frame stays on its
phone or moves to the next, starting on the first phone and ending on the last). Durations for
the length regulator come from the single best path (monotonic alignment search, a Viterbi
pass in numpy); once those are trusted, a binarization loss pulls the soft alignment onto that
path. All are written here from the definitions; ``torch_ref/train/tts_align.py`` mirrors the
MLX losses.

Why over frames: normalised over phones instead (``log P(phone | frame)``), a symbol that is in
every utterance (``<sil>``) gets the most consistent gradient and claims most of every
utterance, while normalised over frames a phone that claims many frames spreads its probability
thin, so such hubs cost (the boundary errors behind this choice: docs/performance.md, "Quality
measurements behind design choices").

The numpy half (prior, search, durations) is :mod:`mlx_speech.train.tts_mas`, framework-free and
shared with torch_ref (re-exported here); this module holds the MLX losses.
"""

from __future__ import annotations

import mlx.core as mx

from mlx_speech.train.tts_mas import (  # noqa: F401  (re-exported)
    batch_durations, batch_log_prior, beta_binomial_log_prior, boundary_errors,
    monotonic_alignment_search, uniform_durations)

NEG = -1e4  # "impossible" in log space, finite so gradients stay finite


def log_attention(scores: mx.array, log_prior: mx.array, text_mask: mx.array, mel_mask: mx.array) -> mx.array:
    """``(B, T, N)`` aligner scores + log prior -> log-softmax over each phone's (real) frames.

    ``text_mask (B, N)`` / ``mel_mask (B, T)`` are True on real steps; padded entries get ``NEG``."""

    s = mx.where(text_mask[:, None, :] & mel_mask[:, :, None], scores + log_prior, NEG)
    return s - mx.logsumexp(s, axis=1, keepdims=True)


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


def binarization_loss(log_attn: mx.array, hard: mx.array) -> mx.array:
    """``-mean log attention`` on the hard (MAS) path; ``hard (B, T, N)`` is 0/1, zero on padding."""

    return -mx.sum(log_attn * hard) / mx.maximum(mx.sum(hard), 1.0)
