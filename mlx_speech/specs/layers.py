"""Specs of the shared layer stacks (Transformer, Conformer), registered as models.

Field names equal the constructor arguments of ``mlx_speech.layers.transformer.Transformer`` /
``conformer.Conformer`` (and their torch_ref twins), so a spec builds either side directly.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class TransformerSpec(Spec):
    num_layers: int = 2
    dim: int = 64
    num_heads: int = 4
    ffn_dim: int = 256
    num_kv_heads: int | None = None
    causal: bool = True
    context: int | None = None
    rope: bool = True
    rope_interleaved: bool = True
    max_period: float = 10000.0
    norm: Literal["layer", "rms"] = "layer"
    norm_eps: float = 1e-5
    ffn_type: Literal["mlp", "gated"] = "mlp"
    activation: Literal["gelu", "silu", "relu"] = "gelu"
    attn_bias: bool = False
    ffn_bias: bool = False
    layer_scale: float | None = None
    final_norm: bool = False
    dropout: float = 0.0

    def validate(self) -> None:
        w = type(self).__name__
        require(self.num_layers > 0 and self.dim > 0 and self.ffn_dim > 0, w,
                "num_layers, dim and ffn_dim must be positive")
        require(self.num_heads > 0 and self.dim % self.num_heads == 0, w,
                f"dim {self.dim} must be divisible by num_heads {self.num_heads}")
        require(self.context is None or self.context > 0, w, "context must be positive or null")


@TransformerSpec.preset("mimi_transformer")
def mimi_transformer() -> TransformerSpec:
    """Mimi's encoder/decoder transformer: 8 layers, 512-d, 8 heads, context 250, layer scale."""
    return TransformerSpec(num_layers=8, dim=512, num_heads=8, ffn_dim=2048, causal=True,
                           context=250, layer_scale=0.01)


@TransformerSpec.preset("bench_12x512")
def bench_12x512() -> TransformerSpec:
    """The 12-layer 512-d transformer used by bench/layers.py."""
    return TransformerSpec(num_layers=12, dim=512, num_heads=8, ffn_dim=2048)


@dataclasses.dataclass
class ConformerSpec(Spec):
    num_layers: int = 2
    dim: int = 64
    num_heads: int = 4
    ffn_dim: int = 256
    kernel_size: int = 31
    causal: bool = False
    layer_scale: float | None = None
    dropout: float = 0.0

    def validate(self) -> None:
        w = type(self).__name__
        require(self.num_layers > 0 and self.dim > 0 and self.ffn_dim > 0, w,
                "num_layers, dim and ffn_dim must be positive")
        require(self.num_heads > 0 and self.dim % self.num_heads == 0, w,
                f"dim {self.dim} must be divisible by num_heads {self.num_heads}")
        require(self.kernel_size > 0 and self.kernel_size % 2 == 1, w,
                f"kernel_size must be odd and positive, got {self.kernel_size}")
