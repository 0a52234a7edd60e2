"""Teacher targets of the ``mimi9`` task, computed with the MLX teachers and written to the
cache that :mod:`mlx_speech.train.mimi9_data` reads (layout and alignment rules there).

* Qwen through mlx-lm (:class:`~mlx_speech.teachers.qwen.QwenTeacher`): a local directory
  (``model.qwen.path``, with its tokenizer) or random weights from ``model.qwen.config``.
* WavLM in MLX (:mod:`mlx_speech.models.ssl.load`): a local transformers directory
  (``model.wavlm.path``) or random weights from ``model.wavlm.spec``.

Both are loaded once, frozen, on the first cache miss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_speech.audio.io import load as load_audio
from mlx_speech.data.manifest import DataError, Item
from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.mimi9.train_spec import QwenTeacherSpec, WavLMTeacherSpec
from mlx_speech.models.ssl.spec import SAMPLE_RATE as SSL_RATE
from mlx_speech.teachers.durations import durations_from_word_timings, even_durations
from mlx_speech.train.mimi9_data import FrameGrid, byte_tokens, to_frames, write_targets


def _teacher_dir(path: str, key: str, name: str) -> str:
    """``model.<key>.path`` checked: set, and an existing directory (one-line errors)."""
    if not path:
        raise SpecError(f"model.{key}.path is not set: give the local {name} directory")
    if not Path(path).expanduser().is_dir():
        raise CheckpointError(f"model.{key}.path: teacher directory not found: {path}")
    return path


def load_qwen(q: QwenTeacherSpec) -> Any:
    from mlx_speech.teachers.qwen import QwenTeacher  # noqa: PLC0415

    if q.path is not None:
        return QwenTeacher.from_pretrained(_teacher_dir(q.path, "qwen", "Qwen"))
    return QwenTeacher.from_config(q.config, seed=q.seed)


def load_wavlm(w: WavLMTeacherSpec) -> Any:
    from mlx_speech.models.ssl.load import build_ssl_model, load_ssl  # noqa: PLC0415
    from mlx_speech.models.ssl.spec import Wav2Vec2Spec  # noqa: PLC0415

    if w.path is not None:
        return load_ssl(_teacher_dir(w.path, "wavlm", "WavLM"), family="wavlm")
    mx.random.seed(w.seed)
    model = build_ssl_model(Wav2Vec2Spec._build(w.spec, strict=True, where="model.wavlm.spec"))
    mx.eval(model.parameters())
    model.eval()
    model.freeze()
    return model


class TeacherTargets:
    """Frozen teachers + the per-utterance target computation (see the module docstring)."""

    def __init__(self, qwen: QwenTeacherSpec, wavlm: WavLMTeacherSpec, grid: FrameGrid) -> None:
        self.qwen_spec, self.wavlm_spec = qwen, wavlm
        self.grid = grid
        self.qwen = load_qwen(qwen)
        self.wavlm = load_wavlm(wavlm)

    @property
    def qwen_dim(self) -> int:
        return self.qwen.hidden_size

    @property
    def wavlm_dim(self) -> int:
        return int(self.wavlm.spec.hidden_size)

    def _tokens(self, item: Item, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and frames per token for ``item`` (word timings when present)."""
        vocab = int(self.qwen.model.model.embed_tokens.weight.shape[0])
        if item.words:
            labels = [w[0] for w in item.words]
            if self.qwen.tokenizer is None:
                tokens, owner = byte_tokens(labels, vocab)
            else:
                tokens, owner = self._tokenize_words(labels)
            dur = durations_from_word_timings(item.words, owner, num_frames=num_frames,
                                              frame_rate=self.grid.frame_rate)
            return tokens, dur
        text = item.text.strip()
        if not text:
            raise DataError(f"{item.path}: no transcript (text or word timings) for the Qwen teacher")
        if self.qwen.tokenizer is None:
            tokens, _ = byte_tokens(text.split(), vocab)
        else:
            tokens = self.qwen.tokenize(text)
        return tokens, even_durations(len(tokens), num_frames)

    def _tokenize_words(self, labels: list[str]) -> tuple[np.ndarray, list[int | None]]:
        text = " ".join(labels)
        owner_of_char: list[int | None] = []
        for i, w in enumerate(labels):
            if i:
                owner_of_char.append(None)
            owner_of_char += [i] * len(w)
        try:
            enc = self.qwen.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        except (NotImplementedError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the Qwen tokenizer gives no character offsets ({exc}); "
                                  "a fast tokenizer (tokenizer.json) is needed") from None
        owner: list[int | None] = []
        for s, e in enc["offset_mapping"]:
            chars = [owner_of_char[c] for c in range(s, e) if owner_of_char[c] is not None]
            owner.append(chars[-1] if chars else None)
        return np.asarray(enc["input_ids"], dtype=np.int64), owner

    def compute(self, item: Item) -> dict[str, np.ndarray]:
        """Targets of one utterance (whole file): arrays written to its cache file."""
        wav, _ = load_audio(item.path, sr=self.grid.sample_rate, mono=True)
        num_frames = len(wav) // self.grid.frame_size
        if num_frames < 1:
            raise DataError(f"{item.path}: shorter than one frame ({self.grid.frame_size} samples)")
        tokens, dur = self._tokens(item, num_frames)
        hidden = self.qwen.hidden_states(tokens, self.qwen_spec.layer)[0]
        wav16, _ = load_audio(item.path, sr=SSL_RATE, mono=True)
        feats = self.wavlm.features(wav16, [self.wavlm_spec.layer], sample_rate=SSL_RATE)[0][0]
        rate = SSL_RATE / self.wavlm.spec.downsample
        wavlm = to_frames(np.array(feats.astype(mx.float32)), rate, self.grid.frame_rate, num_frames)
        return {"qwen": np.array(hidden.astype(mx.float32)), "qwen_durations": dur.astype(np.int64),
                "qwen_tokens": tokens.astype(np.int64),
                "wavlm": wavlm,
                "num_frames": np.array(num_frames, dtype=np.int64),
                "num_samples": np.array(len(wav), dtype=np.int64)}

    def fill(self, missing: list[tuple[Item, Path]], *, progress: bool = False) -> None:
        for k, (item, path) in enumerate(missing):
            write_targets(path, self.compute(item))
            if progress and (k + 1) % 50 == 0:
                print(f"teacher cache: {k + 1}/{len(missing)}", flush=True)


def build_cache(recipe: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                progress: bool = True) -> dict[str, Any]:
    """Fill the teacher cache of every training and validation item of a ``mimi9`` recipe
    (what the first pass of training would otherwise do on the fly)."""
    from mlx_speech.data.sampler import build_corpus  # noqa: PLC0415
    from mlx_speech.train.mimi9_data import Mimi9Base  # noqa: PLC0415
    from mlx_speech.train.recipe import load_recipe  # noqa: PLC0415

    spec = load_recipe(recipe, overrides)
    if spec.task != "mimi9":
        raise SpecError(f"{recipe}: a recipe for task {spec.task!r}, not mimi9")
    task = Mimi9Base(spec.model)
    corpus = build_corpus(spec.data, spec.seed)
    items = corpus.items + corpus.val_items
    written = task.ensure_cache(items, progress=progress)
    return {"cache": str(Path(task.spec.cache_dir) / task.tag), "items": len(items), "written": written}

