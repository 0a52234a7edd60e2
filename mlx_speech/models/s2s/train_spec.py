"""The ``s2s`` training task's recipe spec (framework-neutral).

A recipe's ``model:`` mapping for ``task: s2s`` is an :class:`S2STrainSpec`::

    model:
      preset: s2s_base           # S2SSpec preset (or null: every field in ``arch``)
      arch:                      # S2SSpec fields overriding the preset
        codec_weights: weights/mimi.safetensors   # the codec that tokenises the audio
      init: null                 # optional s2s weights to start from (same spec)
      cache_dir: null            # codes cache (null: <out_dir>/codes)
      max_in_frames: 256         # batches are padded to these (longer pairs leave the corpus)
      max_out_frames: 256
      codebook_weights: null     # loss weight per output codebook (null: all 1)

Data: the recipe's ``data.sources`` are pair manifests (``kind: manifest``; the keys are in
:mod:`mlx_speech.train.s2s_data`). The loss is the teacher-forced cross-entropy of the output
codes, per codebook averaged over the row's coded positions, weighted by
``codebook_weights`` (normalised to sum 1), then averaged over rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_speech.models.s2s.spec import S2SSpec
from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class S2STrainSpec(Spec):
    """``task: s2s``: the encoder-decoder on cached codec codes (module docstring)."""

    preset: str | None = "s2s_base"
    arch: dict[str, Any] = dataclasses.field(default_factory=dict)
    init: str | None = None
    cache_dir: str | None = None
    max_in_frames: int = 256
    max_out_frames: int = 256
    codebook_weights: list[float] | None = None

    def validate(self) -> None:
        w = type(self).__name__
        arch = self.model_spec()
        require(self.max_in_frames >= 1 and self.max_out_frames >= 1, w,
                "max_in_frames and max_out_frames must be >= 1")
        if self.codebook_weights is not None:
            require(len(self.codebook_weights) == arch.out_codebooks, w,
                    f"codebook_weights has {len(self.codebook_weights)} entries for "
                    f"{arch.out_codebooks} output codebooks")
            require(min(self.codebook_weights) >= 0 and sum(self.codebook_weights) > 0, w,
                    "codebook_weights must be >= 0 with a positive sum")

    def model_spec(self) -> S2SSpec:
        """The model: preset ``preset`` with ``arch``'s fields replaced."""
        base = S2SSpec.from_preset(self.preset).to_dict() if self.preset is not None else {}
        return S2SSpec._build({**base, **(self.arch or {})}, strict=True,
                              where=f"{type(self).__name__}.arch")

    def weights(self) -> list[float]:
        """Per-codebook loss weights, normalised to sum 1."""
        k = self.model_spec().out_codebooks
        w = self.codebook_weights or [1.0] * k
        total = float(sum(w))
        return [float(x) / total for x in w]
