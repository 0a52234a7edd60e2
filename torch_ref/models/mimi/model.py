"""Mimi neural audio codec, the PyTorch mirror of ``mlx_speech/models/mimi/model.py``.

Same constructor (every :class:`MimiSpec` field, keyword-only), child names, state-dict keys
and methods (``encode`` / ``decode`` / ``encode_latents`` / ``decode_latents`` /
``encode_step`` / ``decode_step`` / ``reset_state``), same tensors at the boundary: waveforms
``(B, T)`` float32, codes ``(B, K, F)`` int32. Convolutions run in torch's ``(B, C, T)`` layout
inside; the transformers take ``(B, T, D)``. Inference runs under ``torch.inference_mode``.
Never imports mlx.
"""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.errors import AudioError, CodesError
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.specs.quantize import ema_mimi
from torch_ref.layers.conv import Conv1d, ConvTranspose1d
from torch_ref.layers.transformer import Transformer
from torch_ref.models.mimi.seanet import SEANetDecoder, SEANetEncoder
from torch_ref.quantize.codes import check_wav
from torch_ref.quantize.rvq import SplitResidualVQ
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
        self.upsample = ConvTranspose1d(in_channels=dimension, out_channels=dimension,
                                        kernel_size=2 * stride, stride=stride,
                                        groups=dimension, bias=False, padding="causal")
        self.decoder_transformer = Transformer(**transformer)
        self.decoder = SEANetDecoder(**seanet)
        self.reset_state()

    @property
    def codebook_size(self) -> int:
        return self.spec.codebook_size

    # -- checks ------------------------------------------------------------------------------
    def _wav(self, wav: torch.Tensor, who: str) -> torch.Tensor:
        return check_wav(wav, f"Mimi.{who}").to(self.upsample.weight.dtype)

    def _codes(self, codes: torch.Tensor, who: str) -> torch.Tensor:
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3:
            shape = tuple(codes.shape) if hasattr(codes, "shape") else type(codes).__name__
            raise CodesError(f"Mimi.{who}: expected codes (B, K, F), got {shape}")
        if not 1 <= codes.shape[1] <= self.total_codebooks:
            raise CodesError(f"Mimi.{who}: got {codes.shape[1]} codebooks, this model has "
                             f"1..{self.total_codebooks}")
        if codes.is_floating_point() or codes.dtype == torch.bool:
            raise CodesError(f"Mimi.{who}: codes must be integers, got {codes.dtype}")
        if codes.numel():
            lo, hi = int(codes.min()), int(codes.max())
            if lo < 0 or hi >= self.codebook_size:
                bad = lo if lo < 0 else hi
                raise CodesError(f"Mimi.{who}: code {bad} out of range 0..{self.codebook_size - 1}")
        return codes

    # -- batch -------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """Unquantized latents ``(B, F, dimension)`` of ``wav (B, T)``, ``F = ceil(T / 1920)``."""
        wav = self._wav(wav, "encode")
        if wav.shape[1] == 0:
            raise AudioError("Mimi.encode: empty waveform")
        pad = -wav.shape[1] % self.frame_size
        x = nn.functional.pad(wav, (0, pad)) if pad else wav
        x = self.encoder(x[:, None, :])
        x = self.encoder_transformer(x.transpose(1, 2))
        return self.downsample(x.transpose(1, 2)).transpose(1, 2)

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, *, num_codebooks: int | None = None) -> torch.Tensor:
        """Codes ``(B, K, F)`` int32 of ``wav (B, T)``; see the MLX twin."""
        k = self._k(num_codebooks)
        return self.quantizer.encode(self.encode_latents(wav), num_levels=k)

    @torch.inference_mode()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, F * frame_size)`` of quantized latents ``(B, F, dimension)``."""
        x = self.upsample(latents.transpose(1, 2))
        x = self.decoder_transformer(x.transpose(1, 2))
        return self.decoder(x.transpose(1, 2))[:, 0]

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, F * frame_size)`` float32 of codes ``(B, K, F)``, any ``K``."""
        codes = self._codes(codes, "decode")
        if codes.shape[2] == 0:
            return torch.zeros(codes.shape[0], 0)
        return self.decode_latents(self.quantizer.decode(codes))

    @torch.inference_mode()
    def forward(self, wav: torch.Tensor, *, num_codebooks: int | None = None) -> torch.Tensor:
        """Round trip ``decode(encode(wav))`` trimmed to the input length."""
        return self.decode(self.encode(wav, num_codebooks=num_codebooks))[:, :wav.shape[1]]

    # -- streaming ---------------------------------------------------------------------------
    def _reset_own_state(self) -> None:
        """New encode and decode streams: fresh KV caches and sample count. ``reset_state()``
        (the :class:`Streaming` protocol) also clears every conv buffer in the tree."""
        self._enc_cache = self.encoder_transformer.make_cache()
        self._dec_cache = self.decoder_transformer.make_cache()
        self._samples_in = 0

    @torch.inference_mode()
    def encode_step(self, wav: torch.Tensor, *, num_codebooks: int | None = None,
                    final: bool = False) -> torch.Tensor:
        """Next ``wav (B, t)`` samples of the encode stream -> codes ``(B, K, f)`` of the
        frames they complete; ``final=True`` zero-pads the pending partial frame."""
        wav = self._wav(wav, "encode_step")
        k = self._k(num_codebooks)
        self._samples_in += wav.shape[1]
        if final:
            pad = -self._samples_in % self.frame_size
            if pad:
                wav = nn.functional.pad(wav, (0, pad))
                self._samples_in += pad
        x = self.encoder.step(wav[:, None, :])
        if x.shape[2]:
            x = self.encoder_transformer.step(x.transpose(1, 2), self._enc_cache).transpose(1, 2)
        x = self.downsample.step(x)
        if x.shape[2] == 0:
            return torch.zeros(wav.shape[0], k, 0, dtype=torch.int32)
        return self.quantizer.encode(x.transpose(1, 2), num_levels=k)

    @torch.inference_mode()
    def decode_step(self, codes: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        """Next codes ``(B, K, f)`` of the decode stream -> ``(B, f * frame_size)`` samples.
        ``final`` changes nothing (Mimi is causal); accepted so callers drive codecs alike."""
        codes = self._codes(codes, "decode_step")
        if codes.shape[2] == 0:
            return torch.zeros(codes.shape[0], 0)
        x = self.upsample.step(self.quantizer.decode(codes).transpose(1, 2))
        x = self.decoder_transformer.step(x.transpose(1, 2), self._dec_cache)
        return self.decoder.step(x.transpose(1, 2))[:, 0]


def build_mimi(spec: MimiSpec) -> MimiModel:
    """A random-init torch_ref Mimi from its spec."""
    return MimiModel(spec)
