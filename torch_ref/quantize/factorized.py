"""DAC's factorised residual VQ with gradient-learnt codebooks (torch mirror of
``mlx_speech/quantize/factorized.py``: same names, arguments, losses and dropout draws).

Latents are ``(B, F, D)`` as on the MLX side; the 1x1 projections run as torch_ref
``Conv1d`` on the channels-first view.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from torch_ref.layers.conv import Conv1d
from torch_ref.quantize.codebook import nearest
from torch_ref.quantize.codes import (check_codes, check_latents, check_num_levels,
                                      dropout_levels, histogram, usage_stats)


class FactorizedOutput(NamedTuple):
    quantized: torch.Tensor  # (B, F, D), dropout applied
    codes: torch.Tensor  # (B, K, F) int32
    latents: torch.Tensor  # (B, F, K * d)
    commitment_loss: torch.Tensor  # scalar, summed over levels
    codebook_loss: torch.Tensor  # scalar, summed over levels
    metrics: dict[str, torch.Tensor]  # perplexity / usage per level, each (K,)
    first: torch.Tensor  # (B, F, D) level 0's output (never dropped)


def _proj(conv: Conv1d, x: torch.Tensor) -> torch.Tensor:
    return conv(x.transpose(1, 2)).transpose(1, 2)


class FactorizedVQ(nn.Module):
    """One DAC level; see the MLX twin."""

    def __init__(self, *, dim: int, codebook_size: int, codebook_dim: int,
                 weight_norm: bool = True) -> None:
        super().__init__()
        self.dim, self.codebook_size, self.codebook_dim = dim, codebook_size, codebook_dim
        self.in_proj = Conv1d(in_channels=dim, out_channels=codebook_dim, kernel_size=1,
                              weight_norm=weight_norm)
        self.out_proj = Conv1d(in_channels=codebook_dim, out_channels=dim, kernel_size=1,
                               weight_norm=weight_norm)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}"

    def choose(self, z_e: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, F)`` of projected latents ``z_e (B, F, d)`` (cosine, no gradient)."""
        b, f, d = z_e.shape
        flat = z_e.detach().float().reshape(b * f, d)
        return nearest(flat, self.codebook.weight.detach().float(), cosine=True).reshape(b, f)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """``out_proj(codebook[codes])``: ``(B, F)`` -> ``(B, F, dim)``."""
        return _proj(self.out_proj, self.codebook(codes.long()))

    def forward(self, x: torch.Tensor):
        """``(out (B, F, D), codes (B, F), z_e (B, F, d), commitment (B,), codebook (B,))``."""
        z_e = _proj(self.in_proj, x)
        codes = self.choose(z_e)
        z_q = self.codebook(codes.long())
        commitment = (z_e - z_q.detach()).square().mean(dim=(1, 2))
        codebook = (z_q - z_e.detach()).square().mean(dim=(1, 2))
        z_q = z_e + (z_q - z_e).detach()
        return _proj(self.out_proj, z_q), codes, z_e, commitment, codebook


class FactorizedRVQ(nn.Module):
    """Residual stack of :class:`FactorizedVQ` levels; see the MLX twin for the arguments."""

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
        self.quantizers = nn.ModuleList(
            FactorizedVQ(dim=dim, codebook_size=s, codebook_dim=codebook_dim,
                         weight_norm=weight_norm) for s in self._codebook_sizes)
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

    def dropout_mask(self, batch: int, n: int, device: torch.device) -> torch.Tensor | None:
        if not self.training or self.quantizer_dropout <= 0 or n < 2:
            return None
        return torch.from_numpy(dropout_levels(self._rng, batch, n, self.quantizer_dropout)).to(device)

    def forward(self, x: torch.Tensor, *, num_levels: int | None = None,
                mask: torch.Tensor | None = None) -> FactorizedOutput:
        check_latents(x, self.dim, "FactorizedRVQ")
        n = check_num_levels(num_levels, self.num_codebooks, "FactorizedRVQ")
        if mask is None:
            mask = self.dropout_mask(x.shape[0], n, x.device)
        residual, total = x, None
        commitment = codebook = x.new_zeros(())
        codes, latents, usage, perplexity = [], [], [], []
        first = None
        for i, level in enumerate(self.quantizers[:n]):
            out, c, z_e, commit_i, cb_i = level(residual)
            residual = residual - out
            first = out if first is None else first
            if mask is not None:
                keep = mask[:, i].to(out.dtype)
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
            quantized=total, codes=torch.stack(codes, dim=1),
            latents=torch.cat(latents, dim=-1), commitment_loss=commitment,
            codebook_loss=codebook,
            metrics={"usage": torch.stack(usage), "perplexity": torch.stack(perplexity)}, first=first)

    def encode(self, x: torch.Tensor, *, num_levels: int | None = None) -> torch.Tensor:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``."""
        check_latents(x, self.dim, "FactorizedRVQ.encode")
        n = check_num_levels(num_levels, self.num_codebooks, "FactorizedRVQ.encode")
        residual, codes = x, []
        for level in self.quantizers[:n]:
            c = level.choose(_proj(level.in_proj, residual))
            codes.append(c)
            if len(codes) < n:
                residual = residual - level.lookup(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, F, D)`` of codes ``(B, K', F)``, any prefix ``K' <= K``."""
        codes = check_codes(codes, self.codebook_sizes, "FactorizedRVQ.decode")
        total = None
        for i in range(codes.shape[1]):
            q = self.quantizers[i].lookup(codes[:, i])
            total = q if total is None else total + q
        return total
