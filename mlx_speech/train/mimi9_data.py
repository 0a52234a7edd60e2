"""The ``mimi9`` task's framework-neutral half: teacher-target cache and frame-aligned crops.

Imports neither mlx nor torch (numpy only); the cache is *filled* by
:mod:`mlx_speech.train.mimi9_targets` (MLX teachers), imported on the first miss.

Teacher targets, once per utterance, at the model's frame rate (12.5 Hz for Mimi):

* Qwen: hidden states ``(T, H_q)`` of the chosen layer for the transcript's tokens and
  ``durations (T,)`` in frames (:func:`~mlx_speech.teachers.durations.durations_from_word_timings`
  from the item's word timings; items without timings spread the frames evenly over the
  tokens of ``text``). The transcript tokenised is the word labels joined by spaces, so every
  token maps to one word.
* WavLM: features ``(N, H_w)`` of the audio resampled to 16 kHz (50 Hz for the standard
  extractor) put on the model's frames by :func:`to_frames`: frame ``f`` averages the
  teacher frames ``[floor(f r), floor((f + 1) r))`` with ``r = teacher rate / frame rate``
  (4 at 50 -> 12.5 Hz: frame ``f`` covers the same 80 ms as teacher frames ``4f .. 4f+3``),
  at least one frame, clipped to the last available one (the teacher's valid convolutions
  give a few frames fewer than ``r`` x the model's frames).

Cache layout: ``<cache_dir>/<teacher tag>/<utterance key>.npz`` where the tag hashes the
teacher identity (each directory's config and weight-file sizes, or the random configs and
seeds; layers; the model's frame grid)
and the key hashes the file (path, size, mtime) and its text and timings; files are written
atomically, so an interrupted fill never leaves a half file. The MLX and torch_ref trainers
read the same files, hence see identical targets. ``prepare`` fills missing entries on the
fly; ``mlx-speech data teacher-cache --config RECIPE`` fills the whole corpus beforehand.

Crops: ``prepare`` takes whole utterances from the loader (the recipe sets
``data.crop_seconds: null``; the loader resamples to the model's rate) and cuts
``floor(crop_seconds * frame_rate)`` frames at a frame boundary (random offset from the row's
generator in training, centred otherwise) with the matching slice of both targets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data.loader import Batch
from mlx_speech.data.manifest import DataError, Item
from mlx_speech.registry import resolve
from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.mimi9.train_spec import Mimi9TrainSpec
from mlx_speech.teachers.durations import frame_to_token
from mlx_speech.train.task_base import Task
from mlx_speech.utils.atomic import atomic_path

CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FrameGrid:
    """The model's audio framing: ``frame_size`` samples at ``sample_rate`` per frame."""

    sample_rate: int
    frame_rate: float

    @property
    def frame_size(self) -> int:
        return int(round(self.sample_rate / self.frame_rate))


