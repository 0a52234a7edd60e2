"""One vector quantizer: optional projections, EMA codebook, straight-through, commitment
(torch mirror of ``mlx_speech/quantize/vq.py``; same arguments, names and semantics).

In training mode a call initialises the codebook by k-means on its first batch (unless
``initialize=False``), updates the EMA statistics and restarts dead codes; in eval mode it is a
pure function equal to ``decode(encode(x))``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mlx_speech.errors import CodesError
from mlx_speech.specs.quantize import EMACodebookSpec, VQSpec
from torch_ref.quantize.codebook import EMACodebook
from torch_ref.quantize.codes import check_latents, histogram, masked_mean, usage_stats


class VQOutput(NamedTuple):
    quantized: torch.Tensor  # (B, F, D), input dtype
    codes: torch.Tensor  # (B, F) int32
    commit_loss: torch.Tensor  # scalar, already weighted
    metrics: dict[str, torch.Tensor]  # perplexity, usage (this batch), expired


class VectorQuantizer(nn.Module):
    """Vector quantizer of ``(B, F, dim)`` latents into ``codebook_size`` codes (see the MLX
    twin for the arguments)."""

    def __init__(self, *, dim: int, codebook_size: int, codebook_dim: int | None = None,
                 l2_normalize: bool = False, commitment_weight: float = 1.0,
                 proj_bias: bool = True, ema: EMACodebookSpec | None = None, seed: int = 0) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"VectorQuantizer: dim must be >= 1, got {dim}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim or dim
        self.commitment_weight = float(commitment_weight)
        self.l2_normalize = l2_normalize
        projected = self.codebook_dim != dim
        self.in_proj = nn.Linear(dim, self.codebook_dim, bias=proj_bias) if projected else None
        self.out_proj = nn.Linear(self.codebook_dim, dim, bias=proj_bias) if projected else None
        self.codebook = EMACodebook(size=codebook_size, dim=self.codebook_dim, ema=ema,
                                    cosine=l2_normalize, seed=seed)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}"

    @property
    def has_projections(self) -> bool:
        return self.in_proj is not None

    def project_in(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_proj(x) if self.in_proj is not None else x

    def project_out(self, z: torch.Tensor) -> torch.Tensor:
        return self.out_proj(z) if self.out_proj is not None else z

    def reset_state(self) -> None:
        self.codebook.reset_state()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, F)`` int32 of latents ``x (B, F, D)``."""
        check_latents(x, self.dim, "VectorQuantizer.encode")
        z = self.project_in(x).float()
        b, f, d = z.shape
        return self.codebook.encode(z.reshape(b * f, d)).reshape(b, f)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, F, D)`` float32 of codes ``(B, F)``."""
        if not isinstance(codes, torch.Tensor) or codes.dim() != 2:
            shape = tuple(codes.shape) if hasattr(codes, "shape") else type(codes).__name__
            raise CodesError(f"VectorQuantizer.decode: expected codes of shape (B, F), got {shape}")
        if codes.numel():
            lo, hi = int(codes.min()), int(codes.max())
            if lo < 0 or hi >= self.codebook_size:
                bad = lo if lo < 0 else hi
                raise CodesError(f"VectorQuantizer.decode: code {bad} out of range 0..{self.codebook_size - 1}")
        return self.project_out(self.codebook.decode(codes))

    def forward(self, x: torch.Tensor, *, sample_mask: torch.Tensor | None = None,
                initialize: bool = True) -> VQOutput:
        """Quantize ``x (B, F, D)`` (see the MLX twin for ``sample_mask`` / ``initialize``)."""
        check_latents(x, self.dim, "VectorQuantizer")
        z = self.project_in(x).float()
        b, f, d = z.shape
        flat = z.detach().reshape(b * f, d)
        cb = self.codebook
        if self.training and initialize and not cb.is_initialized():
            cb.initialize(flat)
        codes = cb.encode(flat)
        q = cb.decode(codes).reshape(b, f, d)
        commit = masked_mean((z - q.detach()) ** 2, sample_mask) * self.commitment_weight
        metrics = usage_stats(histogram(codes, cb.size))
        metrics["expired"] = torch.zeros((), device=x.device)
        if self.training:
            if cb.is_initialized():
                metrics["expired"] = cb.ema_update(flat, codes)
            q = z + (q - z).detach()  # straight-through
        out = self.project_out(q.to(x.dtype))
        return VQOutput(out, codes.reshape(b, f), commit, metrics)


def build_vector_quantizer(spec: VQSpec) -> VectorQuantizer:
    return VectorQuantizer(dim=spec.dim, codebook_size=spec.codebook_size,
                           codebook_dim=spec.codebook_dim, l2_normalize=spec.l2_normalize,
                           commitment_weight=spec.commitment_weight, proj_bias=spec.proj_bias,
                           ema=spec.ema, seed=spec.seed)
