"""Miipher-2 restoration spec: frozen SSL backbone up to layer L + parallel adapters + a
feature vocoder. One dataclass feeds both implementations (``mlx_speech.models.miipher2.model``
and ``torch_ref.models.miipher2.model``).

Miipher-2 (Karita et al. 2025) runs Google's USM, frozen, to layer 13 of 32, adapts it with a
parallel adapter beside every layer and vocodes the adapted features. USM is not public; the
open stand-ins here are w2v-BERT 2.0 (layer 8, as Sidon), HuBERT (layer 9, as Open-Miipher-2's
mHuBERT-147) and WavLM. The spec names the backbone's family and architecture (``backbone``:
its transformers ``config.json`` fields, ``model_type`` the family), the local transformers
folder its pretrained weights come from (``backbone_path``; None: randomly initialised) and L
(``layer``). The path is read when a training run builds the model from scratch; a Miipher-2
file holds every weight, the backbone's included, and never reads it again.

Shapes, for ``wav (B, S)`` at 16 kHz (the backbones' rate):

* backbone: the SSL encoder of ``backbone`` (its transformers ``config.json`` fields and
  ``model_type``) truncated to its first ``layer`` layers, frozen. Hidden state ``layer`` is the
  feature ``(B, F, D)`` at 50 Hz;
* adapters: ``layer`` :class:`~mlx_speech.layers.adapter.ParallelAdapter` s, adapter ``i``
  reads layer ``i``'s input and is added to its output (``adapter_bottleneck`` wide, LayerNorm
  in, zero-initialised output, so the untrained model reproduces the backbone);
* vocoder: features linearly interpolated ``feature_upsample`` times in time, then a HiFi-GAN
  generator (``vocoder``: :class:`~mlx_speech.models.hifigan.spec.HiFiGANSpec` fields; its
  ``n_mels`` is the feature width ``D``) to ``sample_rate``. Its hop times ``feature_upsample``
  is the backbone's hop scaled to ``sample_rate``: 320 at 16 kHz, 480 at 24 kHz.

Windows (``restore``): long input is restored on a fixed grid of ``window_seconds`` windows
every ``window_seconds - overlap_seconds``; neighbouring outputs are cross-faded over
``crossfade_seconds`` in the middle of their overlap (the rest of the overlap is each window's
discarded edge). The restored signal is that windowed result however the input is read, so a
file streamed block by block gives the in-memory result and memory stays flat.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_speech.models.hifigan.spec import HiFiGANSpec
from mlx_speech.models.ssl.spec import (W2V_BERT_TYPES, WAV2VEC2_TYPES, SAMPLE_RATE, W2VBertSpec,
                                        Wav2Vec2Spec, w2v_bert_2_0, wavlm_base, hubert_base)
from mlx_speech.specs.base import Spec, require

BACKBONE_RATE = SAMPLE_RATE  # every supported SSL encoder runs at 16 kHz


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


def backbone_spec_from(data: dict[str, Any], *, where: str = "backbone") -> Wav2Vec2Spec | W2VBertSpec:
    """The SSL spec for a ``backbone`` mapping (strict: unknown keys are errors)."""
    kind = data.get("model_type") if isinstance(data, dict) else None
    if kind in WAV2VEC2_TYPES:
        return Wav2Vec2Spec._build(dict(data), strict=True, where=where)
    if kind in W2V_BERT_TYPES:
        return W2VBertSpec._build(dict(data), strict=True, where=where)
    from mlx_speech.errors import SpecError  # noqa: PLC0415

    raise SpecError(f"{where}.model_type must be one of "
                    f"{', '.join(WAV2VEC2_TYPES + W2V_BERT_TYPES)}, got {kind!r}")


def backbone_hop(spec: Wav2Vec2Spec | W2VBertSpec) -> int:
    """16 kHz samples per backbone frame (320 for every published encoder: 50 Hz)."""
    if isinstance(spec, W2VBertSpec):
        return 160 * spec.stride
    return spec.downsample


@dataclasses.dataclass
class Miipher2Spec(Spec):
    """See the module docstring."""

    backbone: dict[str, Any] = _field(lambda: w2v_bert_2_0().to_dict())
    backbone_path: str | None = None
    layer: int = 8
    adapter_bottleneck: int = 1024
    adapter_activation: str = "gelu"
    adapter_scale: float = 1.0
    feature_upsample: int = 1
    sample_rate: int = 24000
    vocoder: dict[str, Any] = _field(lambda: dict(
        n_mels=1024, upsample_rates=[6, 5, 4, 4], upsample_kernel_sizes=[12, 11, 8, 8],
        upsample_initial_channel=512))
    window_seconds: float = 10.0
    overlap_seconds: float = 1.0
    crossfade_seconds: float = 0.5

    def validate(self) -> None:
        w = type(self).__name__
        bb = self.backbone_spec()
        require(1 <= self.layer <= bb.num_hidden_layers, w,
                f"layer must be in 1..{bb.num_hidden_layers} (the backbone's layers), "
                f"got {self.layer}")
        require(self.adapter_bottleneck > 0, w, "adapter_bottleneck must be positive")
        require(self.feature_upsample >= 1, w, "feature_upsample must be >= 1")
        require(self.sample_rate > 0 and (backbone_hop(bb) * self.sample_rate) % BACKBONE_RATE == 0,
                w, f"sample_rate {self.sample_rate} must make the backbone's hop "
                   f"({backbone_hop(bb)} at 16 kHz) a whole number of output samples")
        voc = self.vocoder_spec()
        require(voc.n_mels == bb.hidden_size, w,
                f"vocoder n_mels {voc.n_mels} must equal the backbone's hidden_size "
                f"{bb.hidden_size}")
        require(voc.hop_length * self.feature_upsample == self.hop_length, w,
                f"vocoder hop {voc.hop_length} x feature_upsample {self.feature_upsample} must "
                f"equal the output samples per backbone frame ({self.hop_length} at "
                f"{self.sample_rate} Hz)")
        require(self.window_seconds > 0 and 0 <= self.crossfade_seconds <= self.overlap_seconds
                < self.window_seconds / 2, w,
                "need window_seconds > 0 and 0 <= crossfade_seconds <= overlap_seconds < "
                "window_seconds / 2")
        require(self.window_frames > 2 * self.overlap_frames, w,
                "window too short for its overlap at the backbone's frame rate")
        require(self.overlap_frames - self.crossfade_frames >= 4, w,
                "overlap_seconds must exceed crossfade_seconds by at least 4 backbone frames "
                "(each window's edge, discarded, must cover the frames its encoder loses)")

    # --- derived ---------------------------------------------------------------------------
    def backbone_spec(self) -> Wav2Vec2Spec | W2VBertSpec:
        """The backbone's SSL spec truncated to ``layer`` layers (what the model builds)."""
        bb = backbone_spec_from(self.backbone, where=f"{type(self).__name__}.backbone")
        return bb.replace(num_hidden_layers=min(self.layer, bb.num_hidden_layers))

    def vocoder_spec(self) -> HiFiGANSpec:
        return HiFiGANSpec._build(dict(self.vocoder), strict=True,
                                  where=f"{type(self).__name__}.vocoder")

    @property
    def backbone_hop(self) -> int:
        """16 kHz input samples per feature frame."""
        return backbone_hop(backbone_spec_from(self.backbone))

    @property
    def hop_length(self) -> int:
        """Output samples per feature frame."""
        return self.backbone_hop * self.sample_rate // BACKBONE_RATE

    @property
    def feature_dim(self) -> int:
        return self.backbone_spec().hidden_size

    def _frames(self, seconds: float) -> int:
        return int(round(seconds * BACKBONE_RATE / self.backbone_hop))

    @property
    def window_frames(self) -> int:
        return self._frames(self.window_seconds)

    @property
    def overlap_frames(self) -> int:
        return self._frames(self.overlap_seconds)

    @property
    def crossfade_frames(self) -> int:
        return self._frames(self.crossfade_seconds)


