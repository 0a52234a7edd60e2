"""Specs of the quantizers: EMA codebook options, VQ, residual VQ, split RVQ, BSQ, bridge.

Framework-neutral (imports neither mlx nor torch). Each spec builds the same module tree in
``mlx_speech.quantize`` and ``torch_ref.quantize`` through the ``build_*`` functions there.

Shared conventions:

* ``dim`` is the width of the latents ``(B, F, dim)`` a quantizer receives and returns.
* ``EMACodebookSpec`` groups the options every EMA codebook shares (decay, smoothing, k-means
  initialisation, dead-code restart); quantizers take it as their ``ema`` argument.
* ``seed`` drives the numpy generator behind k-means sampling, dead-code restart sampling and
  quantizer dropout, identically in MLX and torch_ref.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class EMACodebookSpec(Spec):
    """EMA codebook behaviour (stored as ``embedding_sum`` + ``cluster_usage``, as Mimi).

    The codebook is ``embedding_sum / clamp(cluster_usage, epsilon)[:, None]``.

    Args:
        decay: EMA decay of both statistics.
        epsilon: floor of ``cluster_usage`` in the division, and the Laplace pseudo-count.
        laplace_smoothing: after each EMA update, replace the usage ``u`` (total ``n``) by
            ``(u + eps) / (n + K eps) * n`` (additive smoothing that keeps the total).
        kmeans_init: start from zeros and run k-means on the first training batch; False starts
            from a random normal codebook ("plain VQ").
        kmeans_iters: Lloyd iterations of that k-means.
        threshold_usage_ratio: a code whose EMA usage is below this fraction of the uniform
            usage ``n / K`` is restarted from a random vector of the batch; 0 disables restarts.
        replaced_usage_ratio: usage (as a fraction of ``n / K``) given to a restarted code.
        restart_every: check for dead codes every this many training steps.
    """

    decay: float = 0.99
    epsilon: float = 1e-5
    laplace_smoothing: bool = True
    kmeans_init: bool = True
    kmeans_iters: int = 10
    threshold_usage_ratio: float = 0.1
    replaced_usage_ratio: float = 1.0
    restart_every: int = 1

    def validate(self) -> None:
        w = type(self).__name__
        require(0.0 <= self.decay < 1.0, w, f"decay must be in [0, 1), got {self.decay}")
        require(self.epsilon > 0, w, f"epsilon must be > 0, got {self.epsilon}")
        require(self.kmeans_iters >= 0, w, f"kmeans_iters must be >= 0, got {self.kmeans_iters}")
        require(0.0 <= self.threshold_usage_ratio < 1.0, w,
                f"threshold_usage_ratio must be in [0, 1), got {self.threshold_usage_ratio}")
        require(self.replaced_usage_ratio > 0, w,
                f"replaced_usage_ratio must be > 0, got {self.replaced_usage_ratio}")
        require(self.restart_every >= 1, w, f"restart_every must be >= 1, got {self.restart_every}")


def _check_dim(w: str, name: str, value: int | None) -> None:
    require(value is None or value > 0, w, f"{name} must be a positive int, got {value}")


@dataclasses.dataclass
class VQSpec(Spec):
    """One vector quantizer. ``codebook_dim`` (< dim) gives factorised codes with Linear
    ``in_proj`` / ``out_proj``; ``l2_normalize`` picks codes by cosine (DAC style)."""

    dim: int = 128
    codebook_size: int = 1024
    codebook_dim: int | None = None
    l2_normalize: bool = False
    commitment_weight: float = 1.0
    proj_bias: bool = True
    ema: EMACodebookSpec = dataclasses.field(default_factory=EMACodebookSpec)
    seed: int = 0

    def validate(self) -> None:
        w = type(self).__name__
        _check_dim(w, "dim", self.dim)
        _check_dim(w, "codebook_dim", self.codebook_dim)
        require(self.codebook_size >= 2, w, f"codebook_size must be >= 2, got {self.codebook_size}")
        require(self.commitment_weight >= 0, w, "commitment_weight must be >= 0")


@dataclasses.dataclass
class RVQSpec(Spec):
    """Residual VQ with per-level codebook sizes (e.g. ``[2048] + [1024] * 7``).

    ``rvq_dim`` (or ``force_projection``) adds ``in_proj`` / ``out_proj`` around the whole
    stack; ``codebook_dim`` factorises each level. ``quantizer_dropout`` is the probability
    that a batch item keeps only a random number ``1..K`` of levels (training only).
    """

    dim: int = 512
    codebook_sizes: list[int] = dataclasses.field(default_factory=lambda: [2048] + [1024] * 7)
    rvq_dim: int | None = None
    force_projection: bool = False
    proj_bias: bool = False
    codebook_dim: int | None = None
    l2_normalize: bool = False
    commitment_weight: float = 1.0
    quantizer_dropout: float = 0.0
    ema: EMACodebookSpec = dataclasses.field(default_factory=EMACodebookSpec)
    seed: int = 0

    def validate(self) -> None:
        w = type(self).__name__
        _check_dim(w, "dim", self.dim)
        _check_dim(w, "rvq_dim", self.rvq_dim)
        _check_dim(w, "codebook_dim", self.codebook_dim)
        require(len(self.codebook_sizes) >= 1, w, "codebook_sizes must name at least one level")
        require(all(s >= 2 for s in self.codebook_sizes), w,
                f"every codebook size must be >= 2, got {self.codebook_sizes}")
        require(0.0 <= self.quantizer_dropout <= 1.0, w, "quantizer_dropout must be in [0, 1]")
        require(self.commitment_weight >= 0, w, "commitment_weight must be >= 0")


@dataclasses.dataclass
class SplitRVQSpec(Spec):
    """Mimi's split RVQ: ``rvq_first`` and ``rvq_rest`` both see the input; outputs are summed.

    Both groups always project ``dim -> rvq_dim -> dim`` (Mimi: 512 -> 256, no bias).
    ``quantizer_dropout`` applies to the rest group only.
    """

    dim: int = 512
    rvq_dim: int = 256
    first_sizes: list[int] = dataclasses.field(default_factory=lambda: [2048])
    rest_sizes: list[int] = dataclasses.field(default_factory=lambda: [2048] * 7)
    proj_bias: bool = False
    commitment_weight: float = 1.0
    quantizer_dropout: float = 0.0
    ema: EMACodebookSpec = dataclasses.field(default_factory=EMACodebookSpec)
    seed: int = 0

    def validate(self) -> None:
        w = type(self).__name__
        _check_dim(w, "dim", self.dim)
        _check_dim(w, "rvq_dim", self.rvq_dim)
        require(len(self.first_sizes) >= 1 and len(self.rest_sizes) >= 1, w,
                "first_sizes and rest_sizes must each name at least one level")
        require(all(s >= 2 for s in self.first_sizes + self.rest_sizes), w,
                "every codebook size must be >= 2")
        require(0.0 <= self.quantizer_dropout <= 1.0, w, "quantizer_dropout must be in [0, 1]")


@dataclasses.dataclass
class BSQSpec(Spec):
    """Binary spherical quantizer (BSQ-ViT). ``bits`` = L; entropy terms are factorised into
    groups of ``group_size`` bits; integer codes hold ``code_bits`` bits each (None: all)."""

    dim: int = 18
    bits: int = 18
    group_size: int = 9
    code_bits: int | None = None
    inv_temperature: float = 1.0
    gamma0: float = 1.0
    gamma: float = 1.0
    zeta: float = 1.0
    commitment_weight: float = 0.25

    def validate(self) -> None:
        w = type(self).__name__
        _check_dim(w, "dim", self.dim)
        require(self.bits >= 1, w, f"bits must be >= 1, got {self.bits}")
        require(1 <= self.group_size <= 16 and self.bits % self.group_size == 0, w,
                f"group_size must divide bits ({self.bits}) and be in 1..16, got {self.group_size}")
        cb = self.bits if self.code_bits is None else self.code_bits
        require(1 <= cb <= 31, w, f"an int32 code holds at most 31 bits; set code_bits (bits={self.bits})")
        require(self.bits % cb == 0, w, f"code_bits {cb} must divide bits {self.bits}")
        require(self.inv_temperature > 0, w, "inv_temperature must be > 0")


@dataclasses.dataclass
class BridgeSpec(Spec):
    """The 9-codebook causal bridge: content (1) + prosody (1) + acoustic (7) heads.

    Three groups ``content``, ``prosody``, ``acoustic``, each projecting
    ``dim -> vq_dim -> dim`` (Mimi: 256, no bias), and a learnable gate ``g`` on ``q_c``
    (``content_gate_init``; 0.0 after Mimi surgery). ``arrangement="residual"``: prosody
    quantizes ``x - stopgrad(g q_c)`` and the acoustic RVQ ``x - (g q_c + q_p)``.
    ``arrangement="split"`` (Mimi's layout): prosody and acoustic both quantize
    ``x - stopgrad(g q_c)``. Both arrangements have the same parameter names.
    """

    dim: int = 512
    arrangement: Literal["residual", "split"] = "residual"
    content_size: int = 2048
    prosody_size: int = 2048
    acoustic_sizes: list[int] = dataclasses.field(default_factory=lambda: [2048] * 7)
    vq_dim: int | None = None
    proj_bias: bool = False
    qwen_dim: int = 1536
    wavlm_dim: int = 1024
    commitment_weight: float = 1.0
    qwen_weight: float = 1.0
    wavlm_weight: float = 1.0
    quantizer_dropout: float = 0.0
    content_gate_init: float = 1.0
    ema: EMACodebookSpec = dataclasses.field(default_factory=EMACodebookSpec)
    seed: int = 0

    def validate(self) -> None:
        w = type(self).__name__
        for name in ("dim", "vq_dim", "qwen_dim", "wavlm_dim"):
            _check_dim(w, name, getattr(self, name))
        require(self.content_size >= 2 and self.prosody_size >= 2, w, "codebook sizes must be >= 2")
        require(len(self.acoustic_sizes) >= 1 and all(s >= 2 for s in self.acoustic_sizes), w,
                "acoustic_sizes must name at least one level, each >= 2")
        require(0.0 <= self.quantizer_dropout <= 1.0, w, "quantizer_dropout must be in [0, 1]")
        for name in ("commitment_weight", "qwen_weight", "wavlm_weight"):
            require(getattr(self, name) >= 0, w, f"{name} must be >= 0")

    @property
    def num_codebooks(self) -> int:
        return 2 + len(self.acoustic_sizes)


# --- presets ---------------------------------------------------------------------------------
@EMACodebookSpec.preset("mimi")
def ema_mimi() -> EMACodebookSpec:
    """moshi's EuclideanCodebook: clamp only (no Laplace), dead-code check every 5 steps."""
    return EMACodebookSpec(decay=0.99, epsilon=1e-5, laplace_smoothing=False, kmeans_iters=50,
                           threshold_usage_ratio=0.1, replaced_usage_ratio=1.0, restart_every=5)


@VQSpec.preset("dac_factorised")
def vq_dac_factorised() -> VQSpec:
    """DAC-style level: 1024-d latents, 1024 codes of 8-d, picked by cosine."""
    return VQSpec(dim=1024, codebook_size=1024, codebook_dim=8, l2_normalize=True)


@RVQSpec.preset("codec_2048_1024x7")
def rvq_codec() -> RVQSpec:
    """8 levels, ``[2048] + [1024] * 7``, on 512-d latents."""
    return RVQSpec(dim=512, codebook_sizes=[2048] + [1024] * 7)


@RVQSpec.preset("mimi_acoustic")
def rvq_mimi_acoustic() -> RVQSpec:
    """8 levels of 2048 on 512-d latents projected to 256-d (no bias), Mimi codebook options."""
    return RVQSpec(dim=512, codebook_sizes=[2048] * 8, rvq_dim=256, ema=ema_mimi())


@RVQSpec.preset("dac_44k")
def rvq_dac_44k() -> RVQSpec:
    """DAC 44.1 kHz: 9 levels of 1024 on 1024-d latents, 8-d factorised L2-normalised codes."""
    return RVQSpec(dim=1024, codebook_sizes=[1024] * 9, codebook_dim=8, l2_normalize=True,
                   quantizer_dropout=0.5)


@SplitRVQSpec.preset("mimi")
def split_mimi() -> SplitRVQSpec:
    """Mimi (Kyutai, 2024): 1 semantic + 7 acoustic levels of 2048, 512 -> 256 projections."""
    return SplitRVQSpec(dim=512, rvq_dim=256, first_sizes=[2048], rest_sizes=[2048] * 7,
                        ema=ema_mimi())


@SplitRVQSpec.preset("mimi_32")
def split_mimi_32() -> SplitRVQSpec:
    """Mimi with all 32 codebooks (1 + 31)."""
    return SplitRVQSpec(dim=512, rvq_dim=256, first_sizes=[2048], rest_sizes=[2048] * 31,
                        ema=ema_mimi())


@BSQSpec.preset("bsq_18")
def bsq_18() -> BSQSpec:
    """18 bits in two entropy groups of 9; one int32 code per frame."""
    return BSQSpec(dim=18, bits=18, group_size=9)


@BSQSpec.preset("bsq_36")
def bsq_36() -> BSQSpec:
    """36 bits in four entropy groups of 9; two int32 codes (18 bits each) per frame."""
    return BSQSpec(dim=36, bits=36, group_size=9, code_bits=18)


@BridgeSpec.preset("bridge_9")
def bridge_9() -> BridgeSpec:
    """Residual chain: content 2048, prosody 2048, acoustic 7 x 2048; Qwen 1536, WavLM 1024."""
    return BridgeSpec()


@BridgeSpec.preset("bridge_9_split")
def bridge_9_split() -> BridgeSpec:
    """Mimi's split arrangement, 512 -> 256 projections and Mimi's EMA codebook options (the
    checkpoint surgery target; surgery also sets ``content_gate_init=0``)."""
    return BridgeSpec(arrangement="split", vq_dim=256, ema=ema_mimi())
