"""WavLM, HuBERT and wav2vec 2.0 encoders in torch (mirror of
``mlx_speech/models/ssl/wav2vec2.py``; see its docstring for the layout, the two layer
placements and the padding rules).

Layout (names ours, equal to the MLX keys; :mod:`mlx_speech.models.ssl.hf` maps transformers')::

    feature_extractor.conv_layers.N.{conv, norm}     waveform -> 50 Hz conv features
    feature_projection.{layer_norm, projection}      -> hidden_size
    encoder.pos_conv_embed.{conv, batch_norm}        grouped positional convolution
    encoder.layer_norm
    encoder.layers.N.{self_attn, norm1, linear1, linear2, norm2}

``hidden_states(wav, upto=, lengths=, adapters=)`` returns ``[h0, h1, ..., h_L]`` as
transformers 5's ``output_hidden_states=True`` (pre-norm models: ``h_L`` before the final
``layer_norm``, which ``forward`` adds). ``adapters[i]``, when given, runs in parallel to layer
``i``: ``h_{i+1} = layer_i(h_i) + adapters[i](h_i)``; WavLM's position bias still goes from
layer to layer unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mlx_speech.errors import AudioError
from mlx_speech.models.ssl.inputs import layer_adapters, normalize_waveform
from mlx_speech.models.ssl.spec import Wav2Vec2Spec
from torch_ref.layers.attention import MultiHeadAttention
from torch_ref.layers.norms import LayerNorm
from torch_ref.models.ssl.base import SSLFeatures
from torch_ref.models.ssl.frontend import (FeatureEncoder, FeatureProjection,
                                           PositionalConvEmbedding, activation)
from torch_ref.models.ssl.wavlm import WavLMAttention

Adapter = Callable[[torch.Tensor], torch.Tensor]


class EncoderLayer(nn.Module):
    """One transformer layer, post-norm or pre-norm (``spec.do_stable_layer_norm``)."""

    def __init__(self, spec: Wav2Vec2Spec, *, index: int) -> None:
        super().__init__()
        D = spec.hidden_size
        self.pre_norm = spec.do_stable_layer_norm
        self.wavlm = spec.model_type == "wavlm"
        if self.wavlm:
            self.self_attn = WavLMAttention(
                dim=D, num_heads=spec.num_attention_heads, num_buckets=spec.num_buckets,
                max_distance=spec.max_bucket_distance, has_relative_position_bias=index == 0)
        else:
            self.self_attn = MultiHeadAttention(dim=D, num_heads=spec.num_attention_heads,
                                                bias=True, rope=False, causal=False)
        self.norm1 = LayerNorm(dim=D, eps=spec.layer_norm_eps)
        self.linear1 = nn.Linear(D, spec.intermediate_size)
        self.linear2 = nn.Linear(spec.intermediate_size, D)
        self.norm2 = LayerNorm(dim=D, eps=spec.layer_norm_eps)
        self._act = activation(spec.hidden_act)

    def _attn(self, x: torch.Tensor, position_bias: torch.Tensor | None,
              key_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.wavlm:
            return self.self_attn(x, position_bias, key_mask=key_mask)
        return self.self_attn(x, mask=key_mask), None

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x``: ``(B, T, D)``; returns ``(x, position_bias)`` (WavLM's bias passed on)."""
        if self.pre_norm:
            a, position_bias = self._attn(self.norm1(x), position_bias, key_mask)
            x = x + a
            return x + self.linear2(self._act(self.linear1(self.norm2(x)))), position_bias
        a, position_bias = self._attn(x, position_bias, key_mask)
        x = self.norm1(x + a)
        return self.norm2(x + self.linear2(self._act(self.linear1(x)))), position_bias


class Encoder(nn.Module):
    """Positional convolution + transformer layers; returns the list of hidden states."""

    def __init__(self, spec: Wav2Vec2Spec) -> None:
        super().__init__()
        self.pre_norm = spec.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(
            dim=spec.hidden_size, kernel_size=spec.num_conv_pos_embeddings,
            groups=spec.num_conv_pos_embedding_groups, batch_norm=spec.conv_pos_batch_norm,
            act=spec.feat_extract_activation)
        self.layer_norm = LayerNorm(dim=spec.hidden_size, eps=spec.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(spec, index=i)
                                    for i in range(spec.num_hidden_layers))

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None,
                upto: int | None = None,
                adapters: Sequence[Adapter | None] | None = None) -> list[torch.Tensor]:
        """``x``: projected features ``(B, F, D)``; returns ``[h0, ..., h_upto]``.

        ``adapters[i]`` (optional) runs in parallel to layer ``i``:
        ``h_{i+1} = layer_i(h_i) + adapters[i](h_i)``.
        """
        if key_mask is not None:
            x = x * key_mask[..., None].to(x.dtype)
        x = x + self.pos_conv_embed(x)
        if not self.pre_norm:
            x = self.layer_norm(x)
        states = [x]
        position_bias = None
        upto = len(self.layers) if upto is None else upto
        extra = layer_adapters(adapters, len(self.layers))
        for layer, adapter in zip(self.layers[:upto], extra):
            y, position_bias = layer(x, position_bias, key_mask)
            x = y if adapter is None else y + adapter(x)
            states.append(x)
        return states