def weights_file(path: str) -> Path:
    """The checkpoint file of ``model.weights`` (a file, or a directory holding
    ``model.safetensors``); a one-line :class:`CheckpointError` naming the path otherwise."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise CheckpointError(f"model.weights: surgered Mimi9 checkpoint not found: {p} "
                              "(make one with: mlx-speech convert mimi-surgery --src MIMI --dst DIR)")
    return p


def model_spec(spec: Mimi9TrainSpec) -> Any:
    """The ``Mimi9Spec`` the task trains: the preset's, or the one in the checkpoint's tag."""
    if spec.weights is None:
        return spec.model_spec()
    from mlx_speech.weights.checkpoint import read_metadata  # noqa: PLC0415
    from mlx_speech.models.mimi9.spec import Mimi9Spec  # noqa: PLC0415

    path = weights_file(spec.weights)
    meta = read_metadata(path)
    if meta.get("model") != "mimi9" or "spec" not in meta:
        raise CheckpointError(f"{path}: not a mimi9 checkpoint (tag model={meta.get('model')!r}); "
                              "make one with mlx-speech convert mimi-surgery")
    return Mimi9Spec.from_dict(json.loads(meta["spec"]))


def grid_of(mimi9_spec: Any) -> FrameGrid:
    m = mimi9_spec.mimi
    return FrameGrid(sample_rate=int(m.sample_rate), frame_rate=float(m.frame_rate))


# --- teacher identity and cache files -----------------------------------------------------------
def _teacher_dir(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    if not path:
        raise SpecError(f"model.{what}.path is not set: give the local {what} teacher directory "
                        "(or a random config for tests)")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise CheckpointError(f"model.{what}.path: teacher directory not found: {p}")
    return p


def _dir_identity(d: Path | None, what: str) -> dict[str, Any] | None:
    """A teacher directory by content, not location (a cache copied to another machine with
    the same teacher still matches): its config and the names and sizes of its weight files."""
    if d is None:
        return None
    cfg = d / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"model.{what}.path: no config.json in {d}")
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{cfg}: not valid JSON") from None
    files = sorted((f.name, f.stat().st_size) for f in d.iterdir()
                   if f.suffix in (".safetensors", ".bin"))
    return {"config": config, "files": files}


def teacher_identity(spec: Mimi9TrainSpec, grid: FrameGrid) -> dict[str, Any]:
    """What the cached targets depend on (checks the teacher directories exist)."""
    q, w = spec.qwen, spec.wavlm
    qd, wd = _teacher_dir(q.path, "qwen"), _teacher_dir(w.path, "wavlm")
    return {"version": CACHE_VERSION, "sample_rate": grid.sample_rate, "frame_rate": grid.frame_rate,
            "qwen": {"dir": _dir_identity(qd, "qwen"), "config": q.config, "seed": q.seed, "layer": q.layer},
            "wavlm": {"dir": _dir_identity(wd, "wavlm"), "spec": w.spec, "seed": w.seed, "layer": w.layer}}


def check_teacher_dims(identity: dict[str, Any], arch: Any) -> None:
    """The bridge's ``qwen_dim`` / ``wavlm_dim`` must equal the teachers' hidden sizes."""
    for what, want in (("qwen", arch.bridge.qwen_dim), ("wavlm", arch.bridge.wavlm_dim)):
        t = identity[what]
        config = t["dir"]["config"] if t["dir"] is not None else (t.get("config") or t.get("spec"))
        got = config.get("hidden_size")
        if got is not None and got != want:
            raise SpecError(f"model.{what}: the teacher's hidden size is {got} but the model's "
                            f"bridge.{what}_dim is {want}")


def _digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def teacher_tag(identity: dict[str, Any]) -> str:
    return _digest(identity)


def utterance_key(item: Item) -> str:
    try:
        st = os.stat(item.path)
    except OSError:
        raise DataError(f"audio file not found: {item.path}") from None
    return _digest([item.path, st.st_size, st.st_mtime_ns, item.text, item.words], 24)


def cache_file(cache_dir: str | Path, tag: str, item: Item) -> Path:
    return Path(cache_dir) / tag / f"{utterance_key(item)}.npz"


def write_targets(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic ``.npz`` write (a reader never sees a partial file)."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def read_targets(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"corrupt teacher cache file {path} ({exc}); delete it to rebuild") from None


# --- alignment helpers ----------------------------------------------------------------------------
def to_frames(feats: np.ndarray, src_rate: float, dst_rate: float, num_frames: int) -> np.ndarray:
    """``(N, D)`` features at ``src_rate`` -> ``(num_frames, D)`` at ``dst_rate`` (module
    docstring: the mean of the source frames inside each destination frame)."""
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise DataError(f"teacher features must be (N >= 1, D), got {feats.shape}")
    r = src_rate / dst_rate
    n = feats.shape[0]
    csum = np.concatenate([np.zeros((1, feats.shape[1])), np.cumsum(feats.astype(np.float64), axis=0)])
    f = np.arange(num_frames)
    lo = np.minimum(np.floor(f * r).astype(np.int64), n - 1)
    hi = np.clip(np.floor((f + 1) * r).astype(np.int64), lo + 1, n)
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None]).astype(np.float32)


def byte_tokens(words: list[str], vocab: int) -> tuple[np.ndarray, list[int]]:
    """Tokens of a teacher without tokenizer (random test teachers): the UTF-8 bytes of each
    word modulo ``vocab``; returns ``(tokens (T,), token -> word index)``."""
    ids, owner = [], []
    for i, w in enumerate(words):
        for b in (w.encode("utf-8") or b" "):
            ids.append(int(b) % vocab)
            owner.append(i)
    return np.asarray(ids, dtype=np.int64), owner


def write_timed_toy_corpus(directory: str | Path, *, n: int = 4, seconds: float = 0.1,
                           sample_rate: int = 16000, seed: int = 0) -> Path:
    """``n`` speech-like utterances of ``seconds`` each with made-up transcripts and word
    timings (3 words in time order) for tests, the benchmark and smoke runs; returns the
    manifest path. Not speech: the timings only exercise the alignment code."""
    from mlx_speech.audio.io import save  # noqa: PLC0415
    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415
    from mlx_speech.data.manifest import write_manifest  # noqa: PLC0415

    root = Path(directory)
    rng = np.random.default_rng(seed)
    vocab = "the quick brown fox jumps over a lazy dog near the river bank".split()
    items = []
    for i in range(n):
        wav = 0.5 * speechlike(sr=sample_rate, seconds=seconds, f0=float(rng.uniform(90, 220)),
                               seed=seed * 100003 + i)
        path = save(root / "wavs" / f"u{i:04d}.wav", wav, sample_rate)
        words = [str(w) for w in rng.choice(vocab, 3)]
        edges = np.sort(rng.uniform(0.0, seconds, 6))
        timings = tuple((w, float(edges[2 * k]), float(edges[2 * k + 1])) for k, w in enumerate(words))
        items.append(Item(path=str(path), text=" ".join(words), duration=len(wav) / sample_rate,
                          sample_rate=sample_rate, words=timings))
    return write_manifest(root / "manifest.jsonl", items)


# --- the task's neutral half ----------------------------------------------------------------------
class Mimi9Base(Task):
    """Inputs of one step: ``wav (B, S)`` (``S = frames x frame_size``), per-frame Qwen targets
    ``qwen (B, F, H_q)`` with ``qwen_durations (B, F)`` (1 on frames a token covers, else 0)
    and ``wavlm (B, F, H_w)``. Fills missing cache entries first (MLX teachers). ``gan``
    (per instance) is true when ``loss.adversarial > 0``."""

    spec_class = Mimi9TrainSpec

    def __init__(self, spec: dict[str, Any] | Mimi9TrainSpec) -> None:
        super().__init__(spec)
        # loss.adversarial > 0: a GAN task (generator = the Mimi9 model, plus a discriminator)
        self.gan = self.spec.loss.gan
        self.arch = model_spec(self.spec)
        self.grid = grid_of(self.arch)
        self.identity = teacher_identity(self.spec, self.grid)
        check_teacher_dims(self.identity, self.arch)
        self.tag = teacher_tag(self.identity)
        self.crop_frames = int(math.floor(self.spec.crop_seconds * self.grid.frame_rate + 1e-9))
        if self.crop_frames < 1:
            raise SpecError(f"model.crop_seconds {self.spec.crop_seconds} is shorter than one frame "
                            f"({1 / self.grid.frame_rate:.3f} s)")
        self._filler: Any = None

    def cache_files(self, items: list[Item]) -> list[Path]:
        return [cache_file(self.spec.cache_dir, self.tag, it) for it in items]

    def ensure_cache(self, items: list[Item], *, progress: bool = False) -> int:
        """Compute and write the targets of ``items`` missing from the cache; returns how many."""
        missing = [(it, p) for it, p in zip(items, self.cache_files(items)) if not p.is_file()]
        if not missing:
            return 0
        if self._filler is None:
            try:
                # MLX-only (the teachers run in MLX), looked up by name so this neutral module
                # and torch_ref, which imports it, do not depend on it
                TeacherTargets = resolve("mlx_speech.train.mimi9_targets:TeacherTargets")
            except ModuleNotFoundError as exc:
                raise SpecError(f"teacher cache {Path(self.spec.cache_dir) / self.tag} lacks "
                                f"{len(missing)} utterances and the MLX teachers cannot run here "
                                f"({exc}); build the cache with MLX and copy it over") from None
            self._filler = TeacherTargets(self.spec.qwen, self.spec.wavlm, self.grid)
        self._filler.fill(missing, progress=progress)
        return len(missing)

    def init_audio(self, pending: list[str]) -> np.ndarray:
        """``(N, crop frames x frame_size)`` centre crops of the first ``init_utterances`` long
        enough items of ``init_manifest``: the k-means batch of the ``pending`` codebooks."""
        from mlx_speech.audio.io import load as load_audio  # noqa: PLC0415
        from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415

        s = self.spec
        if s.init_manifest is None:
            raise SpecError(f"{len(pending)} codebook(s) are empty ({pending[0]}; surgery leaves head "
                            "0's so): set model.init_manifest to a manifest whose utterances "
                            "k-means-initialise them")
        n = self.crop_frames * self.grid.frame_size
        rows = []
        for item in read_manifest(s.init_manifest):
            wav, _ = load_audio(item.path, sr=self.grid.sample_rate, mono=True)
            if len(wav) >= n:
                start = (len(wav) // self.grid.frame_size - self.crop_frames) // 2 * self.grid.frame_size
                rows.append(wav[start:start + n])
            if len(rows) == s.init_utterances:
                break
        if not rows:
            raise DataError(f"model.init_manifest {s.init_manifest}: no utterance is as long as "
                            f"model.crop_seconds {s.crop_seconds}")
        return np.stack(rows).astype(np.float32)

    def row_targets(self, item: Item, path: Path, num_samples: int) -> dict[str, np.ndarray]:
        t = read_targets(path)
        if int(t["num_samples"]) != num_samples:
            raise DataError(
                f"{item.path}: the loader gave {num_samples} samples, the teacher cache "
                f"{int(t['num_samples'])}; the mimi9 task crops itself: set data.crop_seconds: null "
                f"and data.sample_rate: {self.grid.sample_rate}")
        return t

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        self.ensure_cache(batch.items)
        F, fs = self.crop_frames, self.grid.frame_size
        wavs, qwen, qdur, wavlm = [], [], [], []
        for i, (item, path) in enumerate(zip(batch.items, self.cache_files(batch.items))):
            n = int(batch.lengths[i])
            t = self.row_targets(item, path, n)
            avail = int(t["num_frames"])
            if avail < F:
                raise DataError(f"{item.path}: {n / self.grid.sample_rate:.2f} s is shorter than "
                                f"model.crop_seconds {self.spec.crop_seconds}; set data.min_seconds "
                                f">= crop_seconds to skip such items")
            start = int(rngs[i].integers(0, avail - F + 1)) if train else (avail - F) // 2
            wavs.append(batch.wav[i, start * fs:(start + F) * fs])
            tok = frame_to_token(t["qwen_durations"])  # token of every covered frame
            idx = np.full(avail, -1, dtype=np.int64)
            idx[:len(tok)] = tok[:avail]
            idx = idx[start:start + F]
            hid = t["qwen"]
            qwen.append(np.where((idx >= 0)[:, None], hid[np.maximum(idx, 0)], 0.0).astype(np.float32))
            qdur.append((idx >= 0).astype(np.int32))
            wavlm.append(t["wavlm"][start:start + F])
        return {"wav": np.stack(wavs).astype(np.float32), "qwen": np.stack(qwen),
                "qwen_durations": np.stack(qdur), "wavlm": np.stack(wavlm).astype(np.float32)}


def head_codebooks(model: Any) -> list[Any]:
    """The EMA codebook of each head 0..8 of a Mimi9 model, MLX or torch_ref (content, prosody,
    then the acoustic levels): every codebook the model has."""
    q = model.quantizer
    return [lv.codebook for g in (q.content, q.prosody, q.acoustic) for lv in g.levels]


def fix_codebooks(model: Any, *, ready_only: bool = False, keep_heads: tuple[int, ...] = (),
                  decay: float | None = None) -> int:
    """Make the EMA update of every codebook (``ready_only``: every initialised one) an
    identity (decay 1, no smoothing, no dead-code restarts), except those of ``keep_heads``,
    which keep learning (with ``decay`` when given); returns how many were fixed."""
    n = 0
    for h, cb in enumerate(head_codebooks(model)):
        if ready_only and not cb.is_initialized():
            continue
        if h in keep_heads:
            if decay is not None:
                cb.decay = float(decay)
            continue
        cb.decay, cb.laplace_smoothing, cb.threshold_usage_ratio = 1.0, False, 0.0
        n += 1
    return n
