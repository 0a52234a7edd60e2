"""One vector quantizer: optional projections, EMA codebook, straight-through, commitment (MLX).

``x (B, F, D)`` -> [``in_proj`` D -> d] -> nearest code -> [``out_proj`` d -> D]. With
``codebook_dim`` (d < D) the codes are factorised low-dimensional vectors (DAC projects to 8-d);
with ``l2_normalize`` they are picked by cosine similarity. The codebook is learnt by EMA (no
gradient), the projections by gradient: the straight-through estimator passes the gradient of the
output to the projected input, and the commitment loss ``mean((z - stopgrad(q))^2)`` pulls the
projected input towards its code.

In training mode a call also initialises the codebook by k-means on its first batch (unless
``initialize=False``), updates the EMA statistics and restarts dead codes. In eval mode it is a
pure function and equals ``decode(encode(x))``.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.quantize.codebook import EMACodebook
from mlx_speech.quantize.codes import check_latents, histogram, masked_mean, usage_stats
from mlx_speech.errors import CodesError
from mlx_speech.specs.quantize import EMACodebookSpec, VQSpec


class VQOutput(NamedTuple):
    quantized: mx.array  # (B, F, D), input dtype
    codes: mx.array  # (B, F) int32
    commit_loss: mx.array  # scalar, already weighted
    metrics: dict[str, mx.array]  # perplexity, usage (this batch), expired (restarted fraction)


class VectorQuantizer(nn.Module):
    """Vector quantizer of ``(B, F, dim)`` latents into ``codebook_size`` codes.

    Args:
        dim: latent width ``D``.
        codebook_size: number of codes ``K``.
        codebook_dim: code width ``d``; None or ``D`` means no projections.
        l2_normalize: choose codes by cosine similarity (DAC); lookup and EMA stay raw.
        commitment_weight: factor of the commitment loss.
        proj_bias: biases of ``in_proj`` / ``out_proj`` (vector-quantize-pytorch and DAC: yes).
        ema: EMA codebook options.
        seed: seed of the codebook's sampling generator.
    """

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
        if self.codebook_dim != dim:
            self.in_proj = nn.Linear(dim, self.codebook_dim, bias=proj_bias)
            self.out_proj = nn.Linear(self.codebook_dim, dim, bias=proj_bias)
        self.codebook = EMACodebook(size=codebook_size, dim=self.codebook_dim, ema=ema,
                                    cosine=l2_normalize, seed=seed)

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}"

    @property
    def has_projections(self) -> bool:
        return "in_proj" in self

    def project_in(self, x: mx.array) -> mx.array:
        return self.in_proj(x) if self.has_projections else x

    def project_out(self, z: mx.array) -> mx.array:
        return self.out_proj(z) if self.has_projections else z

    def reset_state(self) -> None:
        self.codebook.reset_state()

    def encode(self, x: mx.array) -> mx.array:
        """Codes ``(B, F)`` int32 of latents ``x (B, F, D)``."""
        check_latents(x, self.dim, "VectorQuantizer.encode")
        z = self.project_in(x).astype(mx.float32)
        b, f, d = z.shape
        return self.codebook.encode(z.reshape(b * f, d)).reshape(b, f)

    def decode(self, codes: mx.array) -> mx.array:
        """Latents ``(B, F, D)`` float32 of codes ``(B, F)``."""
        if not isinstance(codes, mx.array) or codes.ndim != 2:
            shape = tuple(codes.shape) if hasattr(codes, "shape") else type(codes).__name__
            raise CodesError(f"VectorQuantizer.decode: expected codes of shape (B, F), got {shape}")
        if codes.size:
            lo, hi = int(codes.min().item()), int(codes.max().item())
            if lo < 0 or hi >= self.codebook_size:
                bad = lo if lo < 0 else hi
                raise CodesError(f"VectorQuantizer.decode: code {bad} out of range 0..{self.codebook_size - 1}")
        return self.project_out(self.codebook.decode(codes.astype(mx.int32)))

    def __call__(self, x: mx.array, *, sample_mask: mx.array | None = None,
                 initialize: bool = True) -> VQOutput:
        """Quantize ``x (B, F, D)``.

        ``sample_mask (B,)`` restricts the commitment loss to kept batch items (quantizer
        dropout); ``initialize=False`` forbids the k-means initialisation on this batch (a
        residual level whose predecessor initialised on the same batch).
        """
        check_latents(x, self.dim, "VectorQuantizer")
        z = self.project_in(x).astype(mx.float32)
        b, f, d = z.shape
        flat = mx.stop_gradient(z).reshape(b * f, d)
        cb = self.codebook
        if self.training and initialize and not cb.is_initialized():
            cb.initialize(flat)
        codes = cb.encode(flat)
        q = cb.decode(codes).reshape(b, f, d)
        commit = masked_mean((z - mx.stop_gradient(q)) ** 2, sample_mask) * self.commitment_weight
        metrics = usage_stats(histogram(codes, cb.size))
        metrics["expired"] = mx.array(0.0)
        if self.training:
            if cb.is_initialized():
                metrics["expired"] = cb.ema_update(flat, codes)
            q = z + mx.stop_gradient(q - z)  # straight-through
        out = self.project_out(q.astype(x.dtype))
        return VQOutput(out, codes.reshape(b, f), commit, metrics)


def build_vector_quantizer(spec: VQSpec) -> VectorQuantizer:
    return VectorQuantizer(dim=spec.dim, codebook_size=spec.codebook_size,
                           codebook_dim=spec.codebook_dim, l2_normalize=spec.l2_normalize,
                           commitment_weight=spec.commitment_weight, proj_bias=spec.proj_bias,
                           ema=spec.ema, seed=spec.seed)