class Wav2Vec2Model(SSLFeatures, nn.Module):
    """WavLM / HuBERT / wav2vec 2.0 encoder (``spec.model_type``); waveform ``(B, T)`` at 16 kHz.

    ``forward(wav)`` -> ``last_hidden_state (B, F, D)``; ``hidden_states(wav, upto=i)`` ->
    ``[h0 .. h_i]``; ``features(wav, layers=[...])`` (see :class:`SSLFeatures`).
    """

    def __init__(self, spec: Wav2Vec2Spec) -> None:
        super().__init__()
        self.spec = spec
        self.num_layers = spec.num_hidden_layers
        self.feature_extractor = FeatureEncoder(spec)
        self.feature_projection = FeatureProjection(
            in_dim=spec.conv_dim[-1], out_dim=spec.hidden_size,
            layer_norm=spec.feat_proj_layer_norm, eps=spec.layer_norm_eps)
        self.encoder = Encoder(spec)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` 16 kHz samples."""
        return self.feature_extractor.num_frames(num_samples)

    def prepare(self, wav: np.ndarray) -> dict:
        """16 kHz ``(B, T)`` float32 numpy -> ``hidden_states`` inputs (optional normalisation)."""
        if self.num_frames(wav.shape[1]) <= 0:
            raise AudioError(f"SSL features: {wav.shape[1]} samples is shorter than the encoder's "
                             f"receptive field ({self.feature_extractor.receptive_field} samples "
                             f"at 16 kHz)")
        if self.spec.do_normalize:
            wav = normalize_waveform(wav)  # the wav2vec 2.0 feature extractor's, per utterance
        return {"wav": torch.from_numpy(np.ascontiguousarray(wav, np.float32)).to(self._device())}

    def frame_mask(self, lengths: Sequence[int] | torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(B, F)`` bool: frame valid for a row with ``lengths[b]`` valid samples."""
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.detach().cpu().numpy()
        n = np.array([self.num_frames(int(v)) for v in np.asarray(lengths).reshape(-1)])
        return torch.from_numpy(np.arange(num_frames)[None, :] < n[:, None]).to(self._device())

    def hidden_states(self, wav: torch.Tensor, *, upto: int | None = None,
                      lengths: Sequence[int] | torch.Tensor | None = None,
                      adapters: Sequence[Adapter | None] | None = None) -> list[torch.Tensor]:
        """``wav (B, T)`` -> ``[h0, ..., h_upto]`` each ``(B, F, D)`` (``upto`` None: all layers).

        ``lengths``: valid samples per row for right-padded batches. ``adapters``: up to
        ``num_layers`` callables (or None) run in parallel to the layers,
        ``h_{i+1} = layer_i(h_i) + adapters[i](h_i)`` (see
        :func:`mlx_speech.models.ssl.inputs.layer_adapters`).
        """
        if wav.dim() != 2:
            raise ValueError(f"{self.spec.model_type}: expected waveform (B, T), "
                             f"got {tuple(wav.shape)}")
        feats = self.feature_extractor(wav)
        key_mask = None if lengths is None else self.frame_mask(lengths, feats.shape[1])
        x = self.feature_projection(feats)
        return self.encoder(x, key_mask=key_mask, upto=upto, adapters=adapters)

    def final_norm(self, h_last: torch.Tensor) -> torch.Tensor:
        """``last_hidden_state`` from the last hidden state (pre-norm models add the final norm)."""
        return self.encoder.layer_norm(h_last) if self.spec.do_stable_layer_norm else h_last

    def forward(self, wav: torch.Tensor,
                lengths: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """``wav (B, T)`` -> ``last_hidden_state (B, F, D)``."""
        return self.final_norm(self.hidden_states(wav, lengths=lengths)[-1])
