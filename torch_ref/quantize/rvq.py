"""Residual vector quantization: ``ResidualVQ`` and Mimi's ``SplitResidualVQ``
(torch mirror of ``mlx_speech/quantize/rvq.py``; same names, arguments and semantics).

Level ``i`` quantizes what levels ``< i`` left over; ``num_levels`` picks a prefix of levels;
quantizer dropout truncates an item's sum during training; level ``i`` may run its k-means
initialisation only if level ``i - 1`` was initialised before this call (moshi's rule).
``SplitResidualVQ``: ``rvq_first`` and ``rvq_rest`` both quantize ``x``; outputs are summed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mlx_speech.specs.quantize import EMACodebookSpec, RVQSpec, SplitRVQSpec
from torch_ref.quantize.codes import check_codes, check_latents, check_num_levels, dropout_levels
from torch_ref.quantize.vq import VectorQuantizer


class RVQOutput(NamedTuple):
    quantized: torch.Tensor  # (B, F, D)
    codes: torch.Tensor  # (B, K, F) int32
    commit_loss: torch.Tensor  # scalar, weighted mean over the levels used
    level_losses: torch.Tensor  # (K,) unweighted per-level commitment losses
    levels: list[torch.Tensor]  # per-level quantized (B, F, d), dropout applied
    metrics: dict[str, torch.Tensor]  # perplexity / usage / expired, each (K,)


class ResidualVQ(nn.Module):
    """Residual VQ of ``(B, F, dim)`` latents; see the MLX twin for the arguments."""

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
        projected = self.rvq_dim != dim or force_projection
        self.in_proj = nn.Linear(dim, self.rvq_dim, bias=proj_bias) if projected else None
        self.out_proj = nn.Linear(self.rvq_dim, dim, bias=proj_bias) if projected else None
        self.levels = nn.ModuleList([
            VectorQuantizer(dim=self.rvq_dim, codebook_size=s, codebook_dim=codebook_dim,
                            l2_normalize=l2_normalize, ema=ema, seed=seed + 1 + i)
            for i, s in enumerate(self._codebook_sizes)])
        self.reset_state()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rvq_dim={self.rvq_dim}, codebook_sizes={self.codebook_sizes}"

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._codebook_sizes)

    @property
    def num_codebooks(self) -> int:
        return len(self.levels)

    def project_in(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_proj(x) if self.in_proj is not None else x

    def project_out(self, z: torch.Tensor) -> torch.Tensor:
        return self.out_proj(z) if self.out_proj is not None else z

    def reset_state(self) -> None:
        """Reseed the dropout generator and every level's sampling generator."""
        self._rng = np.random.default_rng(self._seed)
        for level in self.levels:
            level.reset_state()

    def forward(self, x: torch.Tensor, *, num_levels: int | None = None) -> RVQOutput:
        """Quantize ``x (B, F, D)`` with the first ``num_levels`` levels (None: all)."""
        check_latents(x, self.dim, "ResidualVQ")
        n = check_num_levels(num_levels, self.num_codebooks, "ResidualVQ")
        z = self.project_in(x)
        mask = None
        if self.training and self.quantizer_dropout > 0 and n > 1:
            mask = torch.from_numpy(dropout_levels(self._rng, x.shape[0], n,
                                                   self.quantizer_dropout)).to(x.device)
        levels_used = list(self.levels)[:n]
        ready = [lv.codebook.is_initialized() for lv in levels_used] if self.training else []
        residual, total = z, None
        codes, losses, levels = [], [], []
        metrics: dict[str, list[torch.Tensor]] = {}
        for i, level in enumerate(levels_used):
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
        level_losses = torch.stack(losses)
        return RVQOutput(quantized=self.project_out(total), codes=torch.stack(codes, dim=1),
                         commit_loss=level_losses.mean() * self.commitment_weight,
                         level_losses=level_losses, levels=levels,
                         metrics={k: torch.stack(v) for k, v in metrics.items()})

    def encode(self, x: torch.Tensor, *, num_levels: int | None = None) -> torch.Tensor:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``; ``K = num_levels`` (None: all)."""
        check_latents(x, self.dim, "ResidualVQ.encode")
        n = check_num_levels(num_levels, self.num_codebooks, "ResidualVQ.encode")
        residual = self.project_in(x)
        codes = []
        for level in list(self.levels)[:n]:
            c = level.encode(residual)
            residual = residual - level.project_out(level.codebook.decode(c).to(residual.dtype))
            codes.append(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
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
    """Split RVQ of ``(B, F, dim)`` latents; see the MLX twin for the arguments."""

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

    def forward(self, x: torch.Tensor, *, num_levels: int | None = None) -> RVQOutput:
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
            codes=torch.cat([first.codes, rest.codes], dim=1),
            commit_loss=commit,
            level_losses=torch.cat([first.level_losses, rest.level_losses]),
            levels=first.levels + rest.levels,
            metrics={k: torch.cat([v, rest.metrics[k]]) for k, v in first.metrics.items()})

    def encode(self, x: torch.Tensor, *, num_levels: int | None = None) -> torch.Tensor:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``."""
        check_latents(x, self.dim, "SplitResidualVQ.encode")
        n_first, n_rest = self._split(check_num_levels(num_levels, self.num_codebooks,
                                                       "SplitResidualVQ.encode"))
        codes = self.rvq_first.encode(x, num_levels=n_first)
        if n_rest:
            codes = torch.cat([codes, self.rvq_rest.encode(x, num_levels=n_rest)], dim=1)
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
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
