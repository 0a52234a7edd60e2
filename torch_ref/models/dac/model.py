"""DAC-style codec, the torch mirror of ``mlx_speech/models/dac/model.py``.

Same constructor (``DACModel(spec)``), child names, state-dict keys and methods (``encode``,
``decode``, ``encode_step``, ``decode_step``, ...). Waveforms ``(B, T)``, codes ``(B, K, F)``
int32, latents ``(B, F, D)``; the CNN runs channels-first inside. Causal models stream layer by
layer; non-causal ones with look-ahead (``torch_ref/models/dac/chunked.py``). Never imports mlx.
"""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.errors import AudioError
from mlx_speech.models.dac.receptive import ReceptiveField
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.models.codec_base import SpecCodec
from mlx_speech.utils.streaming import Streaming
from torch_ref.layers.transformer import Transformer
from torch_ref.models.dac import chunked
from torch_ref.models.dac.cnn import Decoder, Encoder
from torch_ref.quantize.codes import check_codes, check_wav
from torch_ref.quantize.factorized import FactorizedRVQ


class DACModel(SpecCodec, Streaming, nn.Module):
    """The DAC-style codec built from its :class:`DACSpec`."""

    CODEC_NAME = "DAC"

    def __init__(self, spec: DACSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        cnn = dict(dilations=list(spec.dilations), kernel=spec.residual_kernel,
                   causal=spec.causal, wn=spec.weight_norm)
        self.encoder = Encoder(encoder_dim=spec.encoder_dim, rates=list(spec.encoder_rates),
                               latent_dim=spec.latent_dim, **cnn)
        self.encoder_transformer = (Transformer(**spec.transformer_args())
                                    if spec.transformer_layers else None)
        self.quantizer = FactorizedRVQ(dim=spec.latent_dim, codebook_sizes=spec.codebook_sizes,
                                       codebook_dim=spec.codebook_dim,
                                       quantizer_dropout=spec.quantizer_dropout,
                                       weight_norm=spec.weight_norm)
        self.decoder_transformer = (Transformer(**spec.transformer_args())
                                    if spec.transformer_layers else None)
        self.decoder = Decoder(latent_dim=spec.latent_dim, decoder_dim=spec.decoder_dim,
                               rates=list(spec.decoder_rates), **cnn)
        self.reset_state()

    # -- sizes -------------------------------------------------------------------------------
    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.spec.codebook_sizes)

    @property
    def codebook_size(self) -> int:
        return max(self.spec.codebook_sizes)

    @property
    def has_transformer(self) -> bool:
        return self.encoder_transformer is not None

    @property
    def streamable(self) -> bool:
        """Whether ``encode_step`` / ``decode_step`` work (not: non-causal with transformers)."""
        return self.spec.causal or not self.has_transformer

    def receptive_field(self) -> ReceptiveField:
        """The CNN's exact receptive field and look-ahead, derived from its layers."""
        return chunked.receptive_field(self)

    def remove_weight_norm(self) -> None:
        """Fold every convolution's weight norm (exact)."""
        for m in self.modules():
            if m is not self and hasattr(m, "remove_weight_norm"):
                m.remove_weight_norm()

    # -- checks ------------------------------------------------------------------------------
    def _wav(self, wav: torch.Tensor, who: str) -> torch.Tensor:
        return check_wav(wav, f"DAC.{who}")

    def _codes(self, codes: torch.Tensor, who: str) -> torch.Tensor:
        return check_codes(codes, self.codebook_sizes, f"DAC.{who}")

    # -- batch -------------------------------------------------------------------------------
    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """Unquantized latents ``(B, F, latent_dim)`` of ``wav (B, T)``, ``F = ceil(T / hop)``."""
        wav = self._wav(wav, "encode")
        if wav.shape[1] == 0:
            raise AudioError("DAC.encode: empty waveform")
        pad = -wav.shape[1] % self.frame_size
        x = nn.functional.pad(wav, (0, pad)) if pad else wav
        x = self.encoder(x[:, None, :]).transpose(1, 2)
        if self.has_transformer:
            x = self.encoder_transformer(x)
        return x

    def encode(self, wav: torch.Tensor, *, num_codebooks: int | None = None) -> torch.Tensor:
        k = self._k(num_codebooks)
        return self.quantizer.encode(self.encode_latents(wav), num_levels=k)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, F * hop)`` of quantized latents ``(B, F, latent_dim)``."""
        x = latents
        if self.has_transformer:
            x = self.decoder_transformer(x)
        return self.decoder(x.transpose(1, 2))[:, 0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self._codes(codes, "decode")
        if codes.shape[2] == 0:
            return torch.zeros(codes.shape[0], 0)
        return self.decode_latents(self.quantizer.decode(codes))

    def forward(self, wav: torch.Tensor, *, num_codebooks: int | None = None) -> torch.Tensor:
        return self.decode(self.encode(wav, num_codebooks=num_codebooks))[:, :wav.shape[1]]

    # -- streaming ---------------------------------------------------------------------------
    def _reset_own_state(self) -> None:
        self._enc_cache = self.encoder_transformer.make_cache() if self.has_transformer else None
        self._dec_cache = self.decoder_transformer.make_cache() if self.has_transformer else None
        self._samples_in = 0
        self._enc_stream: chunked.EncodeStream | None = None  # non-causal streams, made on use
        self._dec_stream: chunked.DecodeStream | None = None

    @torch.inference_mode()
    def encode_step(self, wav: torch.Tensor, *, num_codebooks: int | None = None,
                    final: bool = False) -> torch.Tensor:
        """Next ``wav (B, t)`` samples -> codes ``(B, K, f)`` of the frames whose inputs have all
        arrived; ``final=True`` zero-pads the partial frame and flushes. Latency as MLX's:
        none for causal models, ``receptive_field().encoder_right`` samples otherwise."""
        wav = self._wav(wav, "encode_step")
        k = self._k(num_codebooks)
        if not self.spec.causal:
            if self._enc_stream is None:
                self._enc_stream = chunked.EncodeStream(self)
            codes = self._enc_stream.step(wav, k, final)
            if final:
                self._enc_stream = None
            return codes
        self._samples_in += wav.shape[1]
        if final:
            pad = -self._samples_in % self.frame_size
            if pad:
                wav = nn.functional.pad(wav, (0, pad))
                self._samples_in += pad
        empty = torch.zeros(wav.shape[0], k, 0, dtype=torch.int32)
        if wav.shape[1] == 0:
            return empty
        x = self.encoder.step(wav[:, None, :])
        if x.shape[2] == 0:
            return empty
        x = x.transpose(1, 2)
        if self.has_transformer:
            x = self.encoder_transformer.step(x, self._enc_cache)
        return self.quantizer.encode(x, num_levels=k)

    @torch.inference_mode()
    def decode_step(self, codes: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        """Next codes ``(B, K, f)`` -> the samples now complete. Causal: ``f * hop`` at once
        (``final`` changes nothing); non-causal: each sample once its right context
        (``receptive_field().decoder_right`` frames at most) is in, the rest on ``final``."""
        codes = self._codes(codes, "decode_step")
        if not self.spec.causal:
            if self._dec_stream is None:
                self._dec_stream = chunked.DecodeStream(self)
            wav = self._dec_stream.step(codes, final)
            if final:
                self._dec_stream = None
            return wav
        if codes.shape[2] == 0:
            return torch.zeros(codes.shape[0], 0)
        x = self.quantizer.decode(codes)
        if self.has_transformer:
            x = self.decoder_transformer.step(x, self._dec_cache)
        return self.decoder.step(x.transpose(1, 2))[:, 0]


def build_dac(spec: DACSpec) -> DACModel:
    """A random-init torch_ref DAC model from its spec."""
    return DACModel(spec)
