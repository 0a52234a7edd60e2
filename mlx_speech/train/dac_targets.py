"""Semantic teacher features of the ``dac`` task, computed in MLX and written to the cache that
:mod:`mlx_speech.train.dac_data` reads (layout there).

The teacher is any encoder of the ``ssl`` family (WavLM, HuBERT, wav2vec 2.0): a local
transformers folder (``model.semantic.path``) or random weights from
``model.semantic.teacher_spec`` (tests). It runs on the utterance at 16 kHz; its layer
``model.semantic.layer`` (50 Hz for the standard extractor) is put on the codec's frames by the
mean-of-covered-frames rule of :func:`~mlx_speech.train.mimi9_data.to_frames` (a 200 Hz codec
repeats each teacher frame four times, a 12.5 Hz one averages four).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_speech.audio.io import load as load_audio
from mlx_speech.data.manifest import DataError, Item
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.models.dac.train_spec import SemanticSpec
from mlx_speech.models.ssl.spec import SAMPLE_RATE as SSL_RATE
from mlx_speech.train.mimi9_data import to_frames, write_targets


def load_teacher(s: SemanticSpec) -> Any:
    """The frozen SSL teacher of ``s`` (a local folder, or random weights for tests)."""
    from mlx_speech.models.ssl.load import build_ssl_model, load_ssl  # noqa: PLC0415
    from mlx_speech.models.ssl.spec import Wav2Vec2Spec  # noqa: PLC0415

    if s.path is not None:
        return load_ssl(Path(s.path).expanduser())
    mx.random.seed(s.seed)
    model = build_ssl_model(Wav2Vec2Spec._build(s.teacher_spec, strict=True,
                                                where="model.semantic.teacher_spec"))
    mx.eval(model.parameters())
    model.eval()
    model.freeze()
    return model


class SemanticTeacher:
    """A frozen teacher and the per-utterance feature computation."""

    def __init__(self, spec: SemanticSpec, codec: DACSpec) -> None:
        self.spec, self.codec = spec, codec
        self.model = load_teacher(spec)
        layers = self.model.spec.num_hidden_layers
        if spec.layer > layers:
            raise DataError(f"model.semantic.layer {spec.layer}: the teacher has {layers} layers")

    def compute(self, item: Item) -> dict[str, np.ndarray]:
        """Features ``(F, H)`` of one utterance on the codec's frames (``F = samples // hop``)."""
        wav, _ = load_audio(item.path, sr=self.codec.sample_rate, mono=True)
        num_frames = len(wav) // self.codec.hop_length
        if num_frames < 1:
            raise DataError(f"{item.path}: shorter than one codec frame "
                            f"({self.codec.hop_length} samples)")
        wav16, _ = load_audio(item.path, sr=SSL_RATE, mono=True)
        feats = self.model.features(wav16, [self.spec.layer], sample_rate=SSL_RATE)[0][0]
        rate = SSL_RATE / self.model.spec.downsample
        frames = to_frames(np.array(feats.astype(mx.float32)), rate, self.codec.frame_rate,
                           num_frames)
        return {"features": frames, "num_frames": np.array(num_frames, dtype=np.int64)}

    def fill(self, missing: list[tuple[Item, Path]]) -> None:
        for item, path in missing:
            write_targets(path, self.compute(item))
