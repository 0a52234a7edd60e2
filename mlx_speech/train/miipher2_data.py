"""The framework-neutral half of the Miipher-2 tasks (``miipher2_adapters``,
``miipher2_vocoder``): crops, degradations and the 16 kHz backbone inputs, numpy only.

Every random draw of a row (its crop and every degradation step) comes from that row's own
generator, so MLX and torch_ref see the same inputs and a row's inputs do not depend on the
number of ranks. Validation rows are cropped in the middle and degraded from their fixed
generators, so the validation loss measures the same job every time.

Crops are taken at the corpus rate (``data.sample_rate``, which must be the model's output
rate: the vocoder's target is the clean crop itself) and resampled to 16 kHz for the backbone.
Babble noise is mixed from the first ``babble_items`` training utterances (read once, before
the model is built), never from the other rows of the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.audio.io import load as load_audio
from mlx_speech.audio.io import resample
from mlx_speech.data.degrade import Degrader
from mlx_speech.data.loader import Batch
from mlx_speech.data.sampler import Corpus, build_corpus
from mlx_speech.errors import SpecError
from mlx_speech.models.miipher2.spec import BACKBONE_RATE, Miipher2Spec
from mlx_speech.models.miipher2.train_spec import Miipher2AdapterSpec, Miipher2VocoderSpec
from mlx_speech.models.ssl.spec import W2VBertSpec
from mlx_speech.models.ssl.tables import fbank_frames
from mlx_speech.train.task_base import Task


def backbone_frames(spec: Miipher2Spec, samples: int) -> int:
    """Feature frames the model gives for ``samples`` 16 kHz samples (w2v-BERT: fbank frames
    in pairs, an odd last one dropped, as ``Miipher2Model.backbone_inputs`` does; the wav2vec
    2.0 family: its convolution stack)."""
    bb = spec.backbone_spec()
    if isinstance(bb, W2VBertSpec):
        return fbank_frames(samples) // bb.stride
    return bb.num_frames(samples)


class Miipher2TaskBase(Task):
    """Shared: the model spec, the corpus check and the degrader."""

    @property
    def restorer(self) -> Miipher2Spec:
        spec = getattr(self, "_restorer", None)
        if spec is None:
            spec = self._restorer = self.spec.restorer_spec()
        return spec

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Corpus:
        self.out_dir = Path(out_dir)
        self.seed = int(spec.seed)
        rate = spec.data.sample_rate
        if rate != self.restorer.sample_rate:
            raise SpecError(f"data.sample_rate {rate} must be the model's output rate "
                            f"{self.restorer.sample_rate} (the clean crop is the vocoder's target)")
        corpus = build_corpus(spec.data, spec.seed)
        if self.degrades:  # babble is read only by a run that degrades its input
            self.set_babble([load_audio(it.path, sr=rate)[0]
                             for it in corpus.items[:self.spec.babble_items]], rate)
        return corpus

    @property
    def degrades(self) -> bool:
        """Whether the run's inputs are degraded (every run but stage 2's clean features)."""
        return True

    def set_babble(self, utterances: list[np.ndarray], rate: int) -> None:
        """The utterances babble is mixed from (``open_corpus`` reads them from the corpus)."""
        self._degrader = Degrader(self.spec.degrade, sample_rate=rate, babble=utterances)
        self._rate = rate

    @property
    def degrader(self) -> Degrader:
        if getattr(self, "_degrader", None) is None:
            self.set_babble([], self.restorer.sample_rate)
        return self._degrader

    def crop(self, batch: Batch, rngs: list[np.random.Generator], n: int, *,
             train: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(B, n)`` crops at the corpus rate (zero-padded) and their valid lengths."""
        out = np.zeros((batch.wav.shape[0], n), dtype=np.float32)
        valid = np.zeros(batch.wav.shape[0], dtype=np.int64)
        for i, rng in enumerate(rngs):
            length = int(batch.lengths[i])
            spare = length - n
            start = (int(rng.integers(0, spare + 1)) if train else spare // 2) if spare > 0 else 0
            take = min(length - start, n)
            out[i, :take] = batch.wav[i, start:start + take]
            valid[i] = take
        return out, valid

    def degrade(self, wav: np.ndarray, valid: np.ndarray,
                rngs: list[np.random.Generator]) -> np.ndarray:
        out = np.zeros_like(wav)
        for i, rng in enumerate(rngs):
            n = int(valid[i])
            if n > 0:
                out[i, :n] = self.degrader(wav[i, :n], rng)[0]
        return out

    def to_16k(self, wav: np.ndarray) -> np.ndarray:
        rate = self.restorer.sample_rate
        return np.ascontiguousarray(resample(wav, rate, BACKBONE_RATE), dtype=np.float32)


class AdapterTaskBase(Miipher2TaskBase):
    """Inputs: ``clean`` and ``degraded`` 16 kHz crops ``(B, S)`` and ``mask (B, F)``, 1 on
    the feature frames inside the row's valid audio."""

    spec_class = Miipher2AdapterSpec

    @property
    def segment(self) -> int:
        """Crop length at the corpus rate: whole backbone frames."""
        s = self.restorer
        frames = max(4, int(round(self.spec.segment_seconds * BACKBONE_RATE / s.backbone_hop)))
        return frames * s.hop_length

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        s = self.restorer
        clean, valid = self.crop(batch, rngs, self.segment, train=train)
        degraded = self.degrade(clean, valid, rngs)
        clean16, degraded16 = self.to_16k(clean), self.to_16k(degraded)
        frames = backbone_frames(s, clean16.shape[1])
        ok = np.array([backbone_frames(s, int(v) * BACKBONE_RATE // s.sample_rate) for v in valid])
        mask = (np.arange(frames)[None, :] < ok[:, None]).astype(np.float32)
        return {"clean": clean16, "degraded": degraded16, "mask": mask}


class VocoderTaskBase(Miipher2TaskBase):
    """Inputs: ``source`` the 16 kHz backbone input ``(B, S16)`` (clean, or degraded for
    ``features: restored``), long enough for ``segment_frames`` frames, and ``wav`` the clean
    target ``(B, segment_frames * hop_length)`` at the model's rate."""

    spec_class = Miipher2VocoderSpec
    gan = True

    @property
    def degrades(self) -> bool:
        return self.spec.features == "restored"

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        s = self.restorer
        frames = self.spec.segment_frames
        n = (frames + 2) * s.hop_length  # two spare frames: the front end's window overhang
        wav, valid = self.crop(batch, rngs, n, train=train)
        source = self.degrade(wav, valid, rngs) if self.degrades else wav
        return {"source": self.to_16k(source), "wav": wav[:, :frames * s.hop_length]}
