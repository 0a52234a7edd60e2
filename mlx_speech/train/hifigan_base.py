"""The framework-neutral half of the ``hifigan`` task (GAN training of a HiFi-GAN vocoder).

Imports neither mlx nor torch. ``prepare`` crops one random segment of ``segment_size``
samples per row (from the row's valid samples; a shorter item is zero-padded), drawn from the
row's own generator, so MLX and torch_ref see the same crops. The log-mel of the crop (the
generator's input) and the mel losses are computed by the framework halves
(``mlx_speech.train.tasks_hifigan`` / ``torch_ref.train.tasks_hifigan``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data.loader import Batch
from mlx_speech.data.manifest import DataError
from mlx_speech.models.hifigan.train_spec import HiFiGANTrainSpec
from mlx_speech.train.task_base import Task


class HiFiGANTaskBase(Task):
    spec_class = HiFiGANTrainSpec
    gan = True
    step = 0  # set by the trainer before every step

    @property
    def gan_on(self) -> bool:
        """Whether this step trains adversarially (``disc_start`` steps have run)."""
        return self.step >= self.spec.disc_start

    def check_init(self, src: object, where: str) -> None:
        """``model.init``'s generator must be the recipe's kind and spec."""
        from mlx_speech.errors import CheckpointError  # noqa: PLC0415

        want = self.spec.generator_spec()
        if type(getattr(src, "spec", None)) is not type(want) or src.spec != want:
            raise CheckpointError(f"model.init {where}: its generator ({type(src).__name__}) differs from "
                                  f"the recipe's {self.spec.kind} generator spec")

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        if self.spec.mel_dir is not None:
            return self.prepare_with_mels(batch, rngs)
        seg = self.spec.segment_size
        B = batch.wav.shape[0]
        out = np.zeros((B, seg), dtype=np.float32)
        for i, rng in enumerate(rngs):
            n = int(batch.lengths[i])
            start = int(rng.integers(0, n - seg + 1)) if n > seg else 0
            take = min(n, seg)
            out[i, :take] = batch.wav[i, start:start + take]
        return {"wav": out}

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Any:
        """As every task's, after checking that ``mel_dir`` gets whole utterances (the segment
        must sit on the stored mel's frame grid) and exists, and that a warm-up is not compiled."""
        from mlx_speech.errors import SpecError  # noqa: PLC0415

        if self.spec.disc_start and spec.compile:
            raise SpecError("model.disc_start needs compile: false (the warm-up changes the loss's graph "
                            "at step disc_start)")
        if self.spec.mel_dir is not None:
            if spec.data.crop_seconds is not None:
                raise SpecError("model.mel_dir needs data.crop_seconds: null (whole utterances; the "
                                "task cuts the segment on the mel's frame grid)")
            if not Path(self.spec.mel_dir).is_dir():
                raise DataError(f"model.mel_dir: folder not found: {self.spec.mel_dir}")
        return super().open_corpus(spec, out_dir, progress=progress)

    def prepare_with_mels(self, batch: Batch, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        """Segments cut at a random frame of each utterance, with the same frames of its stored mel."""
        mel_spec = self.spec.mel_spec()
        seg, hop = self.spec.segment_size, mel_spec.hop_length
        frames = seg // hop
        B = batch.wav.shape[0]
        wav = np.zeros((B, seg), dtype=np.float32)
        mel = np.full((B, frames, mel_spec.n_mels), np.log(mel_spec.log_floor), dtype=np.float32)
        for i, rng in enumerate(rngs):
            item = batch.items[i]
            path = Path(self.spec.mel_dir) / f"{Path(item.path).stem}.npy"
            if not path.is_file():
                raise DataError(f"model.mel_dir: no mel for {item.path} ({path} is missing)")
            m = np.load(path)
            n = int(batch.lengths[i])
            if m.ndim != 2 or m.shape[1] != mel_spec.n_mels or abs(m.shape[0] - (n // hop + 1)) > 1:
                raise DataError(f"{path}: mel of shape {m.shape} does not fit {n} samples at hop {hop} "
                                f"with {mel_spec.n_mels} mels")
            start = int(rng.integers(0, max(m.shape[0] - frames, 0) + 1))
            take = m[start:start + frames]
            mel[i, :len(take)] = take
            piece = batch.wav[i, start * hop:min(start * hop + seg, n)]
            wav[i, :len(piece)] = piece
        return {"wav": wav, "mel": mel}