def _vocoder(dim: int, rates: list[int], kernels: list[int], channels: int,
             resblock: str = "1") -> dict[str, Any]:
    out: dict[str, Any] = dict(n_mels=dim, upsample_rates=rates, upsample_kernel_sizes=kernels,
                               upsample_initial_channel=channels, resblock=resblock)
    if resblock == "2":
        out.update(resblock_kernel_sizes=[3, 5, 7],
                   resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]])
    return out


@Miipher2Spec.preset("w2v_bert_l8")
def miipher2_w2v_bert_l8() -> Miipher2Spec:
    """w2v-BERT 2.0 to layer 8 (as Sidon), 24 kHz HiFi-GAN V1-width vocoder."""
    return Miipher2Spec()


@Miipher2Spec.preset("hubert_base_l9")
def miipher2_hubert_base_l9() -> Miipher2Spec:
    """HuBERT base to layer 9 (Open-Miipher-2's layer), 16 kHz vocoder."""
    return Miipher2Spec(backbone=hubert_base().to_dict(), layer=9, sample_rate=16000,
                        vocoder=_vocoder(768, [5, 4, 4, 4], [11, 8, 8, 8], 512))


@Miipher2Spec.preset("wavlm_base_l8")
def miipher2_wavlm_base_l8() -> Miipher2Spec:
    """WavLM base to layer 8, 16 kHz vocoder."""
    return Miipher2Spec(backbone=wavlm_base().to_dict(), layer=8, sample_rate=16000,
                        vocoder=_vocoder(768, [5, 4, 4, 4], [11, 8, 8, 8], 512))


def small_w2v_bert() -> W2VBertSpec:
    """The demonstration backbone: a 4 x 256 w2v-BERT layout (no published weights exist at
    this size; trained runs here use it randomly initialised and frozen, and say so)."""
    return W2VBertSpec(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=1024, conv_depthwise_kernel_size=15)


@Miipher2Spec.preset("small")
def miipher2_small() -> Miipher2Spec:
    """CPU-sized: the small w2v-BERT stand-in to layer 4, 16 kHz V3-style vocoder."""
    return Miipher2Spec(backbone=small_w2v_bert().to_dict(), layer=4, adapter_bottleneck=256,
                        sample_rate=16000,
                        vocoder=_vocoder(256, [5, 4, 4, 4], [11, 8, 8, 8], 128, resblock="2"),
                        window_seconds=8.0)


@Miipher2Spec.preset("tiny")
def miipher2_tiny() -> Miipher2Spec:
    """Test size: a 2 x 32 w2v-BERT, tiny vocoder, short windows."""
    bb = W2VBertSpec(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, conv_depthwise_kernel_size=5)
    return Miipher2Spec(backbone=bb.to_dict(), layer=2, adapter_bottleneck=16, sample_rate=16000,
                        vocoder=_vocoder(32, [5, 4, 4, 4], [11, 8, 8, 8], 32, resblock="2"),
                        window_seconds=2.0, overlap_seconds=0.4, crossfade_seconds=0.2)
