"""The ``bsq_vit`` task's framework-neutral half: window crops, SpecAugment masks, GAN warm-up.

Imports neither mlx nor torch (numpy only). ``prepare`` cuts one tokenizer window
(``context_frames`` codec frames, ``window_samples`` samples) from each item at a codec-frame
boundary: a random offset from the row's generator in training, centred otherwise; a shorter
item is zero-padded (silence, which the tokenizer must code too). Inputs of a step:

* ``wav (B, window_samples)`` float32;
* ``time_keep (B, T)`` and ``freq_keep (B, n_mels)``: SpecAugment keep-masks of the encoder's
  input mel (``T = context_frames * patch_time``), all ones when disabled or not training;
* ``gan_scale (B,)``: 1 once ``disc_start`` optimiser steps have run, else 0. The framework
  halves multiply the discriminator loss and the generator's adversarial term by it, so the
  warm-up is data, not a branch a compiled step would bake in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlx_speech.data.augment import spec_augment_masks
from mlx_speech.data.loader import Batch
from mlx_speech.errors import SpecError
from mlx_speech.models.bsq_vit.train_spec import BSQViTTrainSpec
from mlx_speech.train.task_base import Task


class BSQViTTaskBase(Task):
    spec_class = BSQViTTrainSpec
    gan = True
    batch_level_loss = True  # the codebook entropy is an entropy of the batch's mean

    def __init__(self, spec: dict[str, Any] | BSQViTTrainSpec) -> None:
        super().__init__(spec)
        self.tokenizer = self.spec.tokenizer_spec()

    def check_init(self, spec: Any) -> None:
        """``model.init``'s tokenizer spec must be the recipe's (up to the vocoder, which the
        run does not train)."""
        if spec.replace(vocoder=self.tokenizer.vocoder) != self.tokenizer:
            raise SpecError(f"model.init {self.spec.init}: its tokenizer spec differs from "
                            f"the recipe's")

    @property
    def mel_frames(self) -> int:
        t = self.tokenizer
        return t.context_frames * t.patch_time

    def crop(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> np.ndarray:
        """One window per row, starting on a codec-frame boundary (see the module docstring)."""
        t = self.tokenizer
        hop, n = t.frame_size, t.window_samples
        out = np.zeros((batch.wav.shape[0], n), dtype=np.float32)
        for i, rng in enumerate(rngs):
            length = int(batch.lengths[i])
            frames = length // hop
            spare = frames - t.context_frames
            if spare > 0:
                start = (int(rng.integers(0, spare + 1)) if train else spare // 2) * hop
            else:
                start = 0
            take = min(length - start, n)
            out[i, :take] = batch.wav[i, start:start + take]
        return out

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        B = batch.wav.shape[0]
        n_mels = self.tokenizer.mel.n_mels
        t_keep = np.ones((B, self.mel_frames), dtype=np.float32)
        f_keep = np.ones((B, n_mels), dtype=np.float32)
        aug = self.spec.spec_augment
        wav = self.crop(batch, rngs, train=train)
        if train and aug.enabled:
            for i, rng in enumerate(rngs):
                t, f = spec_augment_masks(rng, 1, self.mel_frames, n_mels,
                                          time_masks=aug.time_masks, time_width=aug.time_width,
                                          freq_masks=aug.freq_masks, freq_width=aug.freq_width)
                t_keep[i], f_keep[i] = t[0], f[0]
        on = 1.0 if train and self.step >= self.spec.disc_start else 0.0
        return {"wav": wav, "time_keep": t_keep, "freq_keep": f_keep,
                "gan_scale": np.full((B,), on, dtype=np.float32)}
