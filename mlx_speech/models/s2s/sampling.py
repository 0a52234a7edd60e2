"""Token sampling from logits (MLX): greedy, temperature, top-k, top-p, seeded.

Shared by the speech-to-speech models; ``torch_ref/models/s2s/sampling.py`` is the twin with
the same maths. For logits ``(..., V)``:

1. ``temperature == 0``: the argmax (greedy); nothing below applies;
2. ``x = logits / temperature`` in float32;
3. top-k (``top_k > 0``): keep the entries ``>=`` the k-th largest of ``x`` (ties kept);
4. top-p (``top_p < 1``): with ``p = softmax(x)`` sorted in decreasing order, keep the
   shortest prefix whose mass reaches ``top_p`` (the most likely entry always), i.e. every
   entry with ``p >=`` the smallest kept probability;
5. draw with the Gumbel-max trick: ``argmax(x + g)`` over the kept entries, ``g = -log(-log
   u)`` for ``u`` uniform in (0, 1), one per entry -- an exact draw from ``softmax(x)``
   restricted to the kept entries.

Drawing from explicit uniforms makes the two frameworks comparable: given the same ``u``
(:func:`sample_with_uniform`) they pick the same tokens. :func:`sample` takes its uniforms from
``key`` (an ``mx.random.key``; None: MLX's global generator), so a seeded key repeats a draw.
"""

from __future__ import annotations

import mlx.core as mx

from mlx_speech.models.s2s.spec import check_sampling

_U_MIN, _U_MAX = 1e-12, 1.0 - 1e-7  # u away from 0 and 1: g stays finite


def filter_logits(x: mx.array, *, top_k: int = 0, top_p: float = 1.0) -> mx.array:
    """``x (..., V)`` float32 with the entries outside top-k / top-p set to ``-inf``."""
    V = x.shape[-1]
    if 0 < top_k < V:
        kth = mx.sort(x, axis=-1)[..., V - top_k: V - top_k + 1]
        x = mx.where(x >= kth, x, -mx.inf)
    if top_p < 1.0:
        p = mx.softmax(x, axis=-1)
        desc = -mx.sort(-p, axis=-1)
        keep = mx.sum((mx.cumsum(desc, axis=-1) - desc) < top_p, axis=-1, keepdims=True)
        smallest = mx.take_along_axis(desc, mx.maximum(keep, 1) - 1, axis=-1)
        x = mx.where(p >= smallest, x, -mx.inf)
    return x


def gumbel(u: mx.array) -> mx.array:
    """``-log(-log u)`` of uniforms ``u``, clipped into (0, 1)."""
    u = mx.clip(u.astype(mx.float32), _U_MIN, _U_MAX)
    return -mx.log(-mx.log(u))


def sample_with_uniform(logits: mx.array, u: mx.array, *, temperature: float,
                        top_k: int = 0, top_p: float = 1.0) -> mx.array:
    """Tokens ``(...)`` int32 of ``logits (..., V)`` drawn with the uniforms ``u (..., V)``
    (module docstring); ``u`` is unused when ``temperature == 0``."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return mx.argmax(logits, axis=-1).astype(mx.int32)
    x = filter_logits(logits.astype(mx.float32) / temperature, top_k=top_k, top_p=top_p)
    return mx.argmax(x + gumbel(u), axis=-1).astype(mx.int32)


def sample(logits: mx.array, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           key: mx.array | None = None) -> mx.array:
    """Tokens ``(...)`` int32 drawn from ``logits (..., V)``; greedy when ``temperature == 0``.
    ``key``: an ``mx.random.key`` (the same key, the same draw)."""
    if temperature == 0:
        return sample_with_uniform(logits, logits, temperature=0.0, top_k=top_k, top_p=top_p)
    u = mx.random.uniform(shape=logits.shape, key=key)
    return sample_with_uniform(logits, u, temperature=temperature, top_k=top_k, top_p=top_p)


def make_sampler(*, temperature: float, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 text_temperature: float | None = None):
    """A seeded ``sampler(logits (B, V), stream) -> (B,) int32`` for step-wise generation
    (``MoshiLM.step`` / ``generate``): each call draws with the next key of a chain started at
    ``seed``, so a run repeats exactly. ``text_temperature`` (default ``temperature``) applies
    to the ``"text"`` stream, as moshi's ``temp_text``."""
    check_sampling(temperature, top_k, top_p)
    t_text = temperature if text_temperature is None else text_temperature
    check_sampling(t_text, top_k, top_p)
    state = {"key": mx.random.key(seed)}

    def sampler(logits: mx.array, stream: str) -> mx.array:
        state["key"], key = mx.random.split(state["key"])
        t = t_text if stream == "text" else temperature
        return sample(logits, temperature=t, top_k=top_k, top_p=top_p, key=key)

    return sampler
