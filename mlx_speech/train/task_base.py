"""What a trainer trains: the task interface, the task registry, and the framework-neutral
half of the shipped tiny tasks.

Framework-neutral (imports neither mlx nor torch). A task is split in two:

* here, ``prepare(batch, rngs, train)``: numpy only, run in the training thread. All random
  draws of a step happen here, one generator per row of the *global* batch (``rngs[i]``
  belongs to this rank's ``i``-th row), so the inputs of a row do not depend on the number of
  ranks or on the gradient accumulation, and are the same in MLX and torch_ref.
* in ``mlx_speech.train.<file>`` and ``torch_ref.train.<file>``, the same class name built on
  this base: ``build()`` returns the module, ``loss(model, inputs)`` returns
  ``(scalar loss, {name: scalar})`` with the loss a *mean over rows*. GAN tasks instead give
  ``discriminator_loss(generator, discriminator, inputs)`` and
  ``generator_loss(generator, discriminator, inputs)``; their module has ``generator`` and
  ``discriminator`` children. In torch_ref the modules passed in may be DDP wrappers: call
  them, do not reach into their children.

Run hooks with defaults (override where a task needs them): ``open_corpus(spec, out_dir)``
reads the items before the model is built (a task whose model depends on its data, e.g. the
``tts`` task's feature statistics, computes that here); ``step`` is set by the loop before
each ``prepare`` (inputs that follow a schedule read it); ``export(model)`` is called by the
framework half on rank 0 after every checkpoint (e.g. a voice folder); ``summary()`` adds to
the run's summary.

Tasks are registered in :mod:`mlx_speech.registry` (a family's ``register_family(tasks=...)``,
or :func:`register_task`) under the name a recipe's ``task:`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlx_speech.data.augment import frame_lengths, spec_augment_masks, white_noise_at_snr
from mlx_speech.data.loader import Batch
from mlx_speech.data.sampler import Corpus, build_corpus
from mlx_speech.errors import SpecError
from mlx_speech.registry import get_task, register_task, task_names  # noqa: F401  (the task registry)
from mlx_speech.specs.base import Spec
from mlx_speech.specs.train import MelDenoiseGANSpec, MelDenoiserSpec


class Task:
    """Neutral base of a task. ``spec`` is the recipe's ``model:`` mapping, checked strictly."""

    spec_class: ClassVar[type[Spec]]
    gan: ClassVar[bool] = False
    # True when the loss has terms taken over the whole batch rather than a mean of per-row
    # terms (BSQ's codebook entropy, the share of codes used): splitting the rows into CPU
    # shards would change the maths, so the MLX trainer keeps one shard for such a task
    batch_level_loss: ClassVar[bool] = False
    step: int = 0  # the optimiser step about to run (set by the loop before each prepare)

    def __init__(self, spec: dict[str, Any] | Spec) -> None:
        if isinstance(spec, self.spec_class):
            self.spec = spec
        elif isinstance(spec, dict):
            self.spec = self.spec_class._build(spec, strict=True, where="model")
        else:
            raise SpecError(f"model: expected a mapping, got {type(spec).__name__}")

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        """numpy inputs of one step for this rank's rows (see the module docstring)."""
        raise NotImplementedError

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Corpus:
        """The training and validation items of the recipe ``spec`` (a ``TrainSpec``), read
        before ``build()``; the run writes into ``out_dir``."""
        return build_corpus(spec.data, spec.seed)

    def export(self, model: Any) -> None:
        """Write what the run produces besides checkpoints (rank 0, after each checkpoint)."""

    def summary(self) -> dict[str, Any]:
        """Entries added to the run's summary."""
        return {}


# --- mel_denoise / mel_denoise_gan: the neutral half ------------------------------------------
class MelDenoiseBase(Task):
    """Inputs of the tiny denoiser: clean and noisy waveforms, valid lengths in samples and
    frames, and SpecAugment keep-masks for the noisy log-mel (all ones when disabled or not
    training). Validation rows get noise too (from their own fixed generators), so the
    validation loss measures the same job."""

    spec_class = MelDenoiserSpec

    @property
    def denoiser(self) -> MelDenoiserSpec:
        return self.spec

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        s = self.denoiser
        mel = s.mel
        B, T = batch.wav.shape
        frames = int(frame_lengths(np.array([T]), hop_length=mel.hop_length, center=mel.center,
                                   n_fft=mel.n_fft)[0])
        noise = np.zeros_like(batch.wav)
        t_keep = np.ones((B, frames), dtype=np.float32)
        f_keep = np.ones((B, mel.n_mels), dtype=np.float32)
        aug = s.spec_augment
        for i, rng in enumerate(rngs):
            noise[i] = white_noise_at_snr(rng, batch.wav[i:i + 1], batch.lengths[i:i + 1],
                                          (s.snr_db[0], s.snr_db[1]))[0]
            if train and aug.enabled:
                t, f = spec_augment_masks(rng, 1, frames, mel.n_mels, time_masks=aug.time_masks,
                                          time_width=aug.time_width, freq_masks=aug.freq_masks,
                                          freq_width=aug.freq_width)
                t_keep[i], f_keep[i] = t[0], f[0]
        n_frames = np.minimum(frame_lengths(batch.lengths, hop_length=mel.hop_length,
                                            center=mel.center, n_fft=mel.n_fft), frames)
        return {"clean": batch.wav, "noisy": batch.wav + noise, "frames": n_frames.astype(np.int32),
                "time_keep": t_keep, "freq_keep": f_keep}


class MelDenoiseGANBase(MelDenoiseBase):
    spec_class = MelDenoiseGANSpec
    gan = True

    @property
    def denoiser(self) -> MelDenoiserSpec:
        return self.spec.generator
