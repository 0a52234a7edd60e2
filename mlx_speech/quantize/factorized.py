"""DAC's factorised residual VQ with gradient-learnt codebooks (MLX).

One level (``FactorizedVQ``; Descript's ``VectorQuantize``)::

    x (B, F, D) -> in_proj (1x1 conv, weight norm) -> z_e (B, F, d)
      -> code = argmax cosine(z_e, codebook)         (both L2-normalised for the choice only)
      -> z_q = codebook[code] (the stored vector)     -> straight-through -> out_proj -> (B, F, D)

Unlike :class:`~mlx_speech.quantize.vq.VectorQuantizer` (EMA codebook, k-means start), the
codebook here is an ordinary embedding trained by gradient: the ``codebook`` loss
``mean((z_q - stopgrad(z_e))^2)`` moves the codes, the ``commitment`` loss
``mean((z_e - stopgrad(z_q))^2)`` the encoder. Names equal Descript's
(``quantizers.{i}.in_proj``, ``.out_proj``, ``.codebook.weight``), so official checkpoints
map by renaming weight-norm parameters only.

``FactorizedRVQ`` (Descript's ``ResidualVectorQuantize``) chains the levels on the residual and
sums their outputs. Losses follow Descript exactly: per level, the per-item loss times the
item's dropout mask, averaged over the batch (dropped items count as zeros), then summed over
the levels. Quantizer dropout keeps the first ``n ~ U{1..K}`` levels of an item with
probability ``quantizer_dropout``; the draws come from a numpy generator
(:func:`~mlx_speech.utils.sampling.dropout_levels`) so MLX and torch_ref drop alike (Descript
drops the first ``round(B * p)`` items of a batch instead; the expectation is the same).
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.layers.conv import Conv1d
from mlx_speech.quantize.codebook import nearest
from mlx_speech.quantize.codes import (check_codes, check_latents, check_num_levels,
                                       dropout_levels, histogram, usage_stats)


class FactorizedOutput(NamedTuple):
    quantized: mx.array  # (B, F, D), dropout applied
    codes: mx.array  # (B, K, F) int32
    latents: mx.array  # (B, F, K * d): every level's projected input z_e
    commitment_loss: mx.array  # scalar, summed over levels
    codebook_loss: mx.array  # scalar, summed over levels
    metrics: dict[str, mx.array]  # perplexity / usage per level, each (K,)
    first: mx.array  # (B, F, D) level 0's output (never dropped)


class FactorizedVQ(nn.Module):
    """One DAC level: ``dim`` -> ``codebook_dim`` codes of ``codebook_size`` -> ``dim``."""

    def __init__(self, *, dim: int, codebook_size: int, codebook_dim: int,
                 weight_norm: bool = True) -> None:
        super().__init__()
        self.dim, self.codebook_size, self.codebook_dim = dim, codebook_size, codebook_dim
        self.in_proj = Conv1d(in_channels=dim, out_channels=codebook_dim, kernel_size=1,
                              weight_norm=weight_norm)
        self.out_proj = Conv1d(in_channels=codebook_dim, out_channels=dim, kernel_size=1,
                               weight_norm=weight_norm)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}"

    def choose(self, z_e: mx.array) -> mx.array:
        """Codes ``(B, F)`` of projected latents ``z_e (B, F, d)`` (cosine, no gradient)."""
        b, f, d = z_e.shape
        flat = mx.stop_gradient(z_e).astype(mx.float32).reshape(b * f, d)
        cb = mx.stop_gradient(self.codebook.weight).astype(mx.float32)
        return mx.stop_gradient(nearest(flat, cb, cosine=True)).reshape(b, f)

    def lookup(self, codes: mx.array) -> mx.array:
        """``out_proj(codebook[codes])``: ``(B, F)`` -> ``(B, F, dim)``."""
        return self.out_proj(self.codebook(codes))

    def __call__(self, x: mx.array) -> tuple[mx.array, mx.array, mx.array, mx.array, mx.array]:
        """``(out (B, F, D), codes (B, F), z_e (B, F, d), commitment (B,), codebook (B,))``."""
        z_e = self.in_proj(x)
        codes = self.choose(z_e)
        z_q = self.codebook(codes)
        commitment = mx.square(z_e - mx.stop_gradient(z_q)).mean(axis=(1, 2))
        codebook = mx.square(z_q - mx.stop_gradient(z_e)).mean(axis=(1, 2))
        z_q = z_e + mx.stop_gradient(z_q - z_e)  # straight-through
        return self.out_proj(z_q), codes, z_e, commitment, codebook


class FactorizedRVQ(nn.Module):
    """Residual stack of :class:`FactorizedVQ` levels (``quantizers.i``) on ``(B, F, dim)``.

    Args:
        dim: latent width ``D``.
        codebook_sizes: codes per level, e.g. ``[2048] + [1024] * 7``.
        codebook_dim: width ``d`` of every level's codes (DAC: 8).
        quantizer_dropout: probability that a training item keeps only a prefix of levels.
        weight_norm: weight-normed projections (Descript's form).
        seed: seed of the dropout generator (``reset_state`` reseeds it).
    """

    def __init__(self, *, dim: int, codebook_sizes: list[int], codebook_dim: int = 8,
                 quantizer_dropout: float = 0.0, weight_norm: bool = True,
                 seed: int = 0) -> None:
        super().__init__()
        if not codebook_sizes:
            raise ValueError("FactorizedRVQ: codebook_sizes must name at least one level")
        self.dim = dim
        self._codebook_sizes = [int(s) for s in codebook_sizes]
        self.quantizer_dropout = float(quantizer_dropout)
        self._seed = int(seed)
        self.quantizers = [FactorizedVQ(dim=dim, codebook_size=s, codebook_dim=codebook_dim,
                                        weight_norm=weight_norm) for s in self._codebook_sizes]
        self.reset_state()

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._codebook_sizes)

    @property
    def num_codebooks(self) -> int:
        return len(self.quantizers)

    def reset_state(self) -> None:
        """Reseed the quantizer-dropout generator."""
        self._rng = np.random.default_rng(self._seed)

    def dropout_mask(self, batch: int, n: int) -> mx.array | None:
        """The ``(B, n)`` keep mask of this training call, or None (eval, or no dropout)."""
        if not self.training or self.quantizer_dropout <= 0 or n < 2:
            return None
        return mx.array(dropout_levels(self._rng, batch, n, self.quantizer_dropout))

    def __call__(self, x: mx.array, *, num_levels: int | None = None,
                 mask: mx.array | None = None) -> FactorizedOutput:
        """Quantize ``x (B, F, D)`` with the first ``num_levels`` levels (None: all).

        ``mask (B, n)`` overrides this call's dropout draw (tests, parity runs).
        """
        check_latents(x, self.dim, "FactorizedRVQ")
        n = check_num_levels(num_levels, self.num_codebooks, "FactorizedRVQ")
        if mask is None:
            mask = self.dropout_mask(x.shape[0], n)
        residual, total = x, None
        commitment = codebook = mx.array(0.0)
        codes, latents, usage, perplexity = [], [], [], []
        first = None
        for i, level in enumerate(self.quantizers[:n]):
            out, c, z_e, commit_i, cb_i = level(residual)
            residual = residual - out
            first = out if first is None else first
            if mask is not None:
                keep = mask[:, i]
                out = out * keep[:, None, None]
                commit_i, cb_i = commit_i * keep, cb_i * keep
            total = out if total is None else total + out
            commitment = commitment + commit_i.mean()
            codebook = codebook + cb_i.mean()
            codes.append(c)
            latents.append(z_e)
            stats = usage_stats(histogram(c, level.codebook_size))
            usage.append(stats["usage"])
            perplexity.append(stats["perplexity"])
        return FactorizedOutput(
            quantized=total, codes=mx.stack(codes, axis=1),
            latents=mx.concatenate(latents, axis=-1), commitment_loss=commitment,
            codebook_loss=codebook,
            metrics={"usage": mx.stack(usage), "perplexity": mx.stack(perplexity)}, first=first)

    def encode(self, x: mx.array, *, num_levels: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``; ``K = num_levels`` (None: all)."""
        check_latents(x, self.dim, "FactorizedRVQ.encode")
        n = check_num_levels(num_levels, self.num_codebooks, "FactorizedRVQ.encode")
        residual, codes = x, []
        for level in self.quantizers[:n]:
            c = level.choose(level.in_proj(residual))
            codes.append(c)
            if len(codes) < n:
                residual = residual - level.lookup(c)
        return mx.stack(codes, axis=1)

    def decode(self, codes: mx.array) -> mx.array:
        """Latents ``(B, F, D)`` float32 of codes ``(B, K', F)``, any prefix ``K' <= K``."""
        codes = check_codes(codes, self.codebook_sizes, "FactorizedRVQ.decode")
        total = None
        for i in range(codes.shape[1]):
            q = self.quantizers[i].lookup(codes[:, i])
            total = q if total is None else total + q
        return total
