"""DAC-style codec (Descript's Audio Codec and our hybrid CNN + transformer variant) in MLX.

Pipeline (:class:`~mlx_speech.models.dac.spec.DACSpec`)::

    wav (B, T) -> zero-pad to a whole number of hops -> encoder (B, F, latent_dim)
      -> [encoder_transformer] -> quantizer (factorised RVQ) codes (B, K, F)
    codes -> quantizer.decode (B, F, latent_dim) -> [decoder_transformer] -> decoder
      -> wav (B, F * hop)

Child names (also torch_ref's state-dict keys): ``encoder``, ``encoder_transformer`` and
``decoder_transformer`` (hybrid presets only), ``quantizer``, ``decoder``.

Streaming: ``encode_step(wav_chunk, final=...)`` takes any number of samples and returns the
codes of the frames completed so far; ``decode_step(codes, final=...)`` the samples completed so
far. Concatenated outputs equal the batch calls for any chunk sizes. Causal models stream every
layer causally (no look-ahead: ``f`` frames in, ``f * hop`` samples out). Non-causal models
(Descript's) stream with look-ahead (:mod:`mlx_speech.models.dac.chunked`): output is held back
until its right context has arrived and ``final=True`` flushes it; a non-causal model with
transformer layers cannot stream (ValueError).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import AudioError
from mlx_speech.layers.transformer import Transformer
from mlx_speech.models.dac import chunked
from mlx_speech.models.dac.cnn import Decoder, Encoder
from mlx_speech.models.dac.receptive import ReceptiveField
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.quantize.codes import check_codes, check_wav
from mlx_speech.quantize.factorized import FactorizedRVQ
from mlx_speech.utils.mlx_cache import ensure_cpu_cache
from mlx_speech.models.codec_base import SpecCodec
from mlx_speech.utils.streaming import Streaming


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
        if spec.transformer_layers:
            self.encoder_transformer = Transformer(**spec.transformer_args())
        self.quantizer = FactorizedRVQ(dim=spec.latent_dim, codebook_sizes=spec.codebook_sizes,
                                       codebook_dim=spec.codebook_dim,
                                       quantizer_dropout=spec.quantizer_dropout,
                                       weight_norm=spec.weight_norm)
        if spec.transformer_layers:
            self.decoder_transformer = Transformer(**spec.transformer_args())
        self.decoder = Decoder(latent_dim=spec.latent_dim, decoder_dim=spec.decoder_dim,
                               rates=list(spec.decoder_rates), **cnn)
        ensure_cpu_cache()  # long activations reuse freed buffers (utils/mlx_cache.py)
        self.reset_state()

    # -- sizes -------------------------------------------------------------------------------
    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.spec.codebook_sizes)

    @property
    def codebook_size(self) -> int:
        """The largest codebook (every code of every level is below it)."""
        return max(self.spec.codebook_sizes)

    @property
    def has_transformer(self) -> bool:
        return "encoder_transformer" in self

    @property
    def streamable(self) -> bool:
        """Whether ``encode_step`` / ``decode_step`` work: every model but a non-causal one
        with transformer layers (those attend to the whole sequence)."""
        return self.spec.causal or not self.has_transformer

    def receptive_field(self) -> ReceptiveField:
        """The CNN's exact receptive field and look-ahead, derived from its layers
        (:func:`mlx_speech.models.dac.chunked.receptive_field`)."""
        return chunked.receptive_field(self)

    def remove_weight_norm(self) -> None:
        """Fold every convolution's weight norm (exact; faster inference, no more training)."""
        for _, m in self.named_modules():
            if hasattr(m, "remove_weight_norm") and m is not self:
                m.remove_weight_norm()

    # -- checks ------------------------------------------------------------------------------
    def _wav(self, wav: mx.array, who: str) -> mx.array:
        return check_wav(wav, f"DAC.{who}")

    def _codes(self, codes: mx.array, who: str) -> mx.array:
        return check_codes(codes, self.codebook_sizes, f"DAC.{who}")

    # -- batch -------------------------------------------------------------------------------
    def encode_latents(self, wav: mx.array) -> mx.array:
        """Unquantized latents ``(B, F, latent_dim)`` of ``wav (B, T)``, ``F = ceil(T / hop)``
        (after the encoder transformer of a hybrid)."""
        wav = self._wav(wav, "encode")
        if wav.shape[1] == 0:
            raise AudioError("DAC.encode: empty waveform")
        pad = -wav.shape[1] % self.frame_size
        x = mx.pad(wav, [(0, 0), (0, pad)]) if pad else wav
        x = self.encoder(x[:, :, None])
        if self.has_transformer:
            x = self.encoder_transformer(x)
        return x

    def encode(self, wav: mx.array, *, num_codebooks: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``wav (B, T)`` float in [-1, 1] at ``sample_rate``."""
        k = self._k(num_codebooks)
        return self.quantizer.encode(self.encode_latents(wav), num_levels=k)

    def decode_latents(self, latents: mx.array) -> mx.array:
        """Waveform ``(B, F * hop)`` of quantized latents ``(B, F, latent_dim)``."""
        x = latents
        if self.has_transformer:
            x = self.decoder_transformer(x)
        return self.decoder(x)[:, :, 0]

    def decode(self, codes: mx.array) -> mx.array:
        """Waveform ``(B, F * hop)`` float32 of codes ``(B, K, F)``, any ``K``."""
        codes = self._codes(codes, "decode")
        if codes.shape[2] == 0:
            return mx.zeros((codes.shape[0], 0), dtype=mx.float32)
        return self.decode_latents(self.quantizer.decode(codes))

    def __call__(self, wav: mx.array, *, num_codebooks: int | None = None) -> mx.array:
        """Round trip ``decode(encode(wav))`` trimmed to the input length."""
        return self.decode(self.encode(wav, num_codebooks=num_codebooks))[:, :wav.shape[1]]

    # -- streaming ---------------------------------------------------------------------------
    def _reset_own_state(self) -> None:
        """New encode and decode streams (the protocol clears every conv buffer too)."""
        self._enc_cache = self.encoder_transformer.make_cache() if self.has_transformer else None
        self._dec_cache = self.decoder_transformer.make_cache() if self.has_transformer else None
        self._samples_in = 0
        self._enc_stream: chunked.EncodeStream | None = None  # non-causal streams, made on use
        self._dec_stream: chunked.DecodeStream | None = None

    def encode_step(self, wav: mx.array, *, num_codebooks: int | None = None,
                    final: bool = False) -> mx.array:
        """Feed the next ``wav (B, t)`` samples (any ``t >= 0``); codes ``(B, K, f)`` of the
        frames whose inputs have all arrived. ``final=True`` zero-pads the pending partial
        frame like ``encode`` and returns everything still held.

        Latency: causal models emit a frame as soon as its ``hop`` samples are in. Non-causal
        models look ahead ``receptive_field().encoder_right`` samples past the frame's end
        (dac_44khz: 3733 samples, 85 ms); after ``final=True`` the next call starts a new
        stream. Concatenated outputs equal ``encode`` for any chunk sizes.
        """
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
                wav = mx.pad(wav, [(0, 0), (0, pad)])
                self._samples_in += pad
        empty = mx.zeros((wav.shape[0], k, 0), dtype=mx.int32)
        if wav.shape[1] == 0:
            return empty
        x = self.encoder.step(wav[:, :, None])
        if x.shape[1] == 0:
            return empty
        if self.has_transformer:
            x = self.encoder_transformer.step(x, self._enc_cache)
        return self.quantizer.encode(x, num_levels=k)

    def decode_step(self, codes: mx.array, *, final: bool = False) -> mx.array:
        """Feed the next codes ``(B, K, f)``; returns ``(B, t)``, the samples now complete.

        Latency: causal models return ``t = f * hop`` at once (``final`` changes nothing).
        Non-causal models hold a frame's audio back until ``receptive_field().decoder_right``
        later frames have arrived (dac_44khz: 10 frames, 116 ms), emitting each sample as soon
        as its own context is in; ``final=True`` returns the rest and ends the stream.
        Concatenated outputs equal ``decode`` for any chunk sizes.
        """
        codes = self._codes(codes, "decode_step")
        if not self.spec.causal:
            if self._dec_stream is None:
                self._dec_stream = chunked.DecodeStream(self)
            wav = self._dec_stream.step(codes, final)
            if final:
                self._dec_stream = None
            return wav
        if codes.shape[2] == 0:
            return mx.zeros((codes.shape[0], 0), dtype=mx.float32)
        x = self.quantizer.decode(codes)
        if self.has_transformer:
            x = self.decoder_transformer.step(x, self._dec_cache)
        return self.decoder.step(x)[:, :, 0]


def build_dac(spec: DACSpec) -> DACModel:
    """A random-init MLX DAC model from its spec."""
    return DACModel(spec)
