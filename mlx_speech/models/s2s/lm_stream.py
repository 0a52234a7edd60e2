"""The acoustic delay pattern of a Moshi-style LM, framework-free (numpy): shared by the MLX
and torch_ref models so both feed their transformers exactly what moshi's ``LMGen`` feeds.

Streams are ``K = n_q + 1`` channels per frame, text first: channel 0 is text, channels
``1 .. dep_q`` the model's own audio codebooks, ``dep_q + 1 .. n_q`` the user's. Channel ``k``
is shifted ``delays[k]`` frames late; a position with no token yet holds the channel's initial
token (``text_card`` for text, ``card`` for audio).

Teacher forcing (:func:`delay_codes`): moshi's ``LMModel.forward`` input is
``[initial, delayed codes]`` (``T + 1`` positions): the transformer reads positions ``0 .. T-1``
and the depformer is taught with positions ``1 .. T``.

Generation (:class:`TokenRing`, ``LMGen._step``): a ring of ``max_delay + 2`` positions,
initially ``UNGENERATED``. Step ``t`` writes the user's frame ``t`` at position ``t + delay``,
feeds position ``t`` (the initial token while ``t <= delay`` of the channel), and writes the
sampled text and own audio tokens at position ``t + 1``. From step ``max_delay`` on, each step
returns one whole frame, ``t - max_delay``, read back at ``t + 1 - max_delay + delay`` per
channel, so own audio comes out aligned with the text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlx_speech.errors import CodesError
from mlx_speech.models.s2s.lm_spec import MoshiLMSpec

ZERO = -1  # moshi's zero_token_id: embeds as zeros ("no input")
UNGENERATED = -2  # moshi's ungenerated_token_id: a ring slot not written yet


def initial_tokens(spec: MoshiLMSpec) -> np.ndarray:
    """``(K,)`` int64: ``text_card`` then ``card`` for every audio codebook."""
    return np.array([spec.text_card] + [spec.card] * spec.n_q, dtype=np.int64)


def check_codes(codes: np.ndarray, spec: MoshiLMSpec, *, first: int, count: int,
                who: str) -> np.ndarray:
    """``codes`` as int64 after checking they are integers of ``count`` channels starting at
    channel ``first`` (0 = text) with values in ``-1 .. vocab`` (``-1``: zero token; ``vocab``:
    the initial token); CodesError with one line otherwise."""
    arr = np.asarray(codes)
    if not np.issubdtype(arr.dtype, np.integer):
        raise CodesError(f"{who}: codes must be integers, got {arr.dtype}")
    if arr.ndim < 2 or arr.shape[1] != count:
        raise CodesError(f"{who}: expected {count} channels on axis 1, got shape {arr.shape}")
    arr = arr.astype(np.int64)
    for k in range(count):
        vocab = spec.text_card if first + k == 0 else spec.card
        chan = arr[:, k]
        if chan.size and (chan.min() < ZERO or chan.max() > vocab):
            bad = int(chan.min()) if chan.min() < ZERO else int(chan.max())
            raise CodesError(f"{who}: code {bad} in channel {first + k} is outside "
                             f"{ZERO}..{vocab}")
    return arr


def delay_codes(codes: np.ndarray, spec: MoshiLMSpec) -> np.ndarray:
    """``codes (B, K, T)`` -> moshi's teacher-forcing sequence ``(B, K, T + 1)``: the initial
    tokens, then each channel ``k`` shifted ``delays[k]`` frames late (initial tokens first)."""
    B, K, T = codes.shape
    init = initial_tokens(spec)
    out = np.empty((B, K, T + 1), dtype=np.int64)
    for k, d in enumerate(spec.delays):
        out[:, k, : d + 1] = init[k]
        out[:, k, d + 1:] = codes[:, k, : T - d] if T > d else codes[:, k, :0]
    return out


class TokenRing:
    """moshi ``LMGen``'s token cache for ``batch`` streams; see the module docstring."""

    def __init__(self, spec: MoshiLMSpec, batch: int) -> None:
        self.spec = spec
        self.batch = batch
        self.size = spec.max_delay + 2
        self.delays = np.array(spec.delays, dtype=np.int64)
        self.initial = initial_tokens(spec)
        self.tokens = np.full((batch, spec.num_codebooks, self.size), UNGENERATED, dtype=np.int64)
        self.offset = 0

    def feed(self, user_codes: np.ndarray) -> np.ndarray:
        """Take the user's frame ``(B, n_q - dep_q)`` and return this step's transformer input
        ``(B, K)``."""
        s = self.spec
        first = s.dep_q + 1
        for j in range(s.user_codebooks):
            k = first + j
            self.tokens[:, k, (self.offset + self.delays[k]) % self.size] = user_codes[:, j]
        inp = self.tokens[:, :, self.offset % self.size].copy()
        is_init = self.offset <= self.delays
        inp[:, is_init] = self.initial[is_init]
        return inp

    def push(self, text: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Store this step's sampled ``text (B,)`` and own ``audio (B, dep_q)`` and advance;
        returns the completed frame ``(text (B,), audio (B, dep_q))``, or None while the
        delays are filling (the first ``max_delay`` steps)."""
        s = self.spec
        self.offset += 1
        pos = self.offset % self.size
        self.tokens[:, 0, pos] = text
        self.tokens[:, 1: s.dep_q + 1, pos] = audio
        if self.offset <= s.max_delay:
            return None
        gen = self.delays[: s.dep_q + 1]
        idx = (self.offset - s.max_delay + gen) % self.size
        frame = self.tokens[:, np.arange(s.dep_q + 1), idx]  # (B, dep_q + 1)
        return frame[:, 0].astype(np.int32), frame[:, 1:].astype(np.int32)

    def check_user(self, user_codes: object, who: str) -> np.ndarray:
        """A user frame as ``(B, n_q - dep_q)`` int64: ``(B, Ku)`` or ``(B, Ku, 1)``, codes in
        ``-1 .. card - 1`` (``-1``: no input); CodesError otherwise."""
        s = self.spec
        arr = np.asarray(user_codes)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2 or arr.shape[0] != self.batch:
            raise CodesError(f"{who}: expected user codes ({self.batch}, {s.user_codebooks}), "
                             f"got shape {arr.shape}")
        arr = check_codes(arr, s, first=s.dep_q + 1, count=s.user_codebooks, who=who)
        if arr.size and arr.max() >= s.card:
            raise CodesError(f"{who}: user code {int(arr.max())} is outside 0..{s.card - 1}")
        return arr


@dataclasses.dataclass
class Conversation:
    """One generation stream's state: its token ring, the temporal transformer's caches and
    (MLX, greedy) the compiled frame. One object, not containers on the module, so MLX does
    not take the caches for module state."""

    ring: TokenRing
    kv: Any
    frame: Any = None
