"""Mimi neural audio codec (Kyutai, 2024) in MLX: batch and streaming encode / decode.

Pipeline (official sizes, ``MimiSpec`` preset ``mimi_202407``)::

    wav (B, T) 24 kHz -> SEANet encoder (B, T/960, 512) 25 Hz -> encoder_transformer
      -> downsample (causal conv k4 s2, replicate pad) (B, F, 512) 12.5 Hz
      -> quantizer (split RVQ: 1 semantic + up to 31 acoustic codebooks of 2048) codes (B, K, F)
    codes -> quantizer.decode (B, F, 512) -> upsample (depthwise transposed conv k4 s2)
      -> decoder_transformer -> SEANet decoder -> wav (B, F * 1920)

Child names (also torch_ref's state-dict keys): ``encoder``, ``encoder_transformer``,
``downsample``, ``quantizer``, ``upsample``, ``decoder_transformer``, ``decoder``.

Batch ``encode`` zero-pads the waveform to a whole number of 1920-sample frames (moshi's
``pad_for_conv1d``), so ``F = ceil(T / 1920)``; ``decode`` returns ``F * 1920`` samples.

Streaming: ``encode_step(wav_chunk)`` takes any number of samples and returns the codes of
the frames completed so far (a frame is complete after its 1920th sample, so chunks of 1920
give one frame each); ``final=True`` zero-pads the pending tail like the batch call.
``decode_step(codes)`` returns ``f * 1920`` samples for ``f`` frames. Concatenated outputs
equal the batch calls. The state (conv buffers, KV caches) lives in ``_``-prefixed attributes;
``reset_state()`` starts new streams. Encode and decode streams are independent.

Memory cache (CPU): building a model raises MLX's CPU buffer cache
(:func:`mlx_speech.utils.mlx_cache.ensure_cpu_cache`), so the 60 MB activations of a batch call
reuse freed buffers instead of faulting in fresh pages.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import AudioError, CodesError
from mlx_speech.layers.conv import Conv1d, ConvTranspose1d
from mlx_speech.layers.transformer import Transformer
from mlx_speech.models.mimi.seanet import SEANetDecoder, SEANetEncoder
from mlx_speech.models.mimi.vq import FrozenCodebooks
from mlx_speech.quantize.codes import check_wav
from mlx_speech.quantize.rvq import SplitResidualVQ
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.specs.quantize import ema_mimi
from mlx_speech.utils.mlx_cache import CPU_CACHE_BYTES, ensure_cpu_cache  # noqa: F401
from mlx_speech.models.codec_base import SpecCodec
from mlx_speech.utils.streaming import Streaming


class MimiModel(SpecCodec, Streaming, nn.Module):
    """The Mimi codec, built from its :class:`MimiSpec` (``quantizer``: another quantizer on the
    same latents; :class:`Mimi9Model` passes its bridge)."""

    CODEC_NAME = "Mimi"

    def __init__(self, spec: MimiSpec, *, quantizer: nn.Module | None = None) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        dimension = spec.dimension
        seanet, transformer = spec.seanet_args(), spec.transformer_args()
        stride = spec.resample_stride
        self.encoder = SEANetEncoder(**seanet)
        self.encoder_transformer = Transformer(**transformer)
        self.downsample = Conv1d(in_channels=dimension, out_channels=dimension,
                                 kernel_size=2 * stride, stride=stride, bias=False,
                                 padding="causal", pad_mode="replicate")
        # ``quantizer``: another quantizer on the same latents (Mimi9Model passes its bridge)
        if quantizer is None:
            quantizer = SplitResidualVQ(
                dim=dimension, rvq_dim=spec.rvq_dim,
                first_sizes=[spec.codebook_size] * spec.num_semantic,
                rest_sizes=[spec.codebook_size] * spec.num_acoustic, proj_bias=False,
                ema=ema_mimi().replace(epsilon=spec.codebook_epsilon))
        self.quantizer = quantizer
        # moshi's "channel-wise" upsampling: one depthwise filter per latent channel
        self.upsample = ConvTranspose1d(in_channels=dimension, out_channels=dimension,
                                        kernel_size=2 * stride, stride=stride,
                                        groups=dimension, bias=False, padding="causal")
        self.decoder_transformer = Transformer(**transformer)
        self.decoder = SEANetDecoder(**seanet)
        self._codebooks = (FrozenCodebooks(self.quantizer)
                           if isinstance(self.quantizer, SplitResidualVQ) else None)
        ensure_cpu_cache()
        self.reset_state()

    # -- sizes -------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.spec.codebook_size

    # -- checks ------------------------------------------------------------------------------
    def _wav(self, wav: mx.array, who: str) -> mx.array:
        return check_wav(wav, f"Mimi.{who}")

    def _codes(self, codes: mx.array, who: str) -> mx.array:
        if not isinstance(codes, mx.array) or codes.ndim != 3:
            shape = tuple(codes.shape) if hasattr(codes, "shape") else type(codes).__name__
            raise CodesError(f"Mimi.{who}: expected codes (B, K, F), got {shape}")
        if not 1 <= codes.shape[1] <= self.total_codebooks:
            raise CodesError(f"Mimi.{who}: got {codes.shape[1]} codebooks, this model has "
                             f"1..{self.total_codebooks}")
        if not mx.issubdtype(codes.dtype, mx.integer):
            raise CodesError(f"Mimi.{who}: codes must be integers, got {codes.dtype}")
        if codes.size:
            lo, hi = mx.min(codes).item(), mx.max(codes).item()
            if lo < 0 or hi >= self.codebook_size:
                bad = lo if lo < 0 else hi
                raise CodesError(f"Mimi.{who}: code {bad} out of range 0..{self.codebook_size - 1}")
        return codes.astype(mx.int32)

    # -- batch -------------------------------------------------------------------------------
    def encode_latents(self, wav: mx.array) -> mx.array:
        """Unquantized latents ``(B, F, dimension)`` of ``wav (B, T)``, ``F = ceil(T / 1920)``."""
        wav = self._wav(wav, "encode")
        pad = -wav.shape[1] % self.frame_size
        if wav.shape[1] == 0:
            raise AudioError("Mimi.encode: empty waveform")
        x = mx.pad(wav, [(0, 0), (0, pad)]) if pad else wav
        x = self.encoder(x[:, :, None])
        x = self.encoder_transformer(x)
        return self.downsample(x)

    def encode(self, wav: mx.array, *, num_codebooks: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``wav (B, T)`` float in [-1, 1] at ``sample_rate``.

        ``K = num_codebooks`` (default: the spec's), ``F = ceil(T / frame_size)``.
        """
        k = self._k(num_codebooks)
        return self.quantize(self.encode_latents(wav), k)

    def quantize(self, latents: mx.array, num_codebooks: int) -> mx.array:
        """Codes ``(B, K, F)`` of latents ``(B, F, dimension)`` (cached codebooks in eval mode)."""
        if self.training:
            return self.quantizer.encode(latents, num_levels=num_codebooks)
        return self._codebooks.encode(latents, num_codebooks)

    def dequantize(self, codes: mx.array) -> mx.array:
        """Quantized latents ``(B, F, dimension)`` of checked codes ``(B, K, F)``."""
        if self.training:
            return self.quantizer.decode(codes)
        return self._codebooks.decode(codes)

    def decode_latents(self, latents: mx.array) -> mx.array:
        """Waveform ``(B, F * frame_size)`` of quantized latents ``(B, F, dimension)``."""
        x = self.upsample(latents)
        x = self.decoder_transformer(x)
        return self.decoder(x)[:, :, 0]

    def decode(self, codes: mx.array) -> mx.array:
        """Waveform ``(B, F * frame_size)`` float32 of codes ``(B, K, F)``, any ``K``."""
        codes = self._codes(codes, "decode")
        if codes.shape[2] == 0:
            return mx.zeros((codes.shape[0], 0), dtype=mx.float32)
        return self.decode_latents(self.dequantize(codes))

    def __call__(self, wav: mx.array, *, num_codebooks: int | None = None) -> mx.array:
        """Round trip ``decode(encode(wav))`` trimmed to the input length."""
        return self.decode(self.encode(wav, num_codebooks=num_codebooks))[:, :wav.shape[1]]

    # -- streaming ---------------------------------------------------------------------------
    def _reset_own_state(self) -> None:
        """New encode and decode streams: fresh KV caches and sample count. ``reset_state()``
        (the :class:`Streaming` protocol) also clears every conv buffer in the tree."""
        self._enc_cache = self._stream_cache(self.encoder_transformer)
        self._dec_cache = self._stream_cache(self.decoder_transformer)
        self._samples_in = 0

    @staticmethod
    def _stream_cache(transformer: Transformer):
        """On the CPU, a ring cache: the transformer step runs as one compiled graph, faster
        per frame than the list cache (docs/performance.md, "Mimi streaming"). Elsewhere the
        list cache (the compiled ring path is not measured on a GPU)."""
        if mx.default_device().type == mx.DeviceType.cpu:
            return transformer.make_ring_cache()
        return transformer.make_cache()

    def encode_step(self, wav: mx.array, *, num_codebooks: int | None = None,
                    final: bool = False) -> mx.array:
        """Feed the next ``wav (B, t)`` samples (any ``t >= 0``) of the encode stream.

        Returns the codes ``(B, K, f)`` of the frames completed by this chunk. ``final=True``
        zero-pads the pending partial frame (as the batch call does) and emits it.
        """
        wav = self._wav(wav, "encode_step")
        k = self._k(num_codebooks)
        self._samples_in += wav.shape[1]
        if final:
            pad = -self._samples_in % self.frame_size
            if pad:
                wav = mx.pad(wav, [(0, 0), (0, pad)])
                self._samples_in += pad
        x = self.encoder.step(wav[:, :, None])
        if x.shape[1]:
            x = self.encoder_transformer.step(x, self._enc_cache)
        x = self.downsample.step(x)
        if x.shape[1] == 0:
            return mx.zeros((wav.shape[0], k, 0), dtype=mx.int32)
        return self.quantize(x, k)

    def decode_step(self, codes: mx.array, *, final: bool = False) -> mx.array:
        """Feed the next codes ``(B, K, f)`` of the decode stream; returns ``(B, f * frame_size)``.

        ``final`` (the last piece of a stream) changes nothing here: Mimi is causal, so every
        frame's audio is complete when it is returned. It is accepted so that callers drive
        every codec alike (a non-causal codec flushes its look-ahead on it)."""
        codes = self._codes(codes, "decode_step")
        if codes.shape[2] == 0:
            return mx.zeros((codes.shape[0], 0), dtype=mx.float32)
        x = self.upsample.step(self.dequantize(codes))
        x = self.decoder_transformer.step(x, self._dec_cache)
        return self.decoder.step(x)[:, :, 0]


def build_mimi(spec: MimiSpec) -> MimiModel:
    """A random-init MLX Mimi from its spec (load weights with ``mlx_speech.models.mimi.formats``)."""
    return MimiModel(spec)
