"""Spec of the ``tts`` training task (a recipe's ``model:``): a FastSpeech2-style voice.

Framework-neutral (imports neither mlx nor torch). The utterances come from the recipe's
``data.sources`` (a manifest, an LJSpeech-layout folder, ...); everything TTS-specific is here:

* ``architecture``: the acoustic model (a :class:`~mlx_speech.models.tts.spec.FastSpeechSpec`
  mapping merged over ``preset`` when one is named); its ``pitch_mean`` / ``pitch_std`` are
  replaced by the corpus' statistics before the model is built;
* ``mel_preset``: the log-mel the model predicts (a ``MelSpec`` preset); features are
  extracted once per corpus and cached under ``cache_dir`` (default: the run's ``out_dir``);
* ``language``: the text frontend's language of items without one, and the voice's language;
* ``alignment``: where the frames per phone come from. ``corpus``: the corpus generator's
  phone timings (festival / flite corpora only). ``learned``: the model's own aligner
  (forward-sum loss with a beta-binomial prior, weight ``align_weight``; monotonic alignment
  search on its scores gives the durations at every step; a binarization loss, weight
  ``bin_weight``, from step ``bin_start`` on); needs ``architecture.aligner_dim > 0`` and only
  (wav, text) pairs;
* ``synthesize``: when set, a manifest source that does not exist yet is generated first by
  festival speaking ``synthesize.sentences`` with ``synthesize.voice`` (the bundled voice's
  corpus; a list of sentence files gives the k-th manifest source the k-th list); ``max_items`` keeps the first N training utterances (0: all);
* ``voice_dir``: where the voice folder (``voice.json`` + ``acoustic.safetensors``) is written
  at every checkpoint and at the end (default ``<out_dir>/voice``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mlx_speech.models.tts.spec import FastSpeechSpec
from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class FestivalCorpusSpec(Spec):
    """A single-voice festival corpus generated when its manifest is missing."""

    sentences: str | list[str] = "mlx_speech/assets/tts/train_en.txt"   # one sentence a line
    voice: str = "cmu_us_slt_arctic_hts"

    def validate(self) -> None:
        require(bool(self.sentences) and bool(self.voice), type(self).__name__,
                "sentences and voice must be set")

    def sentence_lists(self) -> list[str]:
        """One list per manifest source, in order (a single list serves every source)."""
        return [self.sentences] if isinstance(self.sentences, str) else list(self.sentences)


@dataclasses.dataclass
class TTSTrainSpec(Spec):
    """The ``tts`` task's ``model:`` mapping (see the module docstring)."""

    preset: str | None = None
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)
    mel_preset: str = "hifigan_22k"
    language: str = "en"
    alignment: Literal["corpus", "learned"] = "corpus"
    align_weight: float = 1.0
    bin_weight: float = 1.0
    bin_start: int = 1000
    synthesize: FestivalCorpusSpec | None = None
    max_items: int = 0
    cache_dir: str | None = None
    voice_dir: str | None = None

    def validate(self) -> None:
        w = type(self).__name__
        require(self.max_items >= 0 and self.bin_start >= 0, w, "max_items and bin_start must be >= 0")
        require(self.align_weight >= 0 and self.bin_weight >= 0, w, "loss weights must be >= 0")
        arch = self.arch
        if self.alignment == "learned":
            require(arch.aligner_dim > 0, w, "alignment: learned needs architecture.aligner_dim > 0")

    @property
    def arch(self) -> FastSpeechSpec:
        """The acoustic model's spec (preset merged with ``architecture``), checked strictly."""
        base = FastSpeechSpec.from_preset(self.preset).to_dict() if self.preset else {}
        return FastSpeechSpec._build({**base, **self.architecture}, strict=True,
                                     where="model.architecture")
