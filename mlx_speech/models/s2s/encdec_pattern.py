"""Codebook patterns of the encoder-decoder model: where each code sits in the decoder's
sequence, what the decoder reads at each step, and which positions are special (numpy only).

Framework-free: the training task's ``prepare`` builds its inputs here, and the MLX and torch
generators ask :func:`forced` which codebooks a step does not sample, so teacher forcing and
generation place every code identically.

For output codes ``c (B, K, F)`` with ``lengths (B,)`` valid frames and ``special`` the BOS /
pad id (``codebook_size``), the decoder's sequence ``z (B, K, S)`` is

* ``parallel``: ``z[b, k, s] = c[b, k, s]`` for ``s < lengths[b]``, else ``special``; ``S = F``;
* ``delay``: ``z[b, k, s] = c[b, k, s - k]`` for ``0 <= s - k < lengths[b]``, else ``special``;
  ``S = F + K - 1``: codebook ``k`` lags ``k`` steps, so the step that predicts codebook
  ``k`` of a frame has already read codebooks ``0 .. k-1`` of it.

Teacher forcing: the decoder reads ``dec_in[:, :, s] = z[:, :, s - 1]`` (``special`` at
``s = 0``: BOS) and predicts ``z[:, :, s]``; the loss counts only the positions that hold a
code (``mask``). Generation runs the same steps: the model's sample at step ``s`` becomes
``z[:, :, s]`` except where :func:`forced` says the position is special.

The model's inputs are checked here too, before any framework sees them (:func:`check_codes`,
:func:`check_condition`): bad codes or ids are one :class:`~mlx_speech.errors.UserError` line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlx_speech.errors import CodesError, SpecError

PATTERNS = ("parallel", "delay")


def _check(pattern: str) -> bool:
    if pattern not in PATTERNS:
        raise ValueError(f"unknown codebook pattern {pattern!r}; expected one of {PATTERNS}")
    return pattern == "delay"


def num_steps(frames: int, num_codebooks: int, pattern: str) -> int:
    """Decoder steps ``S`` for ``frames`` output frames."""
    return int(frames) + (num_codebooks - 1 if _check(pattern) else 0)


def valid(lengths: np.ndarray, num_codebooks: int, steps: int, pattern: str) -> np.ndarray:
    """``(B, K, S)`` bool: the positions of ``z`` that hold a code (module docstring)."""
    shift = np.arange(num_codebooks)[:, None] if _check(pattern) else np.zeros((num_codebooks, 1), int)
    frame = np.arange(steps)[None, :] - shift  # (K, S): the frame each position holds
    lengths = np.asarray(lengths).reshape(-1, 1, 1)
    return (frame[None] >= 0) & (frame[None] < lengths)


def forced(step: int, frames: int, num_codebooks: int, pattern: str) -> np.ndarray:
    """``(K,)`` bool: the codebooks whose position at ``step`` holds ``special`` when ``frames``
    frames are generated (never sampled)."""
    return ~valid(np.array([frames]), num_codebooks, step + 1, pattern)[0, :, step]


def to_sequence(codes: np.ndarray, lengths: np.ndarray | None, *, special: int,
                pattern: str) -> np.ndarray:
    """``z (B, K, S)`` int32 of codes ``(B, K, F)`` (``lengths`` None: all ``F`` frames)."""
    codes = np.asarray(codes)
    B, K, F = codes.shape
    lengths = np.full(B, F) if lengths is None else np.asarray(lengths)
    S = num_steps(F, K, pattern)
    z = np.full((B, K, S), special, dtype=np.int32)
    ok = valid(lengths, K, S, pattern)
    shift = K - 1 if _check(pattern) else 0
    for k in range(K):
        s0 = k if shift else 0
        z[:, k, s0:s0 + F] = codes[:, k]
    return np.where(ok, z, special).astype(np.int32)


def from_sequence(z: np.ndarray, *, pattern: str) -> np.ndarray:
    """Codes ``(B, K, F)`` of a sequence ``z (B, K, S)`` (the inverse of :func:`to_sequence`)."""
    z = np.asarray(z)
    B, K, S = z.shape
    if not _check(pattern):
        return z.astype(np.int32)
    F = S - (K - 1)
    if F < 0:
        raise ValueError(f"a delayed sequence of {S} steps is shorter than {K - 1}")
    return np.stack([z[:, k, k:k + F] for k in range(K)], axis=1).astype(np.int32)


def teacher_forcing(codes: np.ndarray, lengths: np.ndarray | None, *, special: int,
                    pattern: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dec_in, target, mask)``, each ``(B, K, S)``: what the decoder reads (int32), what it
    predicts (int32, 0 where nothing is predicted) and where the loss counts (float32)."""
    z = to_sequence(codes, lengths, special=special, pattern=pattern)
    B, K, S = z.shape
    F = np.asarray(codes).shape[2]
    ok = valid(np.full(B, F) if lengths is None else np.asarray(lengths), K, S, pattern)
    dec_in = np.concatenate([np.full((B, K, 1), special, np.int32), z[:, :, :-1]], axis=2)
    target = np.where(ok, z, 0).astype(np.int32)
    return dec_in, target, ok.astype(np.float32)


def check_codes(codes: Any, *, num_codebooks: int, codebook_size: int, where: str) -> np.ndarray:
    """``codes`` as int32 ``(B, K, F)`` numpy after checking them: integers, exactly
    ``num_codebooks`` codebooks, at least one frame, every code in ``0 .. codebook_size - 1``;
    a one-line :class:`~mlx_speech.errors.CodesError` otherwise."""
    arr = np.asarray(codes)
    if arr.ndim != 3:
        raise CodesError(f"{where}: expected codes of shape (B, K, F), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise CodesError(f"{where}: codes must be integers, got {arr.dtype}")
    if arr.shape[1] != num_codebooks:
        raise CodesError(f"{where}: got {arr.shape[1]} codebooks, the model takes {num_codebooks}")
    if arr.shape[0] == 0 or arr.shape[2] == 0:
        raise CodesError(f"{where}: no codes (shape {arr.shape}); at least one frame is needed")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= codebook_size:
        raise CodesError(f"{where}: code {lo if lo < 0 else hi} is out of range "
                         f"0..{codebook_size - 1}")
    return arr.astype(np.int32)


def check_condition(ids: Any, *, count: int, name: str, batch: int) -> np.ndarray | None:
    """Condition ids as int32 ``(B,)`` (a scalar is broadcast; -1 = absent), or None for None;
    a one-line :class:`~mlx_speech.errors.SpecError` when the model has no such condition or an
    id is out of range."""
    if ids is None:
        return None
    if count == 0:
        raise SpecError(f"{name}: this model has no {name} embedding (num_{name}s is 0)")
    arr = np.asarray(ids)
    if not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1:
        raise SpecError(f"{name}: expected an integer id or one id per row, got {ids!r}")
    arr = np.broadcast_to(arr, (batch,)) if arr.ndim == 0 else arr
    if arr.shape != (batch,):
        raise SpecError(f"{name}: {arr.shape[0]} ids for {batch} rows")
    bad = arr[(arr < -1) | (arr >= count)]
    if bad.size:
        raise SpecError(f"{name} id {int(bad[0])} is out of range 0..{count - 1} (-1: none)")
    return arr.astype(np.int32)
