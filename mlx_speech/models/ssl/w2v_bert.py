"""w2v-BERT 2.0 encoder in MLX: fbank features -> projection -> Conformer layers.

Layout (names ours, aligned with :mod:`mlx_speech.layers.conformer`; :mod:`mlx_speech.models.ssl.hf` maps
transformers' ``Wav2Vec2BertModel``)::

    feature_projection.{layer_norm, projection}          160 -> hidden_size
    encoder.layers.N.ffn1.{norm, linear1, linear2}       shared ConformerFeedForward (SiLU)
    encoder.layers.N.norm_attn
    encoder.layers.N.self_attn.{q,k,v,out}_proj [+ linear_pos, pos_bias_u, pos_bias_v
                                                 | distance_embedding]
    encoder.layers.N.conv.{norm_in, pointwise_in, depthwise, norm, pointwise_out}
                                                         shared ConformerConvModule
    encoder.layers.N.ffn2.{norm, linear1, linear2}
    encoder.layers.N.norm_out

One layer: ``x += 0.5 ffn1(x); x += attn(norm_attn(x)); x += conv(x); x += 0.5 ffn2(x);
x = norm_out(x)``. Upstream's convolution module is *causal* (the depthwise convolution is
left-padded by ``K - 1``) and bias-free, which is exactly the shared module with ``causal=True,
bias=False``; its padding mask zeroes padded frames after the first LayerNorm upstream and
after the GLU here, the same thing since the pointwise convolution has no bias.

Relative positions (``position_embeddings_type``), matching transformers:

* ``"relative_key"`` (Shaw et al. 2018; the released checkpoint): a table
  ``distance_embedding (L + R + 1, Dh)`` indexed by ``clip(key - query, -L, R)``; the score bias
  is ``q . E[d] * Dh**-0.5``. Computed as ``q @ E^T`` (``L + R + 1`` columns) then gathered, not
  as upstream's ``(T, T, Dh)`` einsum.
* ``"relative"`` (Transformer-XL): sinusoids for relative positions ``T-1 .. -(T-1)`` (float32,
  ``sin`` on even / ``cos`` on odd features), projected by ``linear_pos``; the bias is
  ``(q + pos_bias_v) . p[query - key] * Dh**-0.5`` and the content term uses ``q + pos_bias_u``.
  Upstream's pad-reshape "skew" picks column ``T - 1 - i + j`` for query ``i``, key ``j``: a
  gather here.
* ``"rotary"``: upstream rotates the layer's *input* split into heads (rotate-half convention),
  before the q and k projections (v is not rotated); so do we.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.layers.conformer import ConformerConvModule, ConformerFeedForward
from mlx_speech.layers.norms import LayerNorm
from mlx_speech.models.ssl.attention import attend, merge_heads, split_heads
from mlx_speech.models.ssl.base import SSLFeatures
from mlx_speech.models.ssl.fbank import KaldiFbank
from mlx_speech.models.ssl.frontend import FeatureProjection
from mlx_speech.models.ssl.inputs import layer_adapters
from mlx_speech.models.ssl.spec import W2VBertSpec
from mlx_speech.models.ssl.tables import w2v_bert_positions

Adapter = Callable[[mx.array], mx.array]


class W2VBertSelfAttention(nn.Module):
    """Self-attention with w2v-BERT's relative position options, ``(B, T, D) -> (B, T, D)``."""

    def __init__(self, *, dim: int, num_heads: int, position_type: str | None,
                 left_max: int = 64, right_max: int = 8) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.position_type = position_type
        self.left_max, self.right_max = left_max, right_max
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if position_type == "relative":
            self.linear_pos = nn.Linear(dim, dim, bias=False)
            self.pos_bias_u = mx.zeros((num_heads, self.head_dim))
            self.pos_bias_v = mx.zeros((num_heads, self.head_dim))
        elif position_type == "relative_key":
            self.distance_embedding = nn.Embedding(left_max + right_max + 1, self.head_dim)

    def _rotate(self, x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
        B, T, D = x.shape
        h = x.reshape(B, T, self.num_heads, self.head_dim)
        half = self.head_dim // 2
        rot = mx.concatenate([-h[..., half:], h[..., :half]], axis=-1)
        return (h * cos[:, None] + rot * sin[:, None]).reshape(B, T, D)

    def _gather(self, scores: mx.array, index: mx.array) -> mx.array:
        B, H, T = scores.shape[:3]
        return mx.take_along_axis(scores, mx.broadcast_to(index, (B, H, T, index.shape[-1])),
                                  axis=-1)

    def __call__(self, x: mx.array, positions: dict | None = None,
                 key_mask: mx.array | None = None) -> mx.array:
        """``x``: ``(B, T, D)``; ``positions``: from :meth:`W2VBertEncoder.positions`."""
        qk_in = x
        if self.position_type == "rotary":
            qk_in = self._rotate(x, positions["cos"], positions["sin"])
        q = split_heads(self.q_proj(qk_in), self.num_heads)
        k = split_heads(self.k_proj(qk_in), self.num_heads)
        v = split_heads(self.v_proj(x), self.num_heads)
        bias = None
        if self.position_type == "relative":
            T = x.shape[1]
            p = self.linear_pos(positions["sinusoids"])  # (2T-1, D)
            p = p.reshape(2 * T - 1, self.num_heads, self.head_dim).transpose(1, 2, 0)
            bd = (q + self.pos_bias_v[None, :, None, :]) @ p  # (B, H, T, 2T-1)
            bias = self._gather(bd, positions["skew"]) * self.scale
            q = q + self.pos_bias_u[None, :, None, :]
        elif self.position_type == "relative_key":
            table = q @ self.distance_embedding.weight.T  # (B, H, T, L + R + 1)
            bias = self._gather(table, positions["distance"]) * self.scale
        o = attend(q, k, v, scale=self.scale, bias=bias, key_mask=key_mask)
        return self.out_proj(merge_heads(o))


class W2VBertLayer(nn.Module):
    """One w2v-BERT Conformer layer, ``(B, T, D) -> (B, T, D)``."""

    def __init__(self, spec: W2VBertSpec) -> None:
        super().__init__()
        D, eps = spec.hidden_size, spec.layer_norm_eps
        ff = dict(dim=D, ffn_dim=spec.intermediate_size, activation="silu", bias=True,
                  norm_eps=eps)
        self.ffn1 = ConformerFeedForward(**ff)
        self.norm_attn = LayerNorm(dim=D, eps=eps)
        self.self_attn = W2VBertSelfAttention(
            dim=D, num_heads=spec.num_attention_heads,
            position_type=spec.position_embeddings_type,
            left_max=spec.left_max_position_embeddings,
            right_max=spec.right_max_position_embeddings)
        self.conv = ConformerConvModule(dim=D, kernel_size=spec.conv_depthwise_kernel_size,
                                        causal=True, bias=False, norm_eps=eps)
        self.ffn2 = ConformerFeedForward(**ff)
        self.norm_out = LayerNorm(dim=D, eps=eps)

    def __call__(self, x: mx.array, positions: dict | None = None,
                 key_mask: mx.array | None = None) -> mx.array:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.self_attn(self.norm_attn(x), positions, key_mask)
        x = x + self.conv(x, mask=key_mask)
        x = x + 0.5 * self.ffn2(x)
        return self.norm_out(x)


class W2VBertEncoder(nn.Module):
    """The Conformer stack (``layers.N``); returns the list of hidden states."""

    def __init__(self, spec: W2VBertSpec) -> None:
        super().__init__()
        self._spec = spec
        self.layers = [W2VBertLayer(spec) for _ in range(spec.num_hidden_layers)]

    def positions(self, length: int) -> dict:
        """Per-forward position tables shared by all layers (upstream's ``embed_positions``)."""
        s = self._spec
        tables = w2v_bert_positions(
            s.position_embeddings_type, length, hidden_size=s.hidden_size,
            num_heads=s.num_attention_heads, left_max=s.left_max_position_embeddings,
            right_max=s.right_max_position_embeddings, rotary_base=s.rotary_embedding_base)
        return {k: mx.array(v) for k, v in tables.items()}

    def __call__(self, x: mx.array, *, key_mask: mx.array | None = None,
                 upto: int | None = None,
                 adapters: Sequence[Adapter | None] | None = None) -> list[mx.array]:
        """``x (B, F, D)`` -> ``[h0, ..., h_upto]``; ``adapters[i]`` (optional) runs in parallel
        to layer ``i``: ``h_{i+1} = layer_i(h_i) + adapters[i](h_i)``."""
        if key_mask is not None:
            x = x * key_mask[..., None].astype(x.dtype)
        positions = self.positions(x.shape[1])
        states = [x]
        upto = len(self.layers) if upto is None else upto
        extra = layer_adapters(adapters, len(self.layers))
        for layer, adapter in zip(self.layers[:upto], extra):
            y = layer(x, positions, key_mask)
            x = y if adapter is None else y + adapter(x)
            states.append(x)
        return states


class W2VBertModel(SSLFeatures, nn.Module):
    """w2v-BERT 2.0: ``input_features (B, F, 160)`` -> hidden states ``(B, F, D)``.

    ``features(wav, layers=[...])`` computes the fbank front end
    (:class:`~mlx_speech.models.ssl.fbank.KaldiFbank`) first; ``hidden_states(input_features,
    mask=...)`` takes precomputed features (e.g. from transformers' feature extractor) and the
    ``(B, F)`` bool padding mask (True = real frame). ``__call__`` returns the last layer's
    output (upstream's ``last_hidden_state`` when the checkpoint has no adapter).
    """

    def __init__(self, spec: W2VBertSpec) -> None:
        super().__init__()
        self.spec = spec
        self.num_layers = spec.num_hidden_layers
        self.feature_projection = FeatureProjection(
            in_dim=spec.feature_projection_input_dim, out_dim=spec.hidden_size,
            layer_norm=True, eps=spec.layer_norm_eps)
        self.encoder = W2VBertEncoder(spec)
        self._fbank = KaldiFbank(num_mel_bins=spec.num_mel_bins, stride=spec.stride)

    def prepare(self, wav: np.ndarray) -> dict:
        """16 kHz ``(B, T)`` float32 numpy -> ``hidden_states`` inputs (fbank + mask)."""
        if wav.shape[1] < 400:
            from mlx_speech.errors import AudioError  # noqa: PLC0415

            raise AudioError(f"SSL features: w2v-BERT needs at least 400 samples (25 ms at "
                             f"16 kHz), got {wav.shape[1]}")
        feats, mask = self._fbank(wav)
        return {"input_features": feats, "mask": mask}

    def hidden_states(self, input_features: mx.array, *, mask: mx.array | None = None,
                      upto: int | None = None,
                      adapters: Sequence[Adapter | None] | None = None) -> list[mx.array]:
        """``input_features (B, F, 160)`` -> ``[h0, ..., h_upto]`` each ``(B, F, D)``.

        ``adapters``: up to ``num_layers`` callables (or None) run in parallel to the layers,
        ``h_{i+1} = layer_i(h_i) + adapters[i](h_i)`` (see
        :func:`mlx_speech.models.ssl.inputs.layer_adapters`).
        """
        dim = self.spec.feature_projection_input_dim
        if input_features.ndim != 3 or input_features.shape[-1] != dim:
            raise ValueError(f"w2v-BERT expects input features (B, F, {dim}), "
                             f"got {input_features.shape}")
        if mask is not None and bool(mx.all(mask).item()):
            mask = None  # nothing padded: skip the masking work
        x = self.feature_projection(input_features)
        return self.encoder(x, key_mask=mask, upto=upto, adapters=adapters)

    def __call__(self, input_features: mx.array, mask: mx.array | None = None) -> mx.array:
        return self.hidden_states(input_features, mask=mask)[-1]
