"""EMA codebook: nearest-code search, k-means initialisation, EMA updates, dead-code restart (MLX).

State (saved in checkpoints, never trained by gradient):

* ``embedding_sum (K, d)``: EMA of the sum of the vectors assigned to each code;
* ``cluster_usage (K,)``: EMA of how many vectors each code received per step;
* ``initialized (1,)``: 1.0 once the codebook holds real codes (moshi's ``_initialized``).

The codebook is ``embedding_sum / clamp(cluster_usage, min=epsilon)[:, None]``, exactly as in
moshi, so an official Mimi checkpoint folds bit-exactly. The three arrays are ordinary (public)
MLX arrays so that ``parameters()`` / ``save_weights`` carry them, and they are permanently
frozen: the module's frozen-key set always contains them, even after ``model.unfreeze()`` on a
parent, so ``trainable_parameters()`` (hence ``nn.value_and_grad`` and optimisers) never sees them.
They change only through the EMA updates of a training-mode call.

With ``laplace_smoothing`` the usage is smoothed in place after every EMA step
(``(u + eps) / (n + K eps) * n``, total kept), so the fold above stays the only formula.

Randomness (which batch rows seed k-means, refill empty clusters, restart dead codes) comes from
a numpy ``Generator`` seeded with ``seed``; only sizes go in, so MLX and torch_ref, seeded alike,
make the same choices. ``reset_state()`` reseeds it.

Distances are ``|c|^2 - 2 x.c`` (``|x|^2`` is constant per row). With ``cosine=True`` codes are
picked between L2-normalised inputs and codes, while the lookup and the EMA statistics use the
raw vectors (DAC's convention: the code returned is the stored vector).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.quantize.codes import histogram, sample_indices
from mlx_speech.specs.quantize import EMACodebookSpec

BUFFERS = ["embedding_sum", "cluster_usage", "initialized"]


def l2_normalize(x: mx.array, eps: float = 1e-12) -> mx.array:
    """``x / max(|x|, eps)`` along the last axis (torch ``F.normalize``)."""
    norm = mx.sqrt((x * x).sum(axis=-1, keepdims=True))
    return x / mx.maximum(norm, eps)


def nearest(x: mx.array, codebook: mx.array, *, cosine: bool) -> mx.array:
    """Index ``(N,)`` int32 of the nearest row of ``codebook (K, d)`` for each row of ``x (N, d)``."""
    if cosine:
        x, codebook = l2_normalize(x), l2_normalize(codebook)
    scores = mx.addmm((codebook * codebook).sum(axis=-1)[None, :], x, codebook.T, alpha=-2.0)
    return mx.argmin(scores, axis=-1).astype(mx.int32)


def cluster_sums(x: mx.array, codes: mx.array, size: int) -> tuple[mx.array, mx.array]:
    """Per-code counts ``(K,)`` and vector sums ``(K, d)`` of the rows of ``x`` by ``codes``."""
    sums = mx.zeros((size, x.shape[-1]), dtype=mx.float32).at[codes].add(x)
    return histogram(codes, size), sums


def kmeans(samples: mx.array, size: int, *, iters: int, rng: np.random.Generator,
           cosine: bool) -> tuple[mx.array, mx.array]:
    """Lloyd's k-means on ``samples (N, d)``: means ``(K, d)`` and counts ``(K,)`` (min 1).

    Starts from ``K`` sampled rows; an empty cluster takes a freshly sampled row.
    """
    n = samples.shape[0]
    means = samples[mx.array(sample_indices(rng, n, size))]
    counts = mx.ones((size,), dtype=mx.float32)
    for _ in range(iters):
        codes = nearest(samples, means, cosine=cosine)
        counts, sums = cluster_sums(samples, codes, size)
        resampled = samples[mx.array(sample_indices(rng, n, size))]
        empty = (counts == 0)[:, None]
        means = mx.where(empty, resampled, sums / mx.maximum(counts, 1.0)[:, None])
        counts = mx.maximum(counts, 1.0)
    return means, counts


class _AlwaysFrozen(set):
    """``Module._no_grad`` of an EMA codebook: ``nn.Module.trainable_parameters`` asks
    ``key in module._no_grad``, and the EMA statistics answer yes whatever ``freeze`` /
    ``unfreeze`` (which mutate this set in place, also when called on a parent) did."""

    def __contains__(self, key: object) -> bool:
        return key in BUFFERS or set.__contains__(self, key)


class EMACodebook(nn.Module):
    """``K`` codes of width ``d`` learnt by exponential moving averages (see module docstring).

    Args:
        size: number of codes ``K``.
        dim: code width ``d``.
        ema: decay / smoothing / initialisation / restart options.
        cosine: pick codes by cosine similarity instead of Euclidean distance.
        seed: seed of the sampling generator.
    """

    def __init__(self, *, size: int, dim: int, ema: EMACodebookSpec | None = None,
                 cosine: bool = False, seed: int = 0) -> None:
        super().__init__()
        if size < 2 or dim < 1:
            raise ValueError(f"EMACodebook: need size >= 2 and dim >= 1, got size={size}, dim={dim}")
        opts = ema if ema is not None else EMACodebookSpec()
        opts.validate()
        self.size = size
        self.dim = dim
        self.cosine = cosine
        self.decay = float(opts.decay)
        self.epsilon = float(opts.epsilon)
        self.laplace_smoothing = bool(opts.laplace_smoothing)
        self.kmeans_init = bool(opts.kmeans_init)
        self.kmeans_iters = int(opts.kmeans_iters)
        self.threshold_usage_ratio = float(opts.threshold_usage_ratio)
        self.replaced_usage_ratio = float(opts.replaced_usage_ratio)
        self.restart_every = int(opts.restart_every)
        self._seed = int(seed)
        if self.kmeans_init:
            self.embedding_sum = mx.zeros((size, dim), dtype=mx.float32)
            self.initialized = mx.zeros((1,), dtype=mx.float32)
        else:
            self.embedding_sum = mx.random.normal((size, dim)).astype(mx.float32)
            self.initialized = mx.ones((1,), dtype=mx.float32)
        self.cluster_usage = mx.ones((size,), dtype=mx.float32)
        self._no_grad = _AlwaysFrozen(BUFFERS)
        self.reset_state()

    def _extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, cosine={self.cosine}, decay={self.decay}"

    def reset_state(self) -> None:
        """Reseed the sampling generator and restart the dead-code step counter."""
        self._rng = np.random.default_rng(self._seed)
        self._steps = 0

    # -- reading ----------------------------------------------------------------------------
    @property
    def codebook(self) -> mx.array:
        """The codes ``(K, d)``: ``embedding_sum / clamp(cluster_usage, epsilon)``."""
        return self.embedding_sum / mx.maximum(self.cluster_usage, self.epsilon)[:, None]

    def is_initialized(self) -> bool:
        return bool(self.initialized.item() > 0)

    def encode(self, x: mx.array) -> mx.array:
        """Nearest codes ``(N,)`` int32 of ``x (N, d)``."""
        return nearest(x.astype(mx.float32), self.codebook, cosine=self.cosine)

    def decode(self, codes: mx.array) -> mx.array:
        """Code vectors ``(..., d)`` float32 of int ``codes (...)``."""
        return mx.take(self.codebook, codes, axis=0)

    def usage_fraction(self) -> float:
        """Fraction of codes whose EMA usage is at or above the dead-code threshold."""
        n = self.cluster_usage.sum()
        alive = self.cluster_usage >= self.threshold_usage_ratio * n / self.size
        return float(alive.astype(mx.float32).mean().item())

    # -- training ---------------------------------------------------------------------------
    def initialize(self, x: mx.array) -> None:
        """k-means on the batch ``x (N, d)`` (float32, no gradient); marks the codebook ready."""
        means, counts = kmeans(x, self.size, iters=self.kmeans_iters, rng=self._rng,
                               cosine=self.cosine)
        self.embedding_sum = means * counts[:, None]
        self.cluster_usage = counts
        self.initialized = mx.ones((1,), dtype=mx.float32)

    def ema_update(self, x: mx.array, codes: mx.array) -> mx.array:
        """One EMA step with the batch ``x (N, d)`` assigned to ``codes (N,)``, then the
        dead-code check; returns the fraction of codes restarted (0 between checks)."""
        counts, sums = cluster_sums(x, codes, self.size)
        d = self.decay
        usage = d * self.cluster_usage + (1.0 - d) * counts
        if self.laplace_smoothing:
            n = usage.sum()
            usage = (usage + self.epsilon) / (n + self.size * self.epsilon) * n
        self.cluster_usage = usage
        self.embedding_sum = d * self.embedding_sum + (1.0 - d) * sums
        self._steps += 1
        if self.threshold_usage_ratio <= 0 or self._steps % self.restart_every:
            return mx.array(0.0)
        return self._restart_dead(x)

    def _restart_dead(self, x: mx.array) -> mx.array:
        # Dead = EMA usage below a fraction of the uniform share; each dead code restarts at a
        # random batch vector with a usage that protects it from an immediate second restart.
        n = self.cluster_usage.sum()
        dead = self.cluster_usage < self.threshold_usage_ratio * n / self.size
        fresh = x[mx.array(sample_indices(self._rng, x.shape[0], self.size))]
        usage = self.replaced_usage_ratio * n / self.size
        self.embedding_sum = mx.where(dead[:, None], usage * fresh, self.embedding_sum)
        self.cluster_usage = mx.where(dead, usage, self.cluster_usage)
        return dead.astype(mx.float32).mean()
