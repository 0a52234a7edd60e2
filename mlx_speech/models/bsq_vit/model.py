"""BSQ-ViT audio tokenizer (MLX): waveform -> mel patches -> ViT -> BSQ codes -> ViT -> mel
-> vocoder -> waveform. Shapes and maths: :mod:`mlx_speech.models.bsq_vit.spec`.

Child names (also torch_ref's state-dict keys): ``encoder`` and ``decoder``
(:class:`~mlx_speech.models.bsq_vit.vit.ViT`), ``quantizer``
(:class:`~mlx_speech.quantize.bsq.BinarySphericalQuantizer`, ``dim -> bits``) and, with a
HiFi-GAN vocoder, ``vocoder`` (:class:`~mlx_speech.models.hifigan.model.HiFiGANGenerator`).

Entry points:

* ``model(x)``: one window of mel ``(B, T, n_mels)`` (``T`` a multiple of ``patch_time``) ->
  :class:`BSQViTOutput` (reconstruction and the quantizer's output with its losses): the
  training path;
* ``features`` / ``to_log_mel``: the front end and its natural-log mel for vocoders;
* ``encode_mel`` / ``decode_mel``: mel <-> codes, window by window;
* ``encode`` / ``decode`` / ``vocode``: waveform <-> codes, mel -> waveform, windowed as the spec
  says; ``encode_step`` / ``decode_step`` stream them.

Windows (:mod:`mlx_speech.models.bsq_vit.windows`): ``encode`` cuts the waveform into windows of
``context_frames`` codec frames from its first sample and takes each window's features on its
own (what the tokenizer trains on); a shorter last window is padded with silence (-1) in the
mel and its codes cropped. ``decode_mel`` decodes each window of codes on its own (a shorter
last window as it is: there are no codes to pad it with), and the vocoder runs window by window
with ``margin`` frames of context and a ``crossfade``. The batch calls walk the same windows as
the streaming calls, so concatenated ``*_step`` outputs equal them exactly for any chunk sizes;
``decode_step`` holds a window's audio back until ``margin`` mel frames after it have arrived,
or ``final``.

Call ``eval()`` before coding (``mlx_speech.load`` does): in training mode the BatchNorm of the
convolution modules normalises with batch statistics and updates its running statistics.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.audio.griffinlim import mel_to_audio
from mlx_speech.audio.spectral import mel_spectrogram
from mlx_speech.errors import AudioError, CodesError
from mlx_speech.models.bsq_vit.spec import BSQViTSpec
from mlx_speech.models.bsq_vit.vit import ViT
from mlx_speech.models.bsq_vit.windows import Chunker, VocodeSchedule, VocodeStream
from mlx_speech.models.codec_base import SpecCodec
from mlx_speech.models.hifigan.model import HiFiGANGenerator
from mlx_speech.quantize.bsq import BinarySphericalQuantizer, BSQOutput
from mlx_speech.quantize.codes import check_codes, check_wav
from mlx_speech.utils.streaming import Streaming

SILENCE = -1.0  # the front end's floor: the value of a silent mel bin


class BSQViTOutput(NamedTuple):
    mel: mx.array  # (B, T, n_mels) reconstruction, in the front end's [-1, 1] scale
    quant: BSQOutput  # quantized (B, F * bands, dim), codes (B, K, F), loss, losses


def _cat(parts: list[mx.array], axis: int) -> mx.array:
    return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=axis)


def _ramp(n: int, fade: int) -> mx.array:
    return mx.array((np.arange(n, dtype=np.float32) + 0.5) / np.float32(fade))


class BSQViTModel(SpecCodec, Streaming, nn.Module):
    """The BSQ-ViT tokenizer built from its :class:`BSQViTSpec` (see the module docstring)."""

    CODEC_NAME = "BSQ-ViT"

    def __init__(self, spec: BSQViTSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.encoder = ViT(spec, spec.encoder_layers, patches_in=True)
        self.quantizer = BinarySphericalQuantizer(
            dim=spec.dim, bits=spec.bits, group_size=spec.group_size, code_bits=spec.code_bits,
            inv_temperature=spec.inv_temperature, gamma0=spec.gamma0, gamma=spec.gamma,
            zeta=spec.zeta, commitment_weight=spec.commitment_weight)
        self.decoder = ViT(spec, spec.decoder_layers, patches_out=True)
        if spec.vocoder.kind == "hifigan":
            self.vocoder = HiFiGANGenerator(spec.vocoder.hifigan_spec())
        self.reset_state()

    # -- sizes -------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.spec.codebook_size

    @property
    def window_frames(self) -> int:
        """Mel frames per window."""
        return self.spec.context_frames * self.spec.patch_time

    # -- checks ------------------------------------------------------------------------------
    def _wav(self, wav: mx.array, who: str) -> mx.array:
        return check_wav(wav, f"BSQ-ViT.{who}")

    def _mel(self, x: mx.array, who: str) -> mx.array:
        m = self.spec.mel.n_mels
        if not isinstance(x, mx.array) or x.ndim != 3 or x.shape[2] != m \
                or not mx.issubdtype(x.dtype, mx.floating):
            got = (f"{x.dtype} {tuple(x.shape)}" if isinstance(x, mx.array)
                   else type(x).__name__)
            raise AudioError(f"BSQ-ViT.{who}: expected a float mel (B, T, {m}), got {got}")
        return x

    def _codes(self, codes: mx.array, who: str) -> mx.array:
        codes = check_codes(codes, self.codebook_sizes, f"BSQ-ViT.{who}")
        if codes.shape[1] != self.total_codebooks:
            raise CodesError(f"BSQ-ViT.{who}: every frame needs all {self.total_codebooks} "
                             f"codes (each holds bits of a token), got {codes.shape[1]}")
        return codes

    def _all_codebooks(self, num_codebooks: int | None) -> None:
        k = self._k(num_codebooks)
        if k != self.total_codebooks:
            raise CodesError(f"BSQ-ViT codes every frame with all {self.total_codebooks} "
                             f"codes (each holds bits of a token), got num_codebooks={k}")

    # -- front end ---------------------------------------------------------------------------
    def features(self, wav: mx.array) -> mx.array:
        """``x (B, T, n_mels)`` in [-1, 1] of ``wav (B, S)``: zero-padded to whole codec frames,
        centred magnitude mel without its last frame, dB clipped to ``[-top_db, 0]`` below
        ``ref_db``, scaled; ``T = patch_time * ceil(S / frame_size)``."""
        wav = self._wav(wav, "features")
        if wav.shape[1] == 0:
            raise AudioError("BSQ-ViT.features: empty waveform")
        pad = -wav.shape[1] % self.frame_size
        if pad:
            wav = mx.pad(wav, [(0, 0), (0, pad)])
        mel = mel_spectrogram(wav.astype(mx.float32), **self.spec.mel.mel_kwargs())[:, :-1]
        top = self.spec.top_db
        db = 20.0 * mx.log10(mx.maximum(mel, 1e-10)) - self.spec.ref_db
        return mx.clip(db, -top, 0.0) / (top / 2) + 1.0

    def to_log_mel(self, x: mx.array) -> mx.array:
        """Natural-log mel of ``x`` (the front end's scale undone), as vocoders take it."""
        db = (x - 1.0) * (self.spec.top_db / 2)
        return (db + self.spec.ref_db) * (math.log(10.0) / 20.0)

    # -- patches and code layout ---------------------------------------------------------------
    def patchify(self, x: mx.array) -> mx.array:
        """``(B, F * patch_time, n_mels) -> (B, F * bands, patch_time * patch_freq)``."""
        s = self.spec
        b, t, _ = x.shape
        f = t // s.patch_time
        x = x.reshape(b, f, s.patch_time, s.bands, s.patch_freq).transpose(0, 1, 3, 2, 4)
        return x.reshape(b, f * s.bands, s.patch_dim)

    def unpatchify(self, p: mx.array) -> mx.array:
        """Inverse of :meth:`patchify`."""
        s = self.spec
        b, n, _ = p.shape
        f = n // s.bands
        p = p.reshape(b, f, s.bands, s.patch_time, s.patch_freq).transpose(0, 1, 3, 2, 4)
        return p.reshape(b, f * s.patch_time, s.mel.n_mels)

    def _frame_codes(self, codes: mx.array) -> mx.array:
        """The quantizer's ``(B, bits / code_bits, F * bands)`` -> our ``(B, K, F)``: code
        ``band * (bits / code_bits) + j`` is part ``j`` of that band's token."""
        s = self.spec
        b, c, n = codes.shape
        f = n // s.bands
        return codes.reshape(b, c, f, s.bands).transpose(0, 3, 1, 2).reshape(b, s.bands * c, f)

    def _token_codes(self, codes: mx.array) -> mx.array:
        """Inverse of :meth:`_frame_codes`."""
        s = self.spec
        b, _, f = codes.shape
        c = s.codes_per_token
        return codes.reshape(b, s.bands, c, f).transpose(0, 2, 3, 1).reshape(b, c, f * s.bands)

    # -- one window ----------------------------------------------------------------------------
    def __call__(self, x: mx.array) -> BSQViTOutput:
        """Reconstruct ``x (B, T, n_mels)``, ``T`` a positive multiple of ``patch_time``, coded
        as one window; the quantizer's loss terms come with it (the training path)."""
        x = self._mel(x, "__call__")
        if x.shape[1] == 0 or x.shape[1] % self.spec.patch_time:
            raise AudioError(f"BSQ-ViT: a window needs a positive multiple of "
                             f"{self.spec.patch_time} mel frames, got {x.shape[1]}")
        quant = self.quantizer(self.encoder(self.patchify(x)))
        quant = quant._replace(codes=self._frame_codes(quant.codes))
        return BSQViTOutput(self.unpatchify(self.decoder(quant.quantized)), quant)

    def _encode_window(self, x: mx.array) -> mx.array:
        """Codes ``(B, K, f)`` of ``f`` whole frames of mel, padded with silence to a window."""
        f = x.shape[1] // self.spec.patch_time
        pad = self.window_frames - x.shape[1]
        if pad:
            x = mx.concatenate([x, mx.full((x.shape[0], pad, x.shape[2]), SILENCE, x.dtype)], 1)
        codes = self.quantizer.encode(self.encoder(self.patchify(x)))
        return self._frame_codes(codes)[:, :, :f]

    def _decode_window(self, codes: mx.array) -> mx.array:
        """Mel ``(B, f * patch_time, n_mels)`` of checked codes ``(B, K, f)``."""
        return self.unpatchify(self.decoder(self.quantizer.decode(self._token_codes(codes))))

    def _encode_wav_window(self, wav: mx.array) -> mx.array:
        return self._encode_window(self.features(wav))

    def _vocode_window(self, x: mx.array) -> mx.array:
        """Waveform ``(B, n * hop)`` of ``n`` mel frames; Griffin-Lim gets the frame the front
        end dropped (centred on the last sample) back as a copy of the last one, so its
        centred frames give exactly ``n * hop`` samples."""
        n, m, v = x.shape[1], self.spec.mel, self.spec.vocoder
        if "vocoder" in self:
            return self.vocoder(self.to_log_mel(x))
        x = mx.concatenate([x, x[:, -1:]], axis=1)
        return mel_to_audio(self.to_log_mel(x), sample_rate=m.sample_rate, n_fft=m.n_fft,
                            hop_length=m.hop_length, win_length=m.win_length, n_mels=m.n_mels,
                            f_min=m.f_min, f_max=m.f_max, htk=m.mel_scale == "htk", norm=m.norm,
                            power=m.power, log_input=True, nnls_iter=v.nnls_iters,
                            n_iter=v.gl_iters, length=n * m.hop_length)

    # -- streams (shared by the batch and the step calls) --------------------------------------
    def _encoder_stream(self) -> Chunker:
        return Chunker(self.spec.window_samples, 1, _cat)

    def _codes_stream(self) -> Chunker:
        return Chunker(self.spec.context_frames, 2, _cat)

    def _vocode_stream(self) -> VocodeStream:
        v = self.spec.vocoder
        schedule = VocodeSchedule(window=self.window_frames, margin=v.margin,
                                  crossfade=v.crossfade, hop=self.spec.mel.hop_length)
        return VocodeStream(schedule, vocode=self._vocode_window, cat=_cat, ramp=_ramp)

    def _wav_out(self, parts: list[mx.array], batch: int) -> mx.array:
        return _cat(parts, 1) if parts else mx.zeros((batch, 0), dtype=mx.float32)

    def _run_encode(self, stream: Chunker, wav: mx.array, final: bool) -> mx.array:
        codes = [self._encode_wav_window(w) for w in stream.feed(wav, final)]
        return (_cat(codes, 2) if codes
                else mx.zeros((wav.shape[0], self.total_codebooks, 0), dtype=mx.int32))

    def _run_decode(self, codes_stream: Chunker, vocode: VocodeStream, codes: mx.array,
                    final: bool) -> mx.array:
        mel = [self._decode_window(c) for c in codes_stream.feed(codes, final)]
        return self._wav_out(vocode.feed(_cat(mel, 1) if mel else None, final), codes.shape[0])

    # -- batch -------------------------------------------------------------------------------
    def encode_mel(self, x: mx.array) -> mx.array:
        """Codes ``(B, K, F)`` int32 of mel ``x (B, T, n_mels)``, ``F = ceil(T / patch_time)``
        (a partial last frame is padded with silence), one window at a time."""
        x = self._mel(x, "encode_mel")
        pad = -x.shape[1] % self.spec.patch_time
        if pad:
            x = mx.concatenate([x, mx.full((x.shape[0], pad, x.shape[2]), SILENCE, x.dtype)], 1)
        windows = Chunker(self.window_frames, 1, _cat).feed(x, True)
        if not windows:
            return mx.zeros((x.shape[0], self.total_codebooks, 0), dtype=mx.int32)
        return _cat([self._encode_window(w) for w in windows], 2)

    def decode_mel(self, codes: mx.array) -> mx.array:
        """Mel ``(B, F * patch_time, n_mels)`` in [-1, 1] of codes ``(B, K, F)``, one window
        at a time."""
        codes = self._codes(codes, "decode_mel")
        mel = [self._decode_window(c) for c in self._codes_stream().feed(codes, True)]
        return _cat(mel, 1) if mel else mx.zeros((codes.shape[0], 0, self.spec.mel.n_mels))

    def vocode(self, x: mx.array) -> mx.array:
        """Waveform ``(B, T * hop)`` of mel ``x (B, T, n_mels)`` in the [-1, 1] scale, window
        by window with margin and cross-fade."""
        x = self._mel(x, "vocode")
        return self._wav_out(self._vocode_stream().feed(x, True), x.shape[0])

    def encode(self, wav: mx.array, *, num_codebooks: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``wav (B, S)`` float at ``sample_rate``,
        ``F = ceil(S / frame_size)``; ``num_codebooks`` must be None or all of them."""
        wav = self._wav(wav, "encode")
        self._all_codebooks(num_codebooks)
        if wav.shape[1] == 0:
            raise AudioError("BSQ-ViT.encode: empty waveform")
        return self._run_encode(self._encoder_stream(), wav, True)

    def decode(self, codes: mx.array) -> mx.array:
        """Waveform ``(B, F * frame_size)`` float32 of codes ``(B, K, F)`` (all ``K``)."""
        codes = self._codes(codes, "decode")
        return self._run_decode(self._codes_stream(), self._vocode_stream(), codes, True)

    # -- streaming ---------------------------------------------------------------------------
    def _reset_own_state(self) -> None:
        """New encode and decode streams."""
        self._enc_stream = self._encoder_stream()
        self._codes_in = self._codes_stream()
        self._voc_stream = self._vocode_stream()

    def encode_step(self, wav: mx.array, *, num_codebooks: int | None = None,
                    final: bool = False) -> mx.array:
        """Feed the next ``wav (B, t)`` samples (any ``t >= 0``); codes ``(B, K, f)`` of the
        windows completed so far (a window's codes come once all its samples are in).
        ``final=True`` codes the partial last window like ``encode`` and starts a new stream.
        Concatenated outputs equal ``encode`` for any chunk sizes."""
        wav = self._wav(wav, "encode_step")
        self._all_codebooks(num_codebooks)
        return self._run_encode(self._enc_stream, wav, final)

    def decode_step(self, codes: mx.array, *, final: bool = False) -> mx.array:
        """Feed the next codes ``(B, K, f)``; returns ``(B, t)``, the samples now complete: a
        window's audio once its codes and the vocoder's ``margin`` frames of the next window
        are in (look-ahead). ``final=True`` returns the rest and starts a new stream.
        Concatenated outputs equal ``decode`` for any chunk sizes."""
        codes = self._codes(codes, "decode_step")
        return self._run_decode(self._codes_in, self._voc_stream, codes, final)
