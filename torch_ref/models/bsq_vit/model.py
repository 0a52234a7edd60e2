"""BSQ-ViT audio tokenizer, the torch mirror of ``mlx_speech/models/bsq_vit/model.py``.

Same constructor (``BSQViTModel(spec)``), child names, state-dict keys and methods; see the MLX
module's docstring for the entry points and the windows (both walk the schedules of
:mod:`mlx_speech.models.bsq_vit.windows`). The coding calls run under ``torch.inference_mode``.
Never imports mlx.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mlx_speech.errors import AudioError, CodesError
from mlx_speech.models.bsq_vit.spec import BSQViTSpec
from mlx_speech.models.bsq_vit.windows import Chunker, VocodeSchedule, VocodeStream
from mlx_speech.models.codec_base import SpecCodec
from mlx_speech.utils.streaming import Streaming
from torch_ref.audio.griffinlim import mel_to_audio
from torch_ref.audio.spectral import mel_spectrogram
from torch_ref.models.bsq_vit.vit import ViT
from torch_ref.models.hifigan.model import HiFiGANGenerator
from torch_ref.quantize.bsq import BinarySphericalQuantizer, BSQOutput
from torch_ref.quantize.codes import check_codes, check_wav

SILENCE = -1.0  # the front end's floor: the value of a silent mel bin


class BSQViTOutput(NamedTuple):
    mel: torch.Tensor  # (B, T, n_mels) reconstruction, in the front end's [-1, 1] scale
    quant: BSQOutput  # quantized (B, F * bands, dim), codes (B, K, F), loss, losses


def _cat(parts: list[torch.Tensor], axis: int) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=axis)


def _ramp(n: int, fade: int) -> torch.Tensor:
    return torch.from_numpy((np.arange(n, dtype=np.float32) + 0.5) / np.float32(fade))


def _silence(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``x (B, T, M)`` followed by ``frames`` silent mel frames."""
    pad = torch.full((x.shape[0], frames, x.shape[2]), SILENCE, dtype=x.dtype, device=x.device)
    return torch.cat([x, pad], dim=1)


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
        self.vocoder = (HiFiGANGenerator(spec.vocoder.hifigan_spec())
                        if spec.vocoder.kind == "hifigan" else None)
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
    def _wav(self, wav: torch.Tensor, who: str) -> torch.Tensor:
        return check_wav(wav, f"BSQ-ViT.{who}")

    def _mel(self, x: torch.Tensor, who: str) -> torch.Tensor:
        m = self.spec.mel.n_mels
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != m \
                or not x.is_floating_point():
            got = (f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor)
                   else type(x).__name__)
            raise AudioError(f"BSQ-ViT.{who}: expected a float mel (B, T, {m}), got {got}")
        return x

    def _codes(self, codes: torch.Tensor, who: str) -> torch.Tensor:
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
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``x (B, T, n_mels)`` in [-1, 1] of ``wav (B, S)``: zero-padded to whole codec frames,
        centred magnitude mel without its last frame, dB clipped to ``[-top_db, 0]`` below
        ``ref_db``, scaled; ``T = patch_time * ceil(S / frame_size)``."""
        wav = self._wav(wav, "features")
        if wav.shape[1] == 0:
            raise AudioError("BSQ-ViT.features: empty waveform")
        pad = -wav.shape[1] % self.frame_size
        if pad:
            wav = torch.nn.functional.pad(wav, (0, pad))
        mel = mel_spectrogram(wav.float(), **self.spec.mel.mel_kwargs())[:, :-1]
        top = self.spec.top_db
        db = 20.0 * torch.log10(torch.clamp(mel, min=1e-10)) - self.spec.ref_db
        return torch.clamp(db, -top, 0.0) / (top / 2) + 1.0

    def to_log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Natural-log mel of ``x`` (the front end's scale undone), as vocoders take it."""
        db = (x - 1.0) * (self.spec.top_db / 2)
        return (db + self.spec.ref_db) * (math.log(10.0) / 20.0)

    # -- patches and code layout ---------------------------------------------------------------
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F * patch_time, n_mels) -> (B, F * bands, patch_time * patch_freq)``."""
        s = self.spec
        b, t, _ = x.shape
        f = t // s.patch_time
        x = x.reshape(b, f, s.patch_time, s.bands, s.patch_freq).permute(0, 1, 3, 2, 4)
        return x.reshape(b, f * s.bands, s.patch_dim)

    def unpatchify(self, p: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`patchify`."""
        s = self.spec
        b, n, _ = p.shape
        f = n // s.bands
        p = p.reshape(b, f, s.bands, s.patch_time, s.patch_freq).permute(0, 1, 3, 2, 4)
        return p.reshape(b, f * s.patch_time, s.mel.n_mels)

    def _frame_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The quantizer's ``(B, bits / code_bits, F * bands)`` -> our ``(B, K, F)``: code
        ``band * (bits / code_bits) + j`` is part ``j`` of that band's token."""
        s = self.spec
        b, c, n = codes.shape
        f = n // s.bands
        return codes.reshape(b, c, f, s.bands).permute(0, 3, 1, 2).reshape(b, s.bands * c, f)

    def _token_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_frame_codes`."""
        s = self.spec
        b, _, f = codes.shape
        c = s.codes_per_token
        return codes.reshape(b, s.bands, c, f).permute(0, 2, 3, 1).reshape(b, c, f * s.bands)

    # -- one window ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> BSQViTOutput:
        """Reconstruct ``x (B, T, n_mels)``, ``T`` a positive multiple of ``patch_time``, coded
        as one window; the quantizer's loss terms come with it (the training path)."""
        x = self._mel(x, "__call__")
        if x.shape[1] == 0 or x.shape[1] % self.spec.patch_time:
            raise AudioError(f"BSQ-ViT: a window needs a positive multiple of "
                             f"{self.spec.patch_time} mel frames, got {x.shape[1]}")
        quant = self.quantizer(self.encoder(self.patchify(x)))
        quant = quant._replace(codes=self._frame_codes(quant.codes))
        return BSQViTOutput(self.unpatchify(self.decoder(quant.quantized)), quant)

    def _encode_window(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, K, f)`` of ``f`` whole frames of mel, padded with silence to a window."""
        f = x.shape[1] // self.spec.patch_time
        pad = self.window_frames - x.shape[1]
        if pad:
            x = _silence(x, pad)
        codes = self.quantizer.encode(self.encoder(self.patchify(x)))
        return self._frame_codes(codes)[:, :, :f]

    def _decode_window(self, codes: torch.Tensor) -> torch.Tensor:
        """Mel ``(B, f * patch_time, n_mels)`` of checked codes ``(B, K, f)``."""
        return self.unpatchify(self.decoder(self.quantizer.decode(self._token_codes(codes))))

    def _encode_wav_window(self, wav: torch.Tensor) -> torch.Tensor:
        return self._encode_window(self.features(wav))

    def _vocode_window(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, n * hop)`` of ``n`` mel frames; Griffin-Lim gets the frame the front
        end dropped (centred on the last sample) back as a copy of the last one, so its
        centred frames give exactly ``n * hop`` samples."""
        n, m, v = x.shape[1], self.spec.mel, self.spec.vocoder
        if self.vocoder is not None:
            return self.vocoder(self.to_log_mel(x))
        x = torch.cat([x, x[:, -1:]], dim=1)
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

    def _wav_out(self, parts: list[torch.Tensor], batch: int) -> torch.Tensor:
        return _cat(parts, 1) if parts else torch.zeros(batch, 0)

    def _run_encode(self, stream: Chunker, wav: torch.Tensor, final: bool) -> torch.Tensor:
        codes = [self._encode_wav_window(w) for w in stream.feed(wav, final)]
        return (_cat(codes, 2) if codes
                else torch.zeros(wav.shape[0], self.total_codebooks, 0, dtype=torch.int32))

    def _run_decode(self, codes_stream: Chunker, vocode: VocodeStream, codes: torch.Tensor,
                    final: bool) -> torch.Tensor:
        mel = [self._decode_window(c) for c in codes_stream.feed(codes, final)]
        return self._wav_out(vocode.feed(_cat(mel, 1) if mel else None, final), codes.shape[0])

    # -- batch -------------------------------------------------------------------------------
    def encode_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, K, F)`` int32 of mel ``x (B, T, n_mels)``, ``F = ceil(T / patch_time)``
        (a partial last frame is padded with silence), one window at a time."""
        x = self._mel(x, "encode_mel")
        pad = -x.shape[1] % self.spec.patch_time
        if pad:
            x = _silence(x, pad)
        windows = Chunker(self.window_frames, 1, _cat).feed(x, True)
        if not windows:
            return torch.zeros(x.shape[0], self.total_codebooks, 0, dtype=torch.int32)
        return _cat([self._encode_window(w) for w in windows], 2)

    def decode_mel(self, codes: torch.Tensor) -> torch.Tensor:
        """Mel ``(B, F * patch_time, n_mels)`` in [-1, 1] of codes ``(B, K, F)``, one window
        at a time."""
        codes = self._codes(codes, "decode_mel")
        mel = [self._decode_window(c) for c in self._codes_stream().feed(codes, True)]
        return _cat(mel, 1) if mel else torch.zeros(codes.shape[0], 0, self.spec.mel.n_mels)

    @torch.inference_mode()
    def vocode(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, T * hop)`` of mel ``x (B, T, n_mels)`` in the [-1, 1] scale, window
        by window with margin and cross-fade."""
        x = self._mel(x, "vocode")
        return self._wav_out(self._vocode_stream().feed(x, True), x.shape[0])

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, *, num_codebooks: int | None = None) -> torch.Tensor:
        """Codes ``(B, K, F)`` int32 of ``wav (B, S)`` float at ``sample_rate``,
        ``F = ceil(S / frame_size)``; ``num_codebooks`` must be None or all of them."""
        wav = self._wav(wav, "encode")
        self._all_codebooks(num_codebooks)
        if wav.shape[1] == 0:
            raise AudioError("BSQ-ViT.encode: empty waveform")
        return self._run_encode(self._encoder_stream(), wav, True)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, F * frame_size)`` float32 of codes ``(B, K, F)`` (all ``K``)."""
        codes = self._codes(codes, "decode")
        return self._run_decode(self._codes_stream(), self._vocode_stream(), codes, True)

    # -- streaming ---------------------------------------------------------------------------
    def _reset_own_state(self) -> None:
        """New encode and decode streams."""
        self._enc_stream = self._encoder_stream()
        self._codes_in = self._codes_stream()
        self._voc_stream = self._vocode_stream()

    @torch.inference_mode()
    def encode_step(self, wav: torch.Tensor, *, num_codebooks: int | None = None,
                    final: bool = False) -> torch.Tensor:
        """Feed the next ``wav (B, t)`` samples (any ``t >= 0``); codes ``(B, K, f)`` of the
        windows completed so far (a window's codes come once all its samples are in).
        ``final=True`` codes the partial last window like ``encode`` and starts a new stream.
        Concatenated outputs equal ``encode`` for any chunk sizes."""
        wav = self._wav(wav, "encode_step")
        self._all_codebooks(num_codebooks)
        return self._run_encode(self._enc_stream, wav, final)

    @torch.inference_mode()
    def decode_step(self, codes: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        """Feed the next codes ``(B, K, f)``; returns ``(B, t)``, the samples now complete: a
        window's audio once its codes and the vocoder's ``margin`` frames of the next window
        are in (look-ahead). ``final=True`` returns the rest and starts a new stream.
        Concatenated outputs equal ``decode`` for any chunk sizes."""
        codes = self._codes(codes, "decode_step")
        return self._run_decode(self._codes_in, self._voc_stream, codes, final)
