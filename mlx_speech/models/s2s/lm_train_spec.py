"""The ``s2s_lm`` training task's recipe spec (framework-neutral): teacher-forced training of
the Moshi-style LM (model B) with a text inner monologue.

A recipe's ``model:`` mapping for ``task: s2s_lm`` is an :class:`S2SLMTrainSpec`::

    model:
      preset: tiny               # MoshiLMSpec preset (or null: every field in ``arch``)
      arch: {}                   # MoshiLMSpec fields overriding the preset
      codec: mimi                # the codec family that tokenises the audio (its frame rate
      codec_weights: weights/mimi.safetensors   #  places the words) and its weights
      tokenizer: weights/tokenizer.model        # sentencepiece .model or HF tokenizer.json
      init: null                 # moshi folder or our tagged moshi_lm file to start from
      cache_dir: null            # codes cache (null: <out_dir>/codes)
      layout: turns              # turns: user turn, then the model's; overlay: one timeline
      max_frames: 256            # rows are padded to this (longer pairs leave the corpus)
      text_weight: 1.0           # weight of the text loss beside the audio loss
      text_padding_weight: 1.0   # weight of PAD / end-of-padding text targets
      first_codebook_weight: 1.0 # multiplier of own codebook 0 (the Moshi paper: 100)
      codebook_weights: null     # loss weight per own codebook before the multiplier

Why the fields are these: the codec and its weights name the codes cache that model A's task
already keeps (:mod:`mlx_speech.train.s2s_data`), so a corpus is coded once for both models;
the tokenizer's vocabulary must fit the LM's ``text_card`` (checked with the tokenizer, in
the task). The loss weights are moshi's training knobs: the semantic (first) codebook carries
most of the content, padding dominates the text stream. Both loss terms are per-row weighted
means (:mod:`mlx_speech.train.s2s_lm_data`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_speech.models.s2s.lm_spec import MoshiLMSpec
from mlx_speech.specs.base import Spec, require

LAYOUTS = ("turns", "overlay")


@dataclasses.dataclass
class S2SLMTrainSpec(Spec):
    """``task: s2s_lm``: the Moshi-style LM on cached codec codes (module docstring)."""

    preset: str | None = "moshiko"
    arch: dict[str, Any] = dataclasses.field(default_factory=dict)
    codec: str = "mimi"
    codec_weights: str | None = None
    tokenizer: str | None = None
    init: str | None = None
    cache_dir: str | None = None
    layout: str = "turns"
    max_frames: int = 256
    text_weight: float = 1.0
    text_padding_weight: float = 1.0
    first_codebook_weight: float = 1.0
    codebook_weights: list[float] | None = None

    def validate(self) -> None:
        w = type(self).__name__
        arch = self.model_spec()
        require(bool(self.codec), w, "codec must name a registered codec family")
        require(self.layout in LAYOUTS, w,
                f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        require(self.max_frames >= 2, w, "max_frames must be >= 2")
        require(self.text_weight >= 0 and self.text_padding_weight >= 0, w,
                "text_weight and text_padding_weight must be >= 0")
        require(self.first_codebook_weight > 0, w, "first_codebook_weight must be > 0")
        if self.codebook_weights is not None:
            require(len(self.codebook_weights) == arch.dep_q, w,
                    f"codebook_weights has {len(self.codebook_weights)} entries for the "
                    f"model's {arch.dep_q} own codebooks (dep_q)")
            require(min(self.codebook_weights) >= 0 and sum(self.codebook_weights) > 0, w,
                    "codebook_weights must be >= 0 with a positive sum")
        for name in ("existing_text_padding_id", "existing_text_end_padding_id"):
            v = getattr(arch, name)
            require(0 <= v < arch.text_card, w,
                    f"arch.{name} {v} must be a text token below text_card {arch.text_card}")

    def model_spec(self) -> MoshiLMSpec:
        """The model: preset ``preset`` with ``arch``'s fields replaced."""
        base = MoshiLMSpec.from_preset(self.preset).to_dict() if self.preset is not None else {}
        spec = MoshiLMSpec._build({**base, **(self.arch or {})}, strict=True,
                                  where=f"{type(self).__name__}.arch")
        spec.validate()
        return spec

    def weights(self) -> list[float]:
        """Loss weight of each own codebook: ``codebook_weights`` (default all 1), codebook 0
        times ``first_codebook_weight`` (moshi's first-codebook multiplier). Not normalised:
        the audio loss divides by the weights of the positions it counts."""
        w = [float(x) for x in (self.codebook_weights or [1.0] * self.model_spec().dep_q)]
        w[0] *= float(self.first_codebook_weight)
        return w
