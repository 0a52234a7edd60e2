"""w2v-BERT 2.0 encoder in torch: fbank features -> projection -> Conformer layers (mirror of
``mlx_speech/models/ssl/w2v_bert.py``; see its docstring for the layer and the three relative
position schemes matched against transformers).

Layout (names ours, equal to the MLX keys)::

    feature_projection.{layer_norm, projection}          160 -> hidden_size
    encoder.layers.N.ffn1.{norm, linear1, linear2}       shared ConformerFeedForward (SiLU)
    encoder.layers.N.norm_attn
    encoder.layers.N.self_attn.{q,k,v,out}_proj [+ linear_pos, pos_bias_u, pos_bias_v
                                                 | distance_embedding]
    encoder.layers.N.conv.{norm_in, pointwise_in, depthwise, norm, pointwise_out}
    encoder.layers.N.ffn2.{norm, linear1, linear2}
    encoder.layers.N.norm_out

The per-length position tables (Transformer-XL sinusoids and skew indices, Shaw distance
indices, rotary cos / sin) come from :func:`mlx_speech.models.ssl.tables.w2v_bert_positions`,
the numpy function the MLX encoder uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mlx_speech.errors import AudioError
from mlx_speech.models.ssl.inputs import layer_adapters
from mlx_speech.models.ssl.spec import W2VBertSpec
from mlx_speech.models.ssl.tables import FRAME_LENGTH, w2v_bert_positions
from torch_ref.layers.conformer import ConformerConvModule, ConformerFeedForward
from torch_ref.layers.norms import LayerNorm
from torch_ref.models.ssl.attention import attend, merge_heads, split_heads
from torch_ref.models.ssl.base import SSLFeatures
from torch_ref.models.ssl.fbank import KaldiFbank
from torch_ref.models.ssl.frontend import FeatureProjection

Adapter = Callable[[torch.Tensor], torch.Tensor]


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
            self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.head_dim))
            self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.head_dim))
        elif position_type == "relative_key":
            self.distance_embedding = nn.Embedding(left_max + right_max + 1, self.head_dim)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        h = x.reshape(B, T, self.num_heads, self.head_dim)
        half = self.head_dim // 2
        rot = torch.cat([-h[..., half:], h[..., :half]], dim=-1)
        return (h * cos[:, None] + rot * sin[:, None]).reshape(B, T, D)

    @staticmethod
    def _gather(scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        B, H, T = scores.shape[:3]
        return torch.gather(scores, -1, index.expand(B, H, T, index.shape[-1]))

    def forward(self, x: torch.Tensor, positions: dict | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
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
            p = p.reshape(2 * T - 1, self.num_heads, self.head_dim).permute(1, 2, 0)
            bd = (q + self.pos_bias_v[None, :, None, :]) @ p  # (B, H, T, 2T-1)
            bias = self._gather(bd, positions["skew"]) * self.scale
            q = q + self.pos_bias_u[None, :, None, :]
        elif self.position_type == "relative_key":
            table = q @ self.distance_embedding.weight.T  # (B, H, T, L + R + 1)
            bias = self._gather(table, positions["distance"]) * self.scale
        o = attend(q, k, v, scale=self.scale, bias=bias, key_mask=key_mask)
        return self.out_proj(merge_heads(o))


class W2VBertLayer(nn.Module):
    """One w2v-BERT Conformer layer, ``(B, T, D) -> (B, T, D)``: ``x += 0.5 ffn1(x);
    x += attn(norm_attn(x)); x += conv(x); x += 0.5 ffn2(x); x = norm_out(x)``."""

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
        # upstream's convolution module is causal and bias-free: the shared module says so
        self.conv = ConformerConvModule(dim=D, kernel_size=spec.conv_depthwise_kernel_size,
                                        causal=True, bias=False, norm_eps=eps)
        self.ffn2 = ConformerFeedForward(**ff)
        self.norm_out = LayerNorm(dim=D, eps=eps)

    def forward(self, x: torch.Tensor, positions: dict | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
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
        self.layers = nn.ModuleList(W2VBertLayer(spec) for _ in range(spec.num_hidden_layers))

    def positions(self, length: int, device: torch.device | None = None) -> dict:
        """Per-forward position tables shared by all layers (upstream's ``embed_positions``)."""
        s = self._spec
        tables = w2v_bert_positions(
            s.position_embeddings_type, length, hidden_size=s.hidden_size,
            num_heads=s.num_attention_heads, left_max=s.left_max_position_embeddings,
            right_max=s.right_max_position_embeddings, rotary_base=s.rotary_embedding_base)
        return {k: torch.from_numpy(v.astype(np.int64) if v.dtype.kind == "i" else v).to(device)
                for k, v in tables.items()}

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None,
                upto: int | None = None,
                adapters: Sequence[Adapter | None] | None = None) -> list[torch.Tensor]:
        """``x (B, F, D)`` -> ``[h0, ..., h_upto]``; ``adapters[i]`` (optional) runs in parallel
        to layer ``i``: ``h_{i+1} = layer_i(h_i) + adapters[i](h_i)``."""
        if key_mask is not None:
            x = x * key_mask[..., None].to(x.dtype)
        positions = self.positions(x.shape[1], x.device)
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
    (:class:`~torch_ref.models.ssl.fbank.KaldiFbank`) first; ``hidden_states(input_features,
    mask=...)`` takes precomputed features and the ``(B, F)`` bool padding mask (True = real
    frame). ``forward`` returns the last layer's output.
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
        if wav.shape[1] < FRAME_LENGTH:
            raise AudioError(f"SSL features: w2v-BERT needs at least {FRAME_LENGTH} samples "
                             f"(25 ms at 16 kHz), got {wav.shape[1]}")
        feats, mask = self._fbank(wav, device=self._device())
        return {"input_features": feats, "mask": mask}

    def hidden_states(self, input_features: torch.Tensor, *, mask: torch.Tensor | None = None,
                      upto: int | None = None,
                      adapters: Sequence[Adapter | None] | None = None) -> list[torch.Tensor]:
        """``input_features (B, F, 160)`` -> ``[h0, ..., h_upto]`` each ``(B, F, D)``.

        ``adapters``: up to ``num_layers`` callables (or None) run in parallel to the layers,
        ``h_{i+1} = layer_i(h_i) + adapters[i](h_i)`` (see
        :func:`mlx_speech.models.ssl.inputs.layer_adapters`).
        """
        dim = self.spec.feature_projection_input_dim
        if input_features.dim() != 3 or input_features.shape[-1] != dim:
            raise ValueError(f"w2v-BERT expects input features (B, F, {dim}), "
                             f"got {tuple(input_features.shape)}")
        if mask is not None:
            mask = mask.to(device=input_features.device, dtype=torch.bool)
            if bool(mask.all()):
                mask = None  # nothing padded: skip the masking work
        x = self.feature_projection(input_features)
        return self.encoder(x, key_mask=mask, upto=upto, adapters=adapters)

    def forward(self, input_features: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden_states(input_features, mask=mask)[-1]
