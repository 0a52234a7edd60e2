"""The ``dac`` training task's recipe spec (framework-neutral).

A recipe's ``model:`` mapping for ``task: dac`` is a :class:`DACTrainSpec`::

    model:
      preset: hybrid_50hz          # DACSpec preset (or null: every field in ``codec``)
      codec: {}                    # DACSpec fields overriding the preset
      init: null                   # optional weights to start from (any format mlx_speech.load reads)
      discriminator: {...}         # DACDiscriminatorSpec fields (default: Descript's)
      segment_frames: 24           # crop per item, in codec frames
      mel_weight: 15.0             # Descript's conf/final weights
      fm_weight: 2.0
      adv_weight: 1.0
      commitment_weight: 0.25
      codebook_weight: 1.0
      semantic: {mode: none}       # or wavlm / hubert_clusters, see SemanticSpec

Semantic supervision of the first codebook (or of the latents before the quantizer) answers
SpeechTokenizer #8 (DAC-style VQ and distillation "do not mix"): the projection reads the
first level's *quantized* output (``target: codebook0``) so the supervision shapes what level 0
codes, not only the encoder, and quantizer dropout always keeps level 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.specs.base import Spec, require


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass
class SemanticSpec(Spec):
    """Semantic head on the first codebook (or the pre-quantizer latents).

    ``mode``: ``none``; ``wavlm``: a linear projection matched to a frozen SSL layer (``loss``
    ``cosine``: ``1 - cos``, or ``mse``); ``hubert_clusters``: a linear classifier trained with
    cross-entropy on k-means cluster IDs of a frozen SSL layer (``clusters`` centroids fitted once
    on ``kmeans_items`` items of the corpus, seeded). The teacher is a local transformers folder
    (``path``; WavLM / HuBERT / wav2vec 2.0, any the ``ssl`` family loads) or, for tests, random
    weights from ``teacher_spec`` (Wav2Vec2Spec fields) and ``seed``. ``layer``: which hidden
    state (0 = the feature projection). Teacher features are computed once per utterance with MLX,
    put on the codec's frames, and cached under ``cache_dir`` so both trainers read the same
    targets.
    """

    mode: Literal["none", "wavlm", "hubert_clusters"] = "none"
    path: str | None = None
    teacher_spec: dict[str, Any] | None = None
    seed: int = 0
    layer: int = 6
    target: Literal["codebook0", "latent"] = "codebook0"
    loss: Literal["cosine", "mse"] = "cosine"
    weight: float = 1.0
    clusters: int = 500
    kmeans_iters: int = 20
    kmeans_items: int = 200
    cache_dir: str = "cache/dac_teacher"

    def validate(self) -> None:
        w = type(self).__name__
        if self.mode == "none":
            return
        require(self.path is not None or self.teacher_spec is not None, w,
                f"semantic mode {self.mode!r} needs a teacher: path (a local transformers folder) "
                f"or teacher_spec (random weights, for tests)")
        require(self.layer >= 0, w, f"layer must be >= 0, got {self.layer}")
        require(self.weight >= 0, w, "weight must be >= 0")
        require(self.clusters >= 2 and self.kmeans_iters >= 1 and self.kmeans_items >= 1, w,
                "clusters must be >= 2, kmeans_iters and kmeans_items >= 1")


@dataclasses.dataclass
class DACTrainSpec(Spec):
    """``task: dac``: GAN training of a DAC-style codec (see the module docstring)."""

    preset: str | None = "hybrid_50hz"
    codec: dict[str, Any] = _field(dict)
    init: str | None = None
    discriminator: dict[str, Any] = _field(dict)
    segment_frames: int = 24
    mel_weight: float = 15.0
    fm_weight: float = 2.0
    adv_weight: float = 1.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    semantic: SemanticSpec = _field(SemanticSpec)

    def validate(self) -> None:
        w = type(self).__name__
        self.codec_spec()
        self.discriminator_spec()
        require(self.segment_frames >= 1, w, f"segment_frames must be >= 1, got {self.segment_frames}")
        require(min(self.mel_weight, self.fm_weight, self.adv_weight, self.commitment_weight,
                    self.codebook_weight) >= 0, w, "loss weights must be >= 0")

    def codec_spec(self) -> DACSpec:
        """The codec: preset ``preset`` with ``codec``'s fields replaced."""
        where = f"{type(self).__name__}.codec"
        base = DACSpec.from_preset(self.preset).to_dict() if self.preset is not None else {}
        return DACSpec._build({**base, **(self.codec or {})}, strict=True, where=where)

    def discriminator_spec(self) -> Any:
        """The discriminator (Descript's MPD + multi-band STFT discriminator), at the codec's rate."""
        from mlx_speech.models.dac.gan_spec import DACDiscriminatorSpec  # noqa: PLC0415

        data = {"sample_rate": self.codec_spec().sample_rate, **(self.discriminator or {})}
        return DACDiscriminatorSpec._build(data, strict=True,
                                           where=f"{type(self).__name__}.discriminator")

    @property
    def segment_samples(self) -> int:
        return self.segment_frames * self.codec_spec().hop_length
