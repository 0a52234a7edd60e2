"""Per-token durations (frames per token) for aligning LLM hidden states to an audio frame rate.

Framework-neutral (numpy only): the MLX teacher (:mod:`mlx_speech.teachers.qwen`) and its torch
twin (:mod:`torch_ref.teachers.qwen`) share these rules.

A duration vector ``d (T,)`` of non-negative ints with ``sum(d) == F`` says that token ``t``
covers frames ``[cumsum(d)[t-1], cumsum(d)[t])``; aligning repeats token ``t``'s state ``d[t]``
times (repeat-interleave), so frame ``f`` gets the state of the first token whose cumulative
duration exceeds ``f``. Tokens with ``d = 0`` get no frame.

Where no durations are given, two documented derivations:

* :func:`even_durations` spreads ``F`` frames over ``T`` tokens as evenly as integers allow:
  token ``t`` gets ``floor((t+1) F / T) - floor(t F / T)`` frames (lengths differ by at most
  one; with ``T > F`` some tokens get none). It knows nothing about speech, so it is the
  fallback, not the recommended path.
* :func:`durations_from_word_timings` uses word start / end times (the offline corpus generator
  writes ``words: [[label, start_s, end_s], ...]``) and which word each token belongs to. Word
  ``w`` owns the frames from ``round(start_w * frame_rate)`` up to the next word's start frame
  (the last word up to ``F``), so pauses between words stay with the word before them; frames
  before the first word go to the first word. Inside a word its frames are spread evenly over
  its tokens (rule above). Tokens outside every word (special tokens, word id None) get 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlx_speech.errors import UserError


class DurationError(UserError, ValueError):
    """Durations that do not fit the tokens or the frame count."""


def even_durations(num_tokens: int, num_frames: int) -> np.ndarray:
    """``(T,)`` int64 durations spreading ``num_frames`` over ``num_tokens`` evenly (docstring)."""
    if num_tokens <= 0:
        raise DurationError(f"even_durations: need at least one token, got {num_tokens}")
    if num_frames < 0:
        raise DurationError(f"even_durations: num_frames must be >= 0, got {num_frames}")
    edges = (np.arange(num_tokens + 1, dtype=np.int64) * num_frames) // num_tokens
    return np.diff(edges)


def check_durations(durations: Sequence[int] | np.ndarray, *, num_tokens: int,
                    num_frames: int) -> np.ndarray:
    """``(B, T)`` int64 durations, checked: integer, ``>= 0``, ``T`` tokens, each row sums to
    ``num_frames``. A ``(T,)`` vector is one row. Raises :class:`DurationError` naming the row."""
    d = np.asarray(durations)
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or d.shape[1] != num_tokens:
        raise DurationError(f"durations must be (T,) or (B, T) with T = {num_tokens} tokens, "
                            f"got shape {d.shape}")
    if d.size and not (np.issubdtype(d.dtype, np.integer)
                       or (np.issubdtype(d.dtype, np.floating) and np.all(d == np.round(d)))):
        raise DurationError(f"durations must be whole numbers of frames, got dtype {d.dtype}")
    d = d.astype(np.int64)
    if d.size and d.min() < 0:
        raise DurationError(f"durations must be >= 0, got minimum {int(d.min())}")
    sums = d.sum(axis=1)
    bad = np.nonzero(sums != num_frames)[0]
    if bad.size:
        b = int(bad[0])
        raise DurationError(f"durations of row {b} sum to {int(sums[b])} frames but the audio has "
                            f"{num_frames}; fix the durations or derive them with "
                            f"even_durations / durations_from_word_timings")
    return d


def durations_from_word_timings(words: Sequence[Sequence], token_words: Sequence[int | None], *,
                                num_frames: int, frame_rate: float) -> np.ndarray:
    """``(T,)`` durations from word timings and a token -> word map (rules in the docstring).

    ``words``: ``[(label, start_s, end_s), ...]`` in time order; ``token_words[t]``: index into
    ``words`` of token ``t``'s word, or None (e.g. a BOS token). Every word needs a token.
    """
    if frame_rate <= 0:
        raise DurationError(f"frame_rate must be > 0, got {frame_rate}")
    if not words:
        raise DurationError("durations_from_word_timings: no words")
    starts = [float(w[1]) for w in words]
    if any(b < a for a, b in zip(starts, starts[1:])):
        raise DurationError("word timings must be in time order (start times non-decreasing)")
    n_words = len(words)
    owners: list[list[int]] = [[] for _ in range(n_words)]
    for t, w in enumerate(token_words):
        if w is None:
            continue
        if not 0 <= int(w) < n_words:
            raise DurationError(f"token {t} points at word {w}, but there are {n_words} words")
        owners[int(w)].append(t)
    orphans = [i for i, toks in enumerate(owners) if not toks]
    if orphans:
        raise DurationError(f"word {orphans[0]} ({words[orphans[0]][0]!r}) has no token")
    edges = [min(max(int(round(s * frame_rate)), 0), num_frames) for s in starts]
    edges[0] = 0
    edges.append(num_frames)
    out = np.zeros(len(token_words), dtype=np.int64)
    for i, toks in enumerate(owners):
        span = max(edges[i + 1] - edges[i], 0)
        out[toks] = even_durations(len(toks), span)
    return out


def frame_to_token(durations: np.ndarray) -> np.ndarray:
    """``(F,)`` token index of every frame for one row of durations (repeat-interleave)."""
    d = np.asarray(durations, dtype=np.int64)
    return np.repeat(np.arange(d.shape[-1]), d)
