"""DAC-style codec (Descript's Audio Codec and our hybrid CNN + transformer variant) in MLX.

Pipeline (:class:`~mlx_speech.models.dac.spec.DACSpec`)::

    wav (B, T) -> zero-pad to a whole number of hops -> encoder (B, F, latent_dim)
      -> [encoder_transformer] -> quantizer (factorised RVQ) codes (B, K, F)
    codes -> quantizer.decode (B, F, latent_dim) -> [decoder_transformer] -> decoder
      -> wav (B, F * hop)

Child names (also torch_ref's state-dict keys): ``encoder``, ``encoder_transformer`` and
``decoder_transformer`` (hybrid presets only), ``quantizer``, ``decoder``.

Streaming (``causal=True`` only): ``encode_step(wav_chunk)`` takes any number of samples and
returns the codes of the frames completed so far; ``final=True`` zero-pads the pending tail like
the batch call. ``decode_step(codes)`` returns ``f * hop`` samples for ``f`` frames.
Concatenated outputs equal the batch calls. Non-causal models (Descript's) decode long inputs
exactly in overlapping chunks instead (:mod:`mlx_speech.models.dac.chunked`).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import AudioError, CodesError
from mlx_speech.layers.transformer import Transformer
from mlx_speech.models.dac.cnn import Decoder, Encoder
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.quantize.codes import check_codes
from mlx_speech.quantize.factorized import FactorizedRVQ
from mlx_speech.utils.mlx_cache import ensure_cpu_cache
from mlx_speech.utils.streaming import Streaming


class DACModel(Streaming, nn.Module):
    """The DAC-style codec built from its :class:`DACSpec`."""

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
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.spec.frame_rate

    @property
    def frame_size(self) -> int:
        return self.spec.hop_length

    @property
    def total_codebooks(self) -> int:
        return self.spec.total_codebooks

    @property
    def num_codebooks(self) -> int:
        return self.spec.num_codebooks

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

    def set_num_codebooks(self, num_codebooks: int) -> None:
        """Change how many codebooks ``encode`` / ``encode_step`` use by default."""
        self.spec = self.spec.replace(num_codebooks=self._k(num_codebooks))

    def remove_weight_norm(self) -> None:
        """Fold every convolution's weight norm (exact; faster inference, no more training)."""
        for _, m in self.named_modules():
            if hasattr(m, "remove_weight_norm") and m is not self:
                m.remove_weight_norm()

    # -- checks ------------------------------------------------------------------------------
    def _wav(self, wav: mx.array, who: str) -> mx.array:
        if not isinstance(wav, mx.array):
            raise AudioError(f"DAC.{who}: expected an mx.array waveform (B, T), got "
                             f"{type(wav).__name__}")
        if wav.ndim != 2 or not mx.issubdtype(wav.dtype, mx.floating):
            raise AudioError(f"DAC.{who}: expected a float waveform (B, T), got {wav.dtype} "
                             f"{tuple(wav.shape)}")
        return wav

    def _k(self, num_codebooks: int | None) -> int:
        k = self.spec.num_codebooks if num_codebooks is None else num_codebooks
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.total_codebooks:
            raise CodesError(f"DAC: num_codebooks must be an int in 1..{self.total_codebooks}, "
                             f"got {num_codebooks!r}")
        return k

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

    def _need_causal(self, who: str) -> None:
        if not self.spec.causal:
            raise ValueError(f"DAC.{who} streams causal models only; this one is not causal "
                             f"(decode it in chunks: mlx_speech.models.dac.chunked)")

    def encode_step(self, wav: mx.array, *, num_codebooks: int | None = None,
                    final: bool = False) -> mx.array:
        """Feed the next ``wav (B, t)`` samples (any ``t >= 0``); codes ``(B, K, f)`` of the
        frames this chunk completes. ``final=True`` zero-pads the pending partial frame."""
        self._need_causal("encode_step")
        wav = self._wav(wav, "encode_step")
        k = self._k(num_codebooks)
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

    def decode_step(self, codes: mx.array) -> mx.array:
        """Feed the next codes ``(B, K, f)``; returns ``(B, f * hop)`` samples."""
        self._need_causal("decode_step")
        codes = self._codes(codes, "decode_step")
        if codes.shape[2] == 0:
            return mx.zeros((codes.shape[0], 0), dtype=mx.float32)
        x = self.quantizer.decode(codes)
        if self.has_transformer:
            x = self.decoder_transformer.step(x, self._dec_cache)
        return self.decoder.step(x)[:, :, 0]


def build_dac(spec: DACSpec) -> DACModel:
    """A random-init MLX DAC model from its spec."""
    return DACModel(spec)
