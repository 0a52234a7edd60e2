"""The depth transformer of a Moshi-style LM and the small blocks the LM shares with it (MLX).

Within one frame the depformer runs ``dep_q`` steps, one per own audio codebook: step ``k``
reads the temporal transformer's output through ``depformer_in`` and the token chosen at step
``k - 1`` (the text token at step 0), and its output gives codebook ``k``'s logits. Its
attention spans the steps of the current frame only (a fresh cache per frame, never a window),
causal. With weights per step, step ``k`` uses weight set ``schedule[k]`` (default ``k``) for
its attention projections and FFN, while the two norms of a layer are shared; so the layer
keeps lists, ``self_attn.{s}`` (the shared
:class:`~mlx_speech.layers.attention.MultiHeadAttention`, all sets writing into the one
:class:`~mlx_speech.layers.kv_cache.KVCache` of the frame, whose offset is the step) and
``ffn.{s}`` (:class:`FeedForward`). Tensors are ``(B, T, D)``.

:class:`TokenEmbedding` is moshi's ``ScaledEmbedding``: a table with one extra row (the
initial token), token ``-1`` embedding as zeros; :func:`sin_embedding` moshi's sinusoidal
positions (``positional_embedding="sin"``).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import get_activation
from mlx_speech.layers.attention import MultiHeadAttention
from mlx_speech.layers.kv_cache import KVCache
from mlx_speech.layers.linear import Linear
from mlx_speech.layers.norms import LayerNorm, LayerScale, make_norm
from mlx_speech.models.s2s.lm_spec import NORMS, MoshiLMSpec

ZERO_TOKEN = -1


class TokenEmbedding(nn.Module):
    """``ids (...)`` int -> ``(..., dim)``; ``-1`` gives zeros, other negatives row 0 (moshi
    clamps them); ``norm=True`` puts a LayerNorm after the lookup (moshi's ``norm_emb``)."""

    def __init__(self, num: int, dim: int, *, norm: bool = False) -> None:
        super().__init__()
        self.weight = mx.random.normal((num, dim)) * dim ** -0.5
        if norm:
            self.norm = LayerNorm(dim=dim, eps=1e-5)

    def __call__(self, ids: mx.array) -> mx.array:
        y = self.weight[mx.maximum(ids, 0)]
        if "norm" in self:
            y = self.norm(y)
        return mx.where((ids == ZERO_TOKEN)[..., None], mx.zeros((), dtype=y.dtype), y)


def sin_embedding(start: int, length: int, dim: int, max_period: float,
                  dtype: mx.Dtype = mx.float32) -> mx.array:
    """``(length, dim)`` moshi sinusoidal embedding of positions ``start ..``: cosines then
    sines of ``position / max_period ** (i / (dim / 2 - 1))``."""
    half = dim // 2
    exponent = mx.arange(half, dtype=mx.float32) / (half - 1)
    phase = mx.arange(start, start + length, dtype=mx.float32)[:, None] / mx.power(
        mx.array(max_period, dtype=mx.float32), exponent)[None]
    return mx.concatenate([mx.cos(phase), mx.sin(phase)], axis=-1).astype(dtype)


class FeedForward(nn.Module):
    """moshi's FFN of width ``hidden``: ``down_proj(act(gate_proj(x)) * up_proj(x))`` for an
    activation ``gating``, or ``linear2(gelu(linear1(x)))`` for ``gating="none"``."""

    def __init__(self, dim: int, hidden: int, gating: str) -> None:
        super().__init__()
        self.gated = gating != "none"
        self._act = get_activation("gelu" if gating == "none" else gating)
        if self.gated:
            self.gate_proj = Linear(dim, hidden, bias=False)
            self.up_proj = Linear(dim, hidden, bias=False)
            self.down_proj = Linear(hidden, dim, bias=False)
        else:
            self.linear1 = Linear(dim, hidden, bias=False)
            self.linear2 = Linear(hidden, dim, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        if self.gated:
            return self.down_proj(self._act(self.gate_proj(x)) * self.up_proj(x))
        return self.linear2(self._act(self.linear1(x)))


class DepformerLayer(nn.Module):
    """A pre-norm layer whose attention and FFN have one weight set per step (see the module
    docstring): ``x + ls1(attn_s(norm1(x))) -> + ls2(ffn_s(norm2(x)))``."""

    def __init__(self, spec: MoshiLMSpec) -> None:
        super().__init__()
        s = spec
        kind, eps = NORMS[s.norm]
        rope = s.depformer_pos_emb in ("rope", "sin_rope", "rope_concat")
        self.norm1 = make_norm(kind, dim=s.depformer_dim, eps=eps)
        self.self_attn = [
            MultiHeadAttention(dim=s.depformer_dim, num_heads=s.depformer_num_heads,
                               num_kv_heads=s.depformer_num_heads // s.depformer_kv_repeat,
                               rope=rope, rope_interleaved=s.depformer_pos_emb != "rope_concat",
                               max_period=s.depformer_max_period, causal=True, context=None)
            for _ in range(s.depformer_num_weights)]
        self.norm2 = make_norm(kind, dim=s.depformer_dim, eps=eps)
        self.ffn = [FeedForward(s.depformer_dim, h, s.depformer_gating)
                    for h in s.depformer_ffn_hiddens]
        if s.depformer_layer_scale is not None:
            self.layer_scale_1 = LayerScale(dim=s.depformer_dim, init=s.depformer_layer_scale)
            self.layer_scale_2 = LayerScale(dim=s.depformer_dim, init=s.depformer_layer_scale)

    def __call__(self, x: mx.array, weights: int, cache: KVCache) -> mx.array:
        h = self.self_attn[weights](self.norm1(x), cache=cache)
        x = x + (self.layer_scale_1(h) if "layer_scale_1" in self else h)
        h = self.ffn[weights](self.norm2(x))
        return x + (self.layer_scale_2(h) if "layer_scale_2" in self else h)


class Depformer(nn.Module):
    """``layers.N`` of :class:`DepformerLayer`; :meth:`__call__` runs one step of a frame."""

    def __init__(self, spec: MoshiLMSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = [DepformerLayer(spec) for _ in range(spec.depformer_num_layers)]

    def make_cache(self) -> list[KVCache]:
        """One empty cache per layer, for the ``dep_q`` steps of one frame."""
        return [KVCache(context=None, step=self.spec.dep_q) for _ in self.layers]

    def __call__(self, x: mx.array, step: int, cache: list[KVCache]) -> mx.array:
        """``x (B, 1, depformer_dim)`` at step ``step`` of the frame whose cache is ``cache``."""
        s = self.spec
        if s.depformer_pos_emb in ("sin", "sin_rope"):
            x = x + s.depformer_positional_scale * sin_embedding(
                step, 1, s.depformer_dim, s.depformer_max_period, x.dtype)
        w = s.depformer_weight_index(step)
        for layer, c in zip(self.layers, cache):
            x = layer(x, w, c)
        return x
