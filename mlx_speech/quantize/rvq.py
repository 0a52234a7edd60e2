"""Residual vector quantization: ``ResidualVQ`` and Mimi's ``SplitResidualVQ`` (MLX).

``x (B, F, D)`` -> [``in_proj`` D -> d] -> level 0 quantizes the input, level ``i`` quantizes
what levels ``< i`` left over -> sum -> [``out_proj`` d -> D]; codes ``(B, K, F)`` int32.

* Inference with fewer levels: ``num_levels`` (a prefix of the levels) in ``__call__`` /
  ``encode``; ``decode`` accepts any prefix ``(B, K', F)``.
* Quantizer dropout (training, DAC style): with probability ``quantizer_dropout`` a batch item
  keeps only the first ``n ~ U{1..K}`` levels of the sum (and of the commitment loss); every
  level still sees the full residual chain, so every codebook keeps learning.
* k-means initialisation (moshi's rule): level ``i`` may initialise only if level ``i - 1`` was
  already initialised before this call, so no level runs k-means on the near-zero residual that
  a same-batch k-means above it leaves behind. Level ``i`` is ready after ``i + 1`` steps.
* Each level passes the gradient straight through; the residual chain is not detached, so with
  per-level projections the gradient reaches every projection, and without them the total
  output's gradient w.r.t. the input is the identity.

``SplitResidualVQ`` (Mimi): ``rvq_first`` (the semantic level) and ``rvq_rest`` (the acoustic
levels) are two ``ResidualVQ`` that each project ``D -> d`` and back, both fed the same ``x``;
their outputs are added and their codes concatenated. Names mirror moshi's
``SplitResidualVectorQuantizer`` (``rvq_first`` / ``rvq_rest``; our ``in_proj`` / ``out_proj``
are its 1x1 ``input_proj`` / ``output_proj`` convolutions). The commitment loss is the
level-count-weighted mean of both groups' (moshi's renormalisation); quantizer dropout applies
to the rest group only.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.quantize.codes import (check_codes, check_latents, check_num_levels,
                                       dropout_levels)
from mlx_speech.quantize.vq import VectorQuantizer
from mlx_speech.specs.quantize import EMACodebookSpec, RVQSpec, SplitRVQSpec


class RVQOutput(NamedTuple):
    quantized: mx.array  # (B, F, D)
    codes: mx.array  # (B, K, F) int32
    commit_loss: mx.array  # scalar, weighted mean over the levels used
    level_losses: mx.array  # (K,) unweighted per-level commitment losses
    levels: list[mx.array]  # per-level quantized (B, F, d) in the inner space, dropout applied
    metrics: dict[str, mx.array]  # perplexity / usage / expired, each (K,)


class ResidualVQ(nn.Module):
    """Residual VQ of ``(B, F, dim)`` latents; ``codebook_sizes[i]`` codes at level ``i``.

    Args:
        dim: latent width ``D``.
        codebook_sizes: codes per level, e.g. ``[2048] + [1024] * 7``.
        rvq_dim: inner width ``d``; None means ``D``.
        force_projection: keep ``in_proj`` / ``out_proj`` even when ``d == D`` (Mimi).
        proj_bias: biases of the outer projections (Mimi: no).
        codebook_dim: per-level factorised code width (DAC: 8); None means ``d``.
        l2_normalize: per-level cosine code choice (DAC).
        commitment_weight: factor of the mean commitment loss.
        quantizer_dropout: probability of truncating an item's sum during training.
        ema: EMA codebook options of every level.
        seed: dropout generator seed; level ``i`` codebook uses ``seed + 1 + i``.
    """

    def __init__(self, *, dim: int, codebook_sizes: list[int], rvq_dim: int | None = None,
                 force_projection: bool = False, proj_bias: bool = False,
                 codebook_dim: int | None = None, l2_normalize: bool = False,
                 commitment_weight: float = 1.0, quantizer_dropout: float = 0.0,
                 ema: EMACodebookSpec | None = None, seed: int = 0) -> None:
        super().__init__()
        if not codebook_sizes:
            raise ValueError("ResidualVQ: codebook_sizes must name at least one level")
        self.dim = dim
        self.rvq_dim = rvq_dim or dim
        self._codebook_sizes = [int(s) for s in codebook_sizes]
        self.commitment_weight = float(commitment_weight)
        self.quantizer_dropout = float(quantizer_dropout)
        self._seed = int(seed)
        if self.rvq_dim != dim or force_projection:
            self.in_proj = nn.Linear(dim, self.rvq_dim, bias=proj_bias)
            self.out_proj = nn.Linear(self.rvq_dim, dim, bias=proj_bias)
        self.levels = [
            VectorQuantizer(dim=self.rvq_dim, codebook_size=s, codebook_dim=codebook_dim,
                            l2_normalize=l2_normalize, ema=ema, seed=seed + 1 + i)
            for i, s in enumerate(self._codebook_sizes)]
        self.reset_state()

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, rvq_dim={self.rvq_dim}, codebook_sizes={self.codebook_sizes}"

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._codebook_sizes)

    @property
    def num_codebooks(self) -> int:
        return len(self.levels)

    def project_in(self, x: mx.array) -> mx.array:
        return self.in_proj(x) if "in_proj" in self else x

    def project_out(self, z: mx.array) -> mx.array:
        return self.out_proj(z) if "out_proj" in self else z

    def reset_state(self) -> None:
        """Reseed the dropout generator and every level's sampling generator."""
        self._rng = np.random.default_rng(self._seed)
        for level in self.levels:
            level.reset_state()

    def __call__(self, x: mx.array, *, num_levels: int | None = None) -> RVQOutput:
        """Quantize ``x (B, F, D)`` with the first ``num_levels`` levels (None: all)."""
        check_latents(x, self.dim, "ResidualVQ")
        n = check_num_levels(num_levels, self.num_codebooks, "ResidualVQ")
        z = self.project_in(x)
        mask = None
        if self.training and self.quantizer_dropout > 0 and n > 1:
            mask = mx.array(dropout_levels(self._rng, x.shape[0], n, self.quantizer_dropout))
        ready = [lv.codebook.is_initialized() for lv in self.levels[:n]] if self.training else []
        residual, total = z, None
        codes, losses, levels = [], [], []
        metrics: dict[str, list[mx.array]] = {}
        for i, level in enumerate(self.levels[:n]):
            item_mask = None if mask is None else mask[:, i]
            out = level(residual, sample_mask=item_mask,
                        initialize=(not self.training) or i == 0 or ready[i - 1])
            residual = residual - out.quantized
            q = out.quantized if item_mask is None else out.quantized * item_mask[:, None, None]
            total = q if total is None else total + q
            codes.append(out.codes)
            losses.append(out.commit_loss)
            levels.append(q)
            for k, v in out.metrics.items():
                metrics.setdefault(k, []).append(v)
        level_losses = mx.stack(losses)
        return RVQOutput(quantized=self.project_out(total), codes=mx.stack(codes, axis=1),
                         commit_loss=level_losses.mean() * self.commitment_weight,
                         level_losses=level_losses, levels=levels,
                         metrics={k: mx.stack(v) for k, v in metrics.items()})

    def encode(self, x: mx.array, *, num_levels: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``; ``K = num_levels`` (None: all)."""
        check_latents(x, self.dim, "ResidualVQ.encode")
        n = check_num_levels(num_levels, self.num_codebooks, "ResidualVQ.encode")
        residual = self.project_in(x)
        codes = []
        for level in self.levels[:n]:
            c = level.encode(residual)
            residual = residual - level.project_out(level.codebook.decode(c).astype(residual.dtype))
            codes.append(c)
        return mx.stack(codes, axis=1)

    def decode(self, codes: mx.array) -> mx.array:
        """Latents ``(B, F, D)`` float32 of codes ``(B, K', F)``, any prefix ``K' <= K``."""
        codes = check_codes(codes, self.codebook_sizes, "ResidualVQ.decode")
        total = None
        for i in range(codes.shape[1]):
            level = self.levels[i]
            q = level.project_out(level.codebook.decode(codes[:, i]))
            total = q if total is None else total + q
        return self.project_out(total)


def build_residual_vq(spec: RVQSpec) -> ResidualVQ:
    return ResidualVQ(dim=spec.dim, codebook_sizes=spec.codebook_sizes, rvq_dim=spec.rvq_dim,
                      force_projection=spec.force_projection, proj_bias=spec.proj_bias,
                      codebook_dim=spec.codebook_dim, l2_normalize=spec.l2_normalize,
                      commitment_weight=spec.commitment_weight,
                      quantizer_dropout=spec.quantizer_dropout, ema=spec.ema, seed=spec.seed)


# --- Mimi's split residual VQ --------------------------------------------------------------
REST_SEED_OFFSET = 1000  # rvq_rest's seed offset from rvq_first's


class SplitResidualVQ(nn.Module):
    """Split RVQ of ``(B, F, dim)`` latents (see module docstring).

    Args:
        dim: latent width ``D`` (Mimi: 512).
        rvq_dim: inner width of both groups (Mimi: 256).
        first_sizes: codebook sizes of the first group (Mimi: ``[2048]``).
        rest_sizes: codebook sizes of the rest group (Mimi: ``[2048] * 7`` .. ``* 31``).
        proj_bias: biases of the group projections (Mimi: no).
        commitment_weight: factor of the commitment loss.
        quantizer_dropout: dropout probability of the rest group.
        ema: EMA codebook options of every level.
        seed: the first group's seed; the rest group uses ``seed + 1000``.
    """

    def __init__(self, *, dim: int, rvq_dim: int, first_sizes: list[int], rest_sizes: list[int],
                 proj_bias: bool = False, commitment_weight: float = 1.0,
                 quantizer_dropout: float = 0.0, ema: EMACodebookSpec | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.rvq_first = ResidualVQ(dim=dim, codebook_sizes=first_sizes, rvq_dim=rvq_dim,
                                    force_projection=True, proj_bias=proj_bias,
                                    commitment_weight=commitment_weight, ema=ema, seed=seed)
        self.rvq_rest = ResidualVQ(dim=dim, codebook_sizes=rest_sizes, rvq_dim=rvq_dim,
                                   force_projection=True, proj_bias=proj_bias,
                                   commitment_weight=commitment_weight,
                                   quantizer_dropout=quantizer_dropout, ema=ema,
                                   seed=seed + REST_SEED_OFFSET)

    @property
    def codebook_sizes(self) -> list[int]:
        return self.rvq_first.codebook_sizes + self.rvq_rest.codebook_sizes

    @property
    def num_codebooks(self) -> int:
        return self.rvq_first.num_codebooks + self.rvq_rest.num_codebooks

    def reset_state(self) -> None:
        self.rvq_first.reset_state()
        self.rvq_rest.reset_state()

    def _split(self, n: int) -> tuple[int, int]:
        n_first = min(n, self.rvq_first.num_codebooks)
        return n_first, n - n_first

    def __call__(self, x: mx.array, *, num_levels: int | None = None) -> RVQOutput:
        """Quantize ``x (B, F, D)`` with the first ``num_levels`` codebooks (None: all)."""
        check_latents(x, self.dim, "SplitResidualVQ")
        n_first, n_rest = self._split(check_num_levels(num_levels, self.num_codebooks,
                                                       "SplitResidualVQ"))
        first = self.rvq_first(x, num_levels=n_first)
        if n_rest == 0:
            return first
        rest = self.rvq_rest(x, num_levels=n_rest)
        n_rest_used = rest.codes.shape[1]
        commit = (first.commit_loss * n_first + rest.commit_loss * n_rest_used) / (n_first + n_rest_used)
        return RVQOutput(
            quantized=first.quantized + rest.quantized,
            codes=mx.concatenate([first.codes, rest.codes], axis=1),
            commit_loss=commit,
            level_losses=mx.concatenate([first.level_losses, rest.level_losses]),
            levels=first.levels + rest.levels,
            metrics={k: mx.concatenate([v, rest.metrics[k]]) for k, v in first.metrics.items()})

    def encode(self, x: mx.array, *, num_levels: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``."""
        check_latents(x, self.dim, "SplitResidualVQ.encode")
        n_first, n_rest = self._split(check_num_levels(num_levels, self.num_codebooks,
                                                       "SplitResidualVQ.encode"))
        codes = self.rvq_first.encode(x, num_levels=n_first)
        if n_rest:
            codes = mx.concatenate([codes, self.rvq_rest.encode(x, num_levels=n_rest)], axis=1)
        return codes

    def decode(self, codes: mx.array) -> mx.array:
        """Latents ``(B, F, D)`` of codes ``(B, K', F)``, any prefix ``K' <= K``."""
        codes = check_codes(codes, self.codebook_sizes, "SplitResidualVQ.decode")
        n_first = self.rvq_first.num_codebooks
        out = self.rvq_first.decode(codes[:, :n_first])
        if codes.shape[1] > n_first:
            out = out + self.rvq_rest.decode(codes[:, n_first:])
        return out


def build_split_residual_vq(spec: SplitRVQSpec) -> SplitResidualVQ:
    return SplitResidualVQ(dim=spec.dim, rvq_dim=spec.rvq_dim, first_sizes=spec.first_sizes,
                           rest_sizes=spec.rest_sizes, proj_bias=spec.proj_bias,
                           commitment_weight=spec.commitment_weight,
                           quantizer_dropout=spec.quantizer_dropout, ema=spec.ema, seed=spec.seed)
