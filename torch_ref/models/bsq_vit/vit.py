"""BSQ-ViT's transformer stacks over mel-patch tokens (torch mirror of
``mlx_speech/models/bsq_vit/vit.py``: same classes, children and maths; see its docstring).

Activation checkpointing (``spec.checkpoint``, training only) recomputes the attention and
feed-forward sub-blocks with ``torch.utils.checkpoint`` (``use_reentrant=False``), not the
convolution module, whose BatchNorm updates its running statistics in the forward (a recompute
would update them twice); dropout stays outside the recomputed part, as on MLX.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mlx_speech.models.bsq_vit.spec import BSQViTSpec
from torch_ref.layers.activations import get_activation
from torch_ref.layers.attention import MultiHeadAttention
from torch_ref.layers.conformer import ConformerConvModule
from torch_ref.layers.norms import LayerNorm, LayerScale

EMBED_STD = 0.02


def bands_to_batch(x: torch.Tensor, bands: int) -> torch.Tensor:
    """``(B, F * bands, D) -> (B * bands, F, D)``: one time sequence per band."""
    b, n, d = x.shape
    return x.reshape(b, n // bands, bands, d).transpose(1, 2).reshape(b * bands, -1, d)


def batch_to_bands(x: torch.Tensor, bands: int) -> torch.Tensor:
    """Inverse of :func:`bands_to_batch`."""
    bb, f, d = x.shape
    return x.reshape(bb // bands, bands, f, d).transpose(1, 2).reshape(bb // bands, -1, d)


class ViTBlock(nn.Module):
    """One pre-norm block, ``(B, F * bands, D)`` in and out."""

    def __init__(self, spec: BSQViTSpec) -> None:
        super().__init__()
        d = spec.dim
        self.bands = spec.bands
        self.use_checkpoint = spec.checkpoint
        self._act = get_activation("gelu")
        self.norm1 = LayerNorm(dim=d)
        self.self_attn = MultiHeadAttention(dim=d, num_heads=spec.num_heads, bias=True,
                                            rope=spec.positions == "rope", causal=spec.causal)
        self.conv = (ConformerConvModule(dim=d, kernel_size=spec.conv_kernel, causal=spec.causal,
                                         norm=spec.conv_norm) if spec.conformer_conv else None)
        self.norm2 = LayerNorm(dim=d)
        self.linear1 = nn.Linear(d, spec.hidden_dim)
        self.linear2 = nn.Linear(spec.hidden_dim, d)
        scales = spec.layer_scale is not None
        for name in ("1", "conv", "2"):
            setattr(self, f"layer_scale_{name}",
                    LayerScale(dim=d, init=spec.layer_scale) if scales else None)
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else None

    def _scaled(self, h: torch.Tensor, name: str) -> torch.Tensor:
        scale = getattr(self, f"layer_scale_{name}")
        return h if scale is None else scale(h)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        return self._scaled(self.self_attn(self.norm1(x)), "1")

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scaled(self.linear2(self._act(self.linear1(self.norm2(x)))), "2")

    def _drop(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.dropout is None else self.dropout(h)

    def _run(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(fn, x, use_reentrant=False)
        return fn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._drop(self._run(self._attention, x))
        if self.conv is not None:
            h = batch_to_bands(self.conv(bands_to_batch(x, self.bands)), self.bands)
            x = x + self._drop(self._scaled(h, "conv"))
        return x + self._drop(self._run(self._feed_forward, x))


class ViT(nn.Module):
    """The encoder (``patches_in``) or decoder (``patches_out``) stack."""

    def __init__(self, spec: BSQViTSpec, num_layers: int, *, patches_in: bool = False,
                 patches_out: bool = False) -> None:
        super().__init__()
        d = spec.dim
        self.bands = spec.bands
        self.max_frames = spec.max_frames
        self.patch_embed = nn.Linear(spec.patch_dim, d) if patches_in else None
        self.band_embed = nn.Parameter(EMBED_STD * torch.randn(spec.bands, d))
        self.time_embed = (nn.Parameter(EMBED_STD * torch.randn(spec.max_frames, d))
                           if spec.positions == "learned" else None)
        self.layers = nn.ModuleList(ViTBlock(spec) for _ in range(num_layers))
        self.norm = LayerNorm(dim=d)
        self.head = nn.Linear(d, spec.patch_dim) if patches_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, F * bands, patch_dim or dim)`` -> ``(B, F * bands, dim or patch_dim)``."""
        if self.patch_embed is not None:
            x = self.patch_embed(x)
        frames = x.shape[1] // self.bands
        pos = self.band_embed.repeat(frames, 1)
        if self.time_embed is not None:
            if frames > self.max_frames:
                raise ValueError(f"BSQ-ViT: learned positions cover {self.max_frames} frames, "
                                 f"got {frames}")
            pos = pos + self.time_embed[:frames].repeat_interleave(self.bands, dim=0)
        x = x + pos.to(x.dtype)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return self.head(x) if self.head is not None else x
