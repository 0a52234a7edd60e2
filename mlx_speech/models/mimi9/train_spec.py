"""Spec of the ``mimi9`` training task: 9-codebook Mimi distillation (the recipe's ``model:``).

Framework-neutral (imports neither mlx nor torch). The task (``mlx_speech.train.tasks_mimi9``
and its torch_ref twin) trains a :class:`~mlx_speech.models.mimi9.spec.Mimi9Spec` model against
frozen teachers:

* start: ``weights`` (a surgered checkpoint from ``mlx-speech convert mimi-surgery``: the
  ``model.safetensors`` file or its directory) or random init from ``preset`` (a
  ``Mimi9Spec`` preset name) with ``architecture`` overrides (a partial ``Mimi9Spec`` mapping
  merged over the preset) and ``seed`` (tests, smoke runs);
* teachers: ``qwen`` (a local mlx-lm / HF directory, or a random ``config`` for tests) and
  ``wavlm`` (a local transformers WavLM directory, or a random ``Wav2Vec2Spec`` mapping);
  their targets are computed once per utterance and cached under ``cache_dir``
  (:mod:`mlx_speech.train.mimi9_data`);
* losses (``loss``): multi-scale log-mel L1 of the reconstruction (``mel_scales``: ``[n_fft,
  hop, n_mels]`` at the model's sample rate), the bridge's commitment loss, Qwen distillation
  (``proj_qwen(q_c)`` vs Qwen hidden states per 12.5 Hz frame) and WavLM distillation
  (``proj_wavlm(q_c + q_p)`` vs WavLM features per frame), weighted and summed; optional
  GAN terms (``adversarial``, ``feature_matching``: default 0, off) against a HiFi-GAN
  MPD + MSD ``discriminator`` (a ``HiFiGANDiscriminatorSpec`` mapping, default the paper's):
  with ``adversarial > 0`` the task is a GAN task (below);
* ``crop_seconds``: training crops, cut at frame boundaries (a whole number of frames);
* ``init_manifest``: utterances whose latents k-means-initialise codebooks that are still
  empty when training starts (surgery leaves head 0's empty): the first ``init_utterances``
  long enough for one crop, centre crops, in file order;
* ``ema_heads``: heads whose codebooks keep learning by their EMA update during training
  (default ``[0, 1]``: the fresh content head and the prosody head, which also get the higher
  learning rate); ``ema_decay`` overrides their decay (None: the codebook's own, Mimi 0.99).
  The other heads' codebooks stay fixed (decay 1, no smoothing, no dead-code restarts), as
  the transplanted acoustic codebooks should move slowly if at all; list them to let them
  learn too.

GAN variant (``loss.adversarial > 0``): the trainer's module is a wrapper with children
``generator`` (the Mimi9 model) and ``discriminator``, so parameter names (and the recipe's
``optimizer.groups`` patterns) gain a ``generator.`` prefix; the discriminator is trained by
its own optimiser, ``optimizer`` with the recipe's ``disc_optimizer`` overrides (groups are
not inherited). Discriminator loss: least-squares GAN on the real crop vs the reconstruction
(a constant); generator loss: the distillation total above ``+ adversarial * LSGAN_G +
feature_matching * FM`` (L1 between the discriminator's feature maps of real and
reconstructed audio). ``feature_matching > 0`` needs ``adversarial > 0``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_speech.specs.base import Spec, require
from mlx_speech.models.hifigan.train_spec import HiFiGANDiscriminatorSpec

DEFAULT_MEL_SCALES = [[512, 128, 64], [1024, 256, 80], [2048, 512, 128]]


@dataclasses.dataclass
class QwenTeacherSpec(Spec):
    """The Qwen teacher: ``path`` (local directory with ``config.json``, ``model*.safetensors``
    and a tokenizer) or ``config`` (an mlx-lm config mapping: random weights from ``seed``;
    tokens are then UTF-8 bytes modulo the vocabulary). ``layer``: which hidden state
    (transformers numbering: 0 = embeddings, -1 = the final-normed output)."""

    path: str | None = None
    config: dict[str, Any] | None = None
    seed: int = 0
    layer: int = -1

    def validate(self) -> None:
        w = type(self).__name__
        require((self.path is None) != (self.config is None), w,
                "set exactly one of path (a local teacher directory) or config (random tiny teacher)")


@dataclasses.dataclass
class WavLMTeacherSpec(Spec):
    """The WavLM teacher: ``path`` (local transformers directory) or ``spec`` (a
    ``Wav2Vec2Spec`` mapping: random weights from ``seed``). ``layer`` indexes the hidden
    states (0 = input of the first transformer layer, -1 = last)."""

    path: str | None = None
    spec: dict[str, Any] | None = None
    seed: int = 0
    layer: int = -1

    def validate(self) -> None:
        w = type(self).__name__
        require((self.path is None) != (self.spec is None), w,
                "set exactly one of path (a local WavLM directory) or spec (random tiny teacher)")


@dataclasses.dataclass
class Mimi9LossSpec(Spec):
    """Weights of the loss terms (0 drops a term from the total; it is still logged).
    ``adversarial`` > 0 turns on GAN training (module docstring); ``feature_matching`` then
    weights the feature-matching term (both 0 by default: no discriminator)."""

    mel: float = 1.0
    commitment: float = 1.0
    qwen: float = 1.0
    wavlm: float = 1.0
    adversarial: float = 0.0
    feature_matching: float = 0.0

    def validate(self) -> None:
        w = type(self).__name__
        for name in ("mel", "commitment", "qwen", "wavlm", "adversarial", "feature_matching"):
            require(getattr(self, name) >= 0, w, f"{name} must be >= 0, got {getattr(self, name)}")
        require(self.feature_matching == 0 or self.adversarial > 0, w,
                "feature_matching > 0 needs adversarial > 0 (the discriminator trains only in a "
                "GAN run)")

    @property
    def gan(self) -> bool:
        """Whether the run trains a discriminator (``adversarial > 0``)."""
        return self.adversarial > 0


@dataclasses.dataclass
class Mimi9TrainSpec(Spec):
    """``mimi9`` task settings (module docstring)."""

    weights: str | None = None
    preset: str | None = None
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    qwen: QwenTeacherSpec = dataclasses.field(default_factory=lambda: QwenTeacherSpec(path=""))
    wavlm: WavLMTeacherSpec = dataclasses.field(default_factory=lambda: WavLMTeacherSpec(path=""))
    loss: Mimi9LossSpec = dataclasses.field(default_factory=Mimi9LossSpec)
    discriminator: HiFiGANDiscriminatorSpec = dataclasses.field(default_factory=HiFiGANDiscriminatorSpec)
    mel_scales: list[list[int]] = dataclasses.field(
        default_factory=lambda: [list(s) for s in DEFAULT_MEL_SCALES])
    crop_seconds: float = 2.0
    cache_dir: str = "runs/mimi9_cache"
    init_manifest: str | None = None
    init_utterances: int = 128
    ema_heads: list[int] = dataclasses.field(default_factory=lambda: [0, 1])
    ema_decay: float | None = None

    def validate(self) -> None:
        w = type(self).__name__
        require((self.weights is None) != (self.preset is None), w,
                "set exactly one of weights (a surgered checkpoint) or preset (random init)")
        require(self.weights is None or not self.architecture, w,
                "architecture overrides apply to preset (random init) only")
        require(self.crop_seconds > 0, w, f"crop_seconds must be > 0, got {self.crop_seconds}")
        require(all(0 <= h <= 8 for h in self.ema_heads) and len(set(self.ema_heads)) == len(self.ema_heads),
                w, f"ema_heads must be distinct heads in 0..8, got {self.ema_heads}")
        require(self.ema_decay is None or 0.0 <= self.ema_decay < 1.0, w,
                f"ema_decay must be in [0, 1) or null, got {self.ema_decay}")
        require(bool(self.mel_scales) and all(len(s) == 3 and min(s) > 0 for s in self.mel_scales), w,
                f"mel_scales must be a non-empty list of [n_fft, hop, n_mels], got {self.mel_scales}")
        require(bool(self.cache_dir), w, "cache_dir must not be empty")
        require(self.init_utterances >= 1, w, "init_utterances must be >= 1")

    def model_spec(self) -> Any:
        """The ``Mimi9Spec`` of a random init (``preset`` + ``architecture``); None with ``weights``."""
        if self.preset is None:
            return None
        from mlx_speech.models.mimi9.spec import Mimi9Spec  # noqa: PLC0415

        base = Mimi9Spec.from_preset(self.preset).to_dict()
        return Mimi9Spec._build(_merge(base, self.architecture), strict=True,
                                where="model.architecture")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
