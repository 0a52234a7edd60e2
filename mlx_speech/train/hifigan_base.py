"""The framework-neutral half of the ``hifigan`` task (GAN training of a HiFi-GAN vocoder).

Imports neither mlx nor torch. ``prepare`` crops one random segment of ``segment_size``
samples per row (from the row's valid samples; a shorter item is zero-padded), drawn from the
row's own generator, so MLX and torch_ref see the same crops. The log-mel of the crop (the
generator's input) and the mel losses are computed by the framework halves
(``mlx_speech.train.tasks_hifigan`` / ``torch_ref.train.tasks_hifigan``).
"""

from __future__ import annotations

import numpy as np

from mlx_speech.data.loader import Batch
from mlx_speech.models.hifigan.train_spec import HiFiGANTrainSpec
from mlx_speech.train.task_base import Task


class HiFiGANTaskBase(Task):
    spec_class = HiFiGANTrainSpec
    gan = True

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        seg = self.spec.segment_size
        B = batch.wav.shape[0]
        out = np.zeros((B, seg), dtype=np.float32)
        for i, rng in enumerate(rngs):
            n = int(batch.lengths[i])
            start = int(rng.integers(0, n - seg + 1)) if n > seg else 0
            take = min(n, seg)
            out[i, :take] = batch.wav[i, start:start + take]
        return {"wav": out}
