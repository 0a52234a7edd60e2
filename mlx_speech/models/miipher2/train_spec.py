"""Recipes of the three Miipher-2 training stages (framework-neutral).

Stage 1, ``task: miipher2_adapters``: only the adapters train. Each row is a clean crop and
its degraded copy (``degrade``: :class:`~mlx_speech.data.degrade.DegradeSpec`, drawn from the
row's own generator); the adapted features of the degraded copy chase the frozen backbone's
features of the clean one under ``l1 + l2 + spectral convergence``, each term divided by the
size of the target (the raw terms differ by orders of magnitude between layers and backbones,
which Open-Miipher-2 found made the sum untrainable)::

    model:
      variant: w2v_bert_l8        # Miipher2Spec preset (or null: all fields in ``restorer``)
      restorer:                   # Miipher2Spec fields replacing the preset's, e.g.
        backbone_path: ~/models/w2v-bert-2.0   # transformers folder; null = random backbone
      init: null                  # a miipher2 file to start from (stages 2 and 3)
      degrade: {...}
      segment_seconds: 3.0

Stage 2, ``task: miipher2_vocoder`` with ``features: clean``: the vocoder learns to speak the
backbone's features of clean speech (HiFi-GAN's MPD + MSD, LSGAN, feature matching, mel L1,
and a multi-resolution STFT loss). Stage 3, the same task with ``features: restored`` and
``init`` = the stage-2 export: the vocoder is fine-tuned on the adapted features of degraded
speech, so it learns to voice what the adapters actually produce.

``restorer.backbone_path: null`` builds a randomly initialised backbone (seeded by the run): a frozen
random encoder still carries the signal, but it is a stand-in, and runs that use it say so.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mlx_speech.data.degrade import DegradeSpec
from mlx_speech.models.hifigan.train_spec import HiFiGANDiscriminatorSpec
from mlx_speech.models.miipher2.spec import Miipher2Spec
from mlx_speech.specs.audio import MelSpec
from mlx_speech.specs.base import Spec, require

MEL_PRESETS = {16000: "speech_16k", 24000: "speech_24k"}


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass
class _Miipher2Run(Spec):
    variant: str | None = "w2v_bert_l8"
    restorer: dict[str, Any] | None = _field(dict)
    init: str | None = None
    degrade: DegradeSpec = _field(DegradeSpec)

    def restorer_spec(self) -> Miipher2Spec:
        """The model: preset ``variant`` with ``restorer``'s fields replaced."""
        where = f"{type(self).__name__}.restorer"
        if self.variant is None:
            return Miipher2Spec._build(dict(self.restorer or {}), strict=True, where=where)
        base = Miipher2Spec.from_preset(self.variant).to_dict()
        return Miipher2Spec._build({**base, **(self.restorer or {})}, strict=True, where=where)

    def validate(self) -> None:
        w = type(self).__name__
        spec = self.restorer_spec()
        require(self.init is None or spec.backbone_path is None, w,
                "give init (a miipher2 file, backbone included) or restorer.backbone_path, "
                "not both")


@dataclasses.dataclass
class Miipher2AdapterSpec(_Miipher2Run):
    """``task: miipher2_adapters`` (stage 1; see the module docstring)."""

    segment_seconds: float = 3.0
    babble_items: int = 32
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    sc_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        w = type(self).__name__
        require(self.segment_seconds >= 0.5, w, "segment_seconds must be >= 0.5")
        require(self.babble_items >= 0, w, "babble_items must be >= 0")
        require(min(self.l1_weight, self.l2_weight, self.sc_weight) >= 0
                and max(self.l1_weight, self.l2_weight, self.sc_weight) > 0, w,
                "loss weights must be >= 0, one of them > 0")


@dataclasses.dataclass
class Miipher2VocoderSpec(_Miipher2Run):
    """``task: miipher2_vocoder`` (stages 2 and 3; see the module docstring).

    ``segment_frames`` backbone frames per crop (the vocoder sees their features and is
    scored on the ``segment_frames * hop_length`` samples they cover). ``mel_preset``: the
    mel L1's front end (default: ``speech_16k`` / ``speech_24k`` by the model's rate).
    ``stft_resolutions``: ``[n_fft, hop, win]`` triples of the multi-resolution STFT loss
    (spectral convergence + log-magnitude L1, averaged).
    """

    features: Literal["clean", "restored"] = "clean"
    segment_frames: int = 32
    babble_items: int = 32
    discriminator: HiFiGANDiscriminatorSpec = _field(HiFiGANDiscriminatorSpec)
    mel_preset: str | None = None
    mel_weight: float = 45.0
    stft_weight: float = 1.0
    fm_weight: float = 2.0
    adv_weight: float = 1.0
    stft_resolutions: list[list[int]] = _field(
        lambda: [[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]])

    def validate(self) -> None:
        super().validate()
        w = type(self).__name__
        require(self.segment_frames >= 4, w, "segment_frames must be >= 4")
        require(min(self.mel_weight, self.stft_weight, self.fm_weight, self.adv_weight) >= 0, w,
                "loss weights must be >= 0")
        for r in self.stft_resolutions:
            require(len(r) == 3 and r[0] > 0 and r[1] > 0 and 0 < r[2] <= r[0], w,
                    f"stft_resolutions entries are [n_fft, hop, win] with win <= n_fft, got {r}")
        mel = self.loss_mel()
        require(mel.sample_rate == self.restorer_spec().sample_rate, w,
                f"mel_preset {self.mel_preset!r} is at {mel.sample_rate} Hz, the model at "
                f"{self.restorer_spec().sample_rate} Hz")

    def loss_mel(self) -> MelSpec:
        name = self.mel_preset
        if name is None:
            rate = self.restorer_spec().sample_rate
            name = MEL_PRESETS.get(rate)
            require(name is not None, type(self).__name__,
                    f"no default mel_preset for {rate} Hz; name one")
        return MelSpec.from_preset(name)
