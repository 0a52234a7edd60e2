"""The ``bsq_vit`` training task's recipe spec (framework-neutral).

A recipe's ``model:`` mapping for ``task: bsq_vit`` is a :class:`BSQViTTrainSpec`::

    model:
      preset: bsq_vit_b18          # BSQViTSpec preset (or null: every field in ``tokenizer``)
      tokenizer: {}                # BSQViTSpec fields overriding the preset
      init: null                   # optional tokenizer weights to start from
      vocoder_weights: null        # a HiFi-GAN generator joined into the exported tokenizer
      discriminator: {}            # PatchGANSpec fields (default: the "default" preset)
      l1_weight: 1.0               # mel reconstruction, on the [-1, 1] scale
      l2_weight: 1.0
      quantizer_weight: 1.0        # the BSQ loss (commitment + zeta * entropy penalty / tau)
      adv_weight: 0.1              # PatchGAN hinge loss on the mel (BSQ-ViT's discriminator weight)
      disc_start: 2000             # optimiser steps before the GAN terms switch on (warm-up)
      spec_augment: {enabled: false}

Crops are one tokenizer window (``context_frames`` codec frames); SpecAugment masks the
encoder's input only, so the tokenizer learns to code what is missing from context, and the
reconstruction target stays the clean mel.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_speech.models.bsq_vit.spec import BSQViTSpec
from mlx_speech.specs.base import Spec, require
from mlx_speech.specs.train import SpecAugmentSpec


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass
class BSQViTTrainSpec(Spec):
    """``task: bsq_vit``: the tokenizer against a PatchGAN on the mel (module docstring)."""

    preset: str | None = "bsq_vit_b18"
    tokenizer: dict[str, Any] = _field(dict)
    init: str | None = None
    vocoder_weights: str | None = None
    discriminator: dict[str, Any] = _field(dict)
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    quantizer_weight: float = 1.0
    adv_weight: float = 0.1
    disc_start: int = 2000
    spec_augment: SpecAugmentSpec = _field(lambda: SpecAugmentSpec(enabled=False))

    def validate(self) -> None:
        w = type(self).__name__
        self.tokenizer_spec()
        self.discriminator_spec()
        require(min(self.l1_weight, self.l2_weight, self.quantizer_weight, self.adv_weight) >= 0,
                w, "loss weights must be >= 0")
        require(self.disc_start >= 0, w, f"disc_start must be >= 0, got {self.disc_start}")

    def tokenizer_spec(self) -> BSQViTSpec:
        """The tokenizer: preset ``preset`` with ``tokenizer``'s fields replaced."""
        where = f"{type(self).__name__}.tokenizer"
        base = BSQViTSpec.from_preset(self.preset).to_dict() if self.preset is not None else {}
        return BSQViTSpec._build({**base, **(self.tokenizer or {})}, strict=True, where=where)

    def discriminator_spec(self) -> Any:
        from mlx_speech.models.bsq_vit.gan_spec import PatchGANSpec  # noqa: PLC0415

        base = PatchGANSpec.from_preset("default").to_dict()
        return PatchGANSpec._build({**base, **(self.discriminator or {})}, strict=True,
                                   where=f"{type(self).__name__}.discriminator")

    @property
    def segment_samples(self) -> int:
        return self.tokenizer_spec().window_samples
