"""The depth transformer of a Moshi-style LM and its small blocks (torch mirror).

Mirror of ``mlx_speech/models/s2s/depformer.py`` (see its docstring): same classes, attribute
names (``layers.N.{norm1, self_attn.S, norm2, ffn.S, layer_scale_1, layer_scale_2}``) and
maths; tensors ``(B, T, D)``.
"""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.models.s2s.lm_spec import NORMS, MoshiLMSpec
from torch_ref.layers.activations import get_activation
from torch_ref.layers.attention import MultiHeadAttention
from torch_ref.layers.kv_cache import KVCache
from torch_ref.layers.norms import LayerNorm, LayerScale, make_norm

ZERO_TOKEN = -1


class ConcatKVCache(KVCache):
    """A frame's depformer cache that appends by concatenation: autograd then sees no buffer
    modified in place, so teacher-forced training backpropagates through the steps (MLX
    arrays are immutable, so the MLX cache needs no twin)."""

    def _append_unbounded(self, k: torch.Tensor,
                          v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._keys is not None:
            k, v = torch.cat([self._keys, k], dim=2), torch.cat([self._values, v], dim=2)
        self._keys, self._values, self._length = k, v, k.shape[2]
        return k, v


class TokenEmbedding(nn.Module):
    """``ids (...)`` int -> ``(..., dim)``; ``-1`` gives zeros, other negatives row 0;
    ``norm=True`` puts a LayerNorm after the lookup."""

    def __init__(self, num: int, dim: int, *, norm: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num, dim) * dim ** -0.5)
        self.norm = LayerNorm(dim=dim, eps=1e-5) if norm else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        y = self.weight[ids.clamp(min=0)]
        if self.norm is not None:
            y = self.norm(y)
        return torch.where((ids == ZERO_TOKEN)[..., None], torch.zeros((), dtype=y.dtype), y)


def sin_embedding(start: int, length: int, dim: int, max_period: float,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(length, dim)`` moshi sinusoidal embedding of positions ``start ..``."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32) / (half - 1)
    phase = torch.arange(start, start + length, dtype=torch.float32)[:, None] / torch.pow(
        torch.tensor(max_period, dtype=torch.float32), exponent)[None]
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1).to(dtype)


class FeedForward(nn.Module):
    """moshi's FFN: gated (``gate_proj``, ``up_proj``, ``down_proj``) or GELU MLP."""

    def __init__(self, dim: int, hidden: int, gating: str) -> None:
        super().__init__()
        self.gated = gating != "none"
        self._act = get_activation("gelu" if gating == "none" else gating)
        if self.gated:
            self.gate_proj = nn.Linear(dim, hidden, bias=False)
            self.up_proj = nn.Linear(dim, hidden, bias=False)
            self.down_proj = nn.Linear(hidden, dim, bias=False)
        else:
            self.linear1 = nn.Linear(dim, hidden, bias=False)
            self.linear2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.down_proj(self._act(self.gate_proj(x)) * self.up_proj(x))
        return self.linear2(self._act(self.linear1(x)))


class DepformerLayer(nn.Module):
    """A pre-norm layer with one attention / FFN weight set per step and shared norms."""

    def __init__(self, spec: MoshiLMSpec) -> None:
        super().__init__()
        s = spec
        kind, eps = NORMS[s.norm]
        rope = s.depformer_pos_emb in ("rope", "sin_rope", "rope_concat")
        self.norm1 = make_norm(kind, dim=s.depformer_dim, eps=eps)
        self.self_attn = nn.ModuleList([
            MultiHeadAttention(dim=s.depformer_dim, num_heads=s.depformer_num_heads,
                               num_kv_heads=s.depformer_num_heads // s.depformer_kv_repeat,
                               rope=rope, rope_interleaved=s.depformer_pos_emb != "rope_concat",
                               max_period=s.depformer_max_period, causal=True, context=None)
            for _ in range(s.depformer_num_weights)])
        self.norm2 = make_norm(kind, dim=s.depformer_dim, eps=eps)
        self.ffn = nn.ModuleList([FeedForward(s.depformer_dim, h, s.depformer_gating)
                                  for h in s.depformer_ffn_hiddens])
        ls = s.depformer_layer_scale
        self.layer_scale_1 = LayerScale(dim=s.depformer_dim, init=ls) if ls is not None else None
        self.layer_scale_2 = LayerScale(dim=s.depformer_dim, init=ls) if ls is not None else None

    def forward(self, x: torch.Tensor, weights: int, cache: KVCache) -> torch.Tensor:
        h = self.self_attn[weights](self.norm1(x), cache=cache)
        x = x + (self.layer_scale_1(h) if self.layer_scale_1 is not None else h)
        h = self.ffn[weights](self.norm2(x))
        return x + (self.layer_scale_2(h) if self.layer_scale_2 is not None else h)


class Depformer(nn.Module):
    """``layers.N`` of :class:`DepformerLayer`; :meth:`forward` runs one step of a frame."""

    def __init__(self, spec: MoshiLMSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList([DepformerLayer(spec)
                                     for _ in range(spec.depformer_num_layers)])

    def make_cache(self, *, differentiable: bool = False) -> list[KVCache]:
        """One empty cache per layer for the ``dep_q`` steps of one frame; ``differentiable``
        for teacher forcing with gradients (the inference cache writes in place)."""
        cls = ConcatKVCache if differentiable else KVCache
        return [cls(context=None, step=self.spec.dep_q) for _ in self.layers]

    def forward(self, x: torch.Tensor, step: int, cache: list[KVCache]) -> torch.Tensor:
        s = self.spec
        if s.depformer_pos_emb in ("sin", "sin_rope"):
            x = x + s.depformer_positional_scale * sin_embedding(
                step, 1, s.depformer_dim, s.depformer_max_period, x.dtype)
        w = s.depformer_weight_index(step)
        for layer, c in zip(self.layers, cache):
            x = layer(x, w, c)
        return x
