"""EMA codebook: nearest-code search, k-means initialisation, EMA updates, dead-code restart
(torch mirror of ``mlx_speech/quantize/codebook.py``).

Buffers (in the state dict, never trained): ``embedding_sum (K, d)``, ``cluster_usage (K,)``,
``initialized (1,)``. The codebook is ``embedding_sum / clamp(cluster_usage, min=epsilon)[:, None]``
(moshi's fold). With ``laplace_smoothing`` the usage is smoothed in place after every EMA step
(``(u + eps) / (n + K eps) * n``, total kept), so the fold above stays the only formula.

Randomness comes from a numpy ``Generator`` seeded with ``seed`` and is asked only
for indices given sizes, so MLX and torch_ref make the same choices. ``reset_state()`` reseeds.
Distances are ``|c|^2 - 2 x.c``; ``cosine=True`` picks codes between L2-normalised vectors while
lookup and statistics use the raw ones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlx_speech.specs.quantize import EMACodebookSpec
from torch_ref.quantize.codes import histogram, sample_indices

BUFFERS = ["embedding_sum", "cluster_usage", "initialized"]


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``x / max(|x|, eps)`` along the last axis."""
    norm = torch.sqrt((x * x).sum(dim=-1, keepdim=True))
    return x / norm.clamp(min=eps)


def nearest(x: torch.Tensor, codebook: torch.Tensor, *, cosine: bool) -> torch.Tensor:
    """Index ``(N,)`` int32 of the nearest row of ``codebook (K, d)`` for each row of ``x (N, d)``."""
    if cosine:
        x, codebook = l2_normalize(x), l2_normalize(codebook)
    scores = torch.addmm((codebook * codebook).sum(dim=-1)[None, :], x, codebook.T, alpha=-2.0)
    return scores.argmin(dim=-1).to(torch.int32)


def cluster_sums(x: torch.Tensor, codes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-code counts ``(K,)`` and vector sums ``(K, d)`` of the rows of ``x`` by ``codes``."""
    sums = torch.zeros(size, x.shape[-1], dtype=torch.float32, device=x.device)
    sums.index_add_(0, codes.long(), x)
    return histogram(codes, size), sums


def _rows(x: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    return x[torch.from_numpy(idx).to(x.device)]


def kmeans(samples: torch.Tensor, size: int, *, iters: int, rng: np.random.Generator,
           cosine: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on ``samples (N, d)``: means ``(K, d)`` and counts ``(K,)`` (min 1)."""
    n = samples.shape[0]
    means = _rows(samples, sample_indices(rng, n, size))
    counts = torch.ones(size, dtype=torch.float32, device=samples.device)
    for _ in range(iters):
        codes = nearest(samples, means, cosine=cosine)
        counts, sums = cluster_sums(samples, codes, size)
        resampled = _rows(samples, sample_indices(rng, n, size))
        empty = (counts == 0)[:, None]
        means = torch.where(empty, resampled, sums / counts.clamp(min=1.0)[:, None])
        counts = counts.clamp(min=1.0)
    return means, counts


class EMACodebook(nn.Module):
    """``K`` codes of width ``d`` learnt by exponential moving averages (see module docstring)."""

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
        self.embedding_sum: torch.Tensor
        self.cluster_usage: torch.Tensor
        self.initialized: torch.Tensor
        if self.kmeans_init:
            self.register_buffer("embedding_sum", torch.zeros(size, dim))
            self.register_buffer("initialized", torch.zeros(1))
        else:
            self.register_buffer("embedding_sum", torch.randn(size, dim))
            self.register_buffer("initialized", torch.ones(1))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.reset_state()

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, cosine={self.cosine}, decay={self.decay}"

    def reset_state(self) -> None:
        """Reseed the sampling generator and restart the dead-code step counter."""
        self._rng = np.random.default_rng(self._seed)
        self._steps = 0

    # -- reading ----------------------------------------------------------------------------
    @property
    def codebook(self) -> torch.Tensor:
        """The codes ``(K, d)``: ``embedding_sum / clamp(cluster_usage, epsilon)``."""
        return self.embedding_sum / self.cluster_usage.clamp(min=self.epsilon)[:, None]

    def is_initialized(self) -> bool:
        return bool(self.initialized.item() > 0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest codes ``(N,)`` int32 of ``x (N, d)``."""
        return nearest(x.float(), self.codebook, cosine=self.cosine)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors ``(..., d)`` float32 of int ``codes (...)``."""
        return self.codebook[codes.long()]

    def usage_fraction(self) -> float:
        """Fraction of codes whose EMA usage is at or above the dead-code threshold."""
        n = self.cluster_usage.sum()
        alive = self.cluster_usage >= self.threshold_usage_ratio * n / self.size
        return float(alive.float().mean().item())

    # -- training ---------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """k-means on the batch ``x (N, d)``; marks the codebook ready."""
        means, counts = kmeans(x, self.size, iters=self.kmeans_iters, rng=self._rng,
                               cosine=self.cosine)
        self.embedding_sum.copy_(means * counts[:, None])
        self.cluster_usage.copy_(counts)
        self.initialized.fill_(1.0)

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """One EMA step with ``x (N, d)`` assigned to ``codes (N,)``, then the dead-code check;
        returns the fraction of codes restarted (0 between checks)."""
        counts, sums = cluster_sums(x, codes, self.size)
        d = self.decay
        usage = d * self.cluster_usage + (1.0 - d) * counts
        if self.laplace_smoothing:
            n = usage.sum()
            usage = (usage + self.epsilon) / (n + self.size * self.epsilon) * n
        self.cluster_usage.copy_(usage)
        self.embedding_sum.copy_(d * self.embedding_sum + (1.0 - d) * sums)
        self._steps += 1
        if self.threshold_usage_ratio <= 0 or self._steps % self.restart_every:
            return torch.zeros((), device=x.device)
        return self._restart_dead(x)

    def _restart_dead(self, x: torch.Tensor) -> torch.Tensor:
        n = self.cluster_usage.sum()
        dead = self.cluster_usage < self.threshold_usage_ratio * n / self.size
        fresh = _rows(x, sample_indices(self._rng, x.shape[0], self.size))
        usage = self.replaced_usage_ratio * n / self.size
        self.embedding_sum.copy_(torch.where(dead[:, None], usage * fresh, self.embedding_sum))
        self.cluster_usage.copy_(torch.where(dead, usage, self.cluster_usage))
        return dead.float().mean()
