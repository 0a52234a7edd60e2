"""Mimi codec spec (Kyutai, 2024): SEANet + transformers + split RVQ at 12.5 Hz.

One flat dataclass feeds both implementations (``mlx_speech.models.mimi.model`` and
``torch_ref.models.mimi.model``) and the upstream converters (``convert/mimi*.py``).

Shapes for the official model (``mimi_202407``): 24 kHz mono audio, SEANet strides
``ratios`` reversed in the encoder (4, 5, 6, 8: hop 960 -> 25 Hz), a stride-2 learnt
down/upsampling to ``frame_rate`` 12.5 Hz (one frame = 1920 samples), latents of ``dimension``
512, split RVQ with ``num_semantic`` (1) + acoustic codebooks of ``codebook_size`` 2048 on
``rvq_dim`` 256. ``total_codebooks`` (32) is what the weights hold; ``num_codebooks`` is how
many ``encode`` uses by default (any ``1..total_codebooks``; ``decode`` takes any prefix).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class MimiSpec(Spec):
    """Mimi hyper-parameters (names follow moshi's ``_seanet_kwargs`` / ``_transformer_kwargs``).

    SEANet: ``channels`` audio channels, ``n_filters`` base width, ``ratios`` decoder-order
    strides, ``kernel_size`` / ``last_kernel_size`` / ``residual_kernel_size``,
    ``n_residual_layers`` residual units per block with dilation ``dilation_base ** j``,
    ``compress`` width reduction inside a residual unit, ``pad_mode`` of the causal convs.
    Transformers (encoder and decoder alike): ``num_layers``, ``num_heads``, ``ffn_dim``,
    ``context`` (sliding window in 25 Hz frames), ``layer_scale``, ``max_period`` (RoPE),
    ``norm_eps`` (LayerNorm). Quantizer: ``rvq_dim``, ``codebook_size``, ``num_semantic``,
    ``total_codebooks``, ``num_codebooks``; ``codebook_epsilon`` clamps the EMA usage.
    """

    sample_rate: int = 24000
    channels: int = 1
    frame_rate: float = 12.5
    dimension: int = 512
    n_filters: int = 64
    ratios: list[int] = dataclasses.field(default_factory=lambda: [8, 6, 5, 4])
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    n_residual_layers: int = 1
    dilation_base: int = 2
    compress: int = 2
    pad_mode: Literal["constant", "replicate"] = "constant"
    num_layers: int = 8
    num_heads: int = 8
    ffn_dim: int = 2048
    context: int = 250
    layer_scale: float = 0.01
    max_period: float = 10000.0
    norm_eps: float = 1e-5
    rvq_dim: int = 256
    codebook_size: int = 2048
    num_semantic: int = 1
    total_codebooks: int = 32
    num_codebooks: int = 8
    codebook_epsilon: float = 1e-5

    def validate(self) -> None:
        w = type(self).__name__
        require(8000 <= self.sample_rate <= 192000, w, f"sample_rate {self.sample_rate} outside 8000..192000")
        require(self.channels == 1, w, f"only mono Mimi is supported, got channels={self.channels}")
        require(len(self.ratios) >= 1 and all(r >= 1 for r in self.ratios), w,
                f"ratios must be positive strides, got {self.ratios}")
        for name in ("dimension", "n_filters", "kernel_size", "last_kernel_size",
                     "residual_kernel_size", "n_residual_layers", "dilation_base", "compress",
                     "num_layers", "num_heads", "ffn_dim", "context", "rvq_dim", "codebook_size"):
            require(getattr(self, name) >= 1, w, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.dimension % self.num_heads == 0 and (self.dimension // self.num_heads) % 2 == 0,
                w, f"dimension {self.dimension} / num_heads {self.num_heads} must be an even head size")
        require(self.n_filters % self.compress == 0, w,
                f"n_filters {self.n_filters} must be divisible by compress {self.compress}")
        require(self.frame_rate > 0, w, f"frame_rate must be > 0, got {self.frame_rate}")
        stride = self.encoder_frame_rate / self.frame_rate
        require(abs(stride - round(stride)) < 1e-9 and round(stride) >= 2, w,
                f"encoder frame rate {self.encoder_frame_rate} / frame_rate {self.frame_rate} must "
                f"be an integer >= 2")
        require(self.codebook_size >= 2, w, f"codebook_size must be >= 2, got {self.codebook_size}")
        require(self.num_semantic >= 1, w, f"num_semantic must be >= 1, got {self.num_semantic}")
        require(self.total_codebooks > self.num_semantic, w,
                f"total_codebooks ({self.total_codebooks}) must exceed num_semantic ({self.num_semantic})")
        require(1 <= self.num_codebooks <= self.total_codebooks, w,
                f"num_codebooks must be in 1..{self.total_codebooks}, got {self.num_codebooks}")
        require(self.codebook_epsilon > 0, w, "codebook_epsilon must be > 0")

    # -- derived sizes -----------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per encoder (SEANet) frame: the product of the ratios (960)."""
        return math.prod(self.ratios)

    @property
    def encoder_frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def resample_stride(self) -> int:
        """Encoder frames per codec frame (2): stride of ``downsample`` / ``upsample``."""
        return round(self.encoder_frame_rate / self.frame_rate)

    @property
    def frame_size(self) -> int:
        """Samples per codec frame (1920)."""
        return self.hop_length * self.resample_stride

    @property
    def num_acoustic(self) -> int:
        return self.total_codebooks - self.num_semantic

    def seanet_args(self) -> dict[str, Any]:
        """Constructor arguments of the SEANet encoder / decoder (both frameworks)."""
        return dict(channels=self.channels, dimension=self.dimension, n_filters=self.n_filters,
                    ratios=list(self.ratios), kernel_size=self.kernel_size,
                    last_kernel_size=self.last_kernel_size,
                    residual_kernel_size=self.residual_kernel_size,
                    n_residual_layers=self.n_residual_layers, dilation_base=self.dilation_base,
                    compress=self.compress, pad_mode=self.pad_mode)

    def transformer_args(self) -> dict[str, Any]:
        """Constructor arguments of the encoder / decoder transformers (both frameworks)."""
        return dict(num_layers=self.num_layers, dim=self.dimension, num_heads=self.num_heads,
                    ffn_dim=self.ffn_dim, causal=True, context=self.context, rope=True,
                    rope_interleaved=True, max_period=self.max_period, norm="layer",
                    norm_eps=self.norm_eps, ffn_type="mlp", activation="gelu", attn_bias=False,
                    ffn_bias=False, layer_scale=self.layer_scale)

    def num_frames(self, num_samples: int) -> int:
        """Codec frames ``encode`` returns for ``num_samples`` samples (the tail is zero-padded)."""
        return -(-int(num_samples) // self.frame_size)


@MimiSpec.preset("mimi_202407")
def mimi_202407(num_codebooks: int = 8) -> MimiSpec:
    """The released Kyutai Mimi (``tokenizer-e351c8d8-checkpoint125`` / ``kyutai/mimi``)."""
    spec = MimiSpec(num_codebooks=num_codebooks)
    spec.validate()
    return spec


@MimiSpec.preset("mimi_tiny")
def mimi_tiny(num_codebooks: int = 4) -> MimiSpec:
    """A small random-init Mimi for tests (same structure, narrow layers, short context)."""
    spec = MimiSpec(frame_rate=500.0, dimension=32, n_filters=8, ratios=[4, 3, 2], num_layers=2,
                    num_heads=2, ffn_dim=64, context=6, rvq_dim=16, codebook_size=64,
                    total_codebooks=6, num_codebooks=num_codebooks)
    spec.validate()
    return spec
