"""The ``tts`` task's framework-neutral half: corpus, feature cache, step inputs, voice metadata.

Imports neither mlx nor torch. The MLX task (:mod:`mlx_speech.train.tasks_tts`) and its
torch_ref twin subclass :class:`TTSBase` and add ``build``, ``loss``, ``export`` and the
log-mel they extract features with.

Corpus (:meth:`TTSBase.open_corpus`, called by the trainer before it builds the model): the
recipe's ``data`` sources (a festival corpus is generated first when ``model.synthesize`` is
set and its manifest is missing), the first ``max_items``; then the features of every
training and validation utterance, read from ``<cache_dir>/features[_learned].pkl`` when the
cache was made from the same utterances, mel preset, language and alignment, else extracted
and written atomically. Items whose text has nothing speakable, or fewer frames than phones,
leave the corpus (``skipped`` in the summary). The pitch / energy statistics of the features
set the model's ``pitch_mean`` / ``pitch_std`` and normalise the targets, which is why the
features must exist before ``build()``. The loader still reads each batch's audio; the task
uses only its items (their features are the cached ones).

Step inputs (:meth:`TTSBase.prepare`; every array has the rows first, so micro-batches and
ranks split them like any task's):

* ``alignment: corpus``: ``ids, lengths, durations, pitch, energy`` (phone level, normalised),
  ``mel`` (frames padded to a multiple of 16), ``language``;
* ``alignment: learned``: ``ids, lengths, mel, mel_lengths, log_prior`` (aligner inputs),
  frame-level ``frame_log_f0`` (NaN: unvoiced or padding) and ``frame_energy``, ``language``,
  and per-row ``align_weight`` / ``bin_weight`` (``bin_weight`` is 0 before ``bin_start``; the
  trainer sets :attr:`~mlx_speech.train.task_base.Task.step` before each ``prepare``).
  The durations, and the phone-level pitch / energy averaged over them, are found inside the
  loss (:func:`~mlx_speech.train.tts_batch.mas_targets`), from the aligner of the model being
  trained.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data.loader import Batch
from mlx_speech.data.manifest import DataError
from mlx_speech.data.sampler import Corpus, build_corpus
from mlx_speech.errors import SpecError
from mlx_speech.models.tts.spec import FastSpeechSpec
from mlx_speech.models.tts.train_spec import TTSTrainSpec
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train import tts_features as tf
from mlx_speech.train.task_base import Task
from mlx_speech.train.tts_batch import align_inputs, make_batch, pad_rows
from mlx_speech.utils.atomic import atomic_path

CACHE_VERSION = 1


def sentences_file(path: str) -> Path:
    """A sentence list: a file path, or the name of a list shipped in ``mlx_speech/assets/tts``."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    shipped = tf.ASSETS / Path(path).name
    if shipped.is_file():
        return shipped
    raise DataError(f"model.synthesize.sentences: sentence list not found: {path}")


class TTSBase(Task):
    """Neutral half of the ``tts`` task (module docstring)."""

    spec_class = TTSTrainSpec

    def __init__(self, spec: dict[str, Any] | TTSTrainSpec) -> None:
        super().__init__(spec)
        self.arch: FastSpeechSpec = self.spec.arch
        self.feats: dict[str, Any] | None = None
        self.stats: dict[str, float] = {}
        self.row_of: dict[str, int] = {}
        self.out_dir = Path(".")
        self.sources: list[str] = []
        self.train_items: list[Any] = []
        self._adaptation: Any = None  # fitted once per run, written with every voice folder

    # -- framework hook ----------------------------------------------------------------------
    def log_mel(self, wav: np.ndarray, mel_spec: Any) -> np.ndarray:
        """``(T, n_mels)`` float32 log-mel of one utterance (framework-specific)."""
        raise NotImplementedError

    # -- corpus and features -------------------------------------------------------------------
    def check(self, spec: TrainSpec) -> None:
        """Recipe checks that need both ``model`` and ``data`` (before any work)."""
        if self.spec.alignment == "corpus" and any(s.kind == "ljspeech" for s in spec.data.sources):
            raise SpecError("data.sources: an LJSpeech folder has no phone timings: use "
                            "model.alignment: learned")
        for src in [*spec.data.sources, *spec.data.val_sources]:
            if src.kind == "ljspeech" and not Path(src.path).is_dir():
                raise DataError(f"LJSpeech folder not found: {src.path} (expected metadata.csv and wavs/)")

    def _synthesize_missing(self, spec: TrainSpec, progress: bool) -> None:
        fest = self.spec.synthesize
        if fest is None:
            return
        from mlx_speech.specs.audio import MelSpec  # noqa: PLC0415

        lists = fest.sentence_lists()
        manifests = [src for src in spec.data.sources if src.kind == "manifest"]
        if len(lists) > 1 and len(lists) != len(manifests):
            raise SpecError(f"model.synthesize.sentences: {len(lists)} sentence lists for {len(manifests)} "
                            "manifest sources (give one list, or one per manifest source)")
        for k, src in enumerate(manifests):
            manifest = Path(src.path)
            if not manifest.is_file():
                sentences = lists[k] if len(lists) > 1 else lists[0]
                tf.single_voice_corpus(manifest.parent, sentences=tf.read_sentences(sentences_file(sentences)),
                                       voice=fest.voice, sample_rate=MelSpec.from_preset(self.spec.mel_preset).sample_rate,
                                       progress=progress, lang=self.spec.language)

    def open_corpus(self, spec: TrainSpec, out_dir: Path, *, progress: bool = False) -> Corpus:
        self.check(spec)
        self.out_dir = Path(out_dir)
        self.sources = [s.path for s in spec.data.sources]
        self._synthesize_missing(spec, progress)
        corpus = build_corpus(spec.data, spec.seed)
        if self.spec.max_items:
            n = self.spec.max_items
            corpus = dataclasses.replace(corpus, items=corpus.items[:n], source_of=corpus.source_of[:n])
        self.feats = self.load_features([*corpus.items, *corpus.val_items], progress)
        self.row_of = {p: i for i, p in enumerate(self.feats["path"])}
        self.stats = tf.feature_stats(self.feats)
        self.arch = self.arch.replace(pitch_mean=self.stats["pitch_mean"], pitch_std=self.stats["pitch_std"])
        keep = [i for i, it in enumerate(corpus.items) if str(it.path) in self.row_of]
        if not keep:
            raise DataError("no training utterance has speakable text and enough frames")
        self.train_items = [corpus.items[i] for i in keep]
        return dataclasses.replace(corpus, items=self.train_items,
                                   source_of=corpus.source_of[keep],
                                   val_items=[it for it in corpus.val_items if str(it.path) in self.row_of])

    def cache_file(self) -> Path:
        root = Path(self.spec.cache_dir) if self.spec.cache_dir else self.out_dir
        return root / ("features.pkl" if self.spec.alignment == "corpus" else "features_learned.pkl")

    def load_features(self, items: list[Any], progress: bool = False) -> dict[str, Any]:
        """Features of ``items`` from the cache, or extracted (and cached) on a miss."""
        s = self.spec
        key = [CACHE_VERSION, s.alignment, s.mel_preset, s.language,
               [(str(it.path), it.text) for it in items]]
        cache = self.cache_file()
        if cache.is_file():
            data = pickle.loads(cache.read_bytes())  # our own cache file, written below
            if isinstance(data, dict) and data.get("key") == key:
                return data["feats"]
        if s.alignment == "learned":
            feats = tf.prepare_text_features(items, self.log_mel, s.mel_preset, s.language, progress=progress)
        else:
            feats = tf.prepare_features(items, self.log_mel, s.mel_preset, progress=progress)
        feats.setdefault("skipped", 0)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            tmp.write_bytes(pickle.dumps({"key": key, "feats": feats}))
        return feats

    # -- step inputs ----------------------------------------------------------------------------
    @property
    def language_id(self) -> int:
        from mlx_speech.text import LANGUAGES  # noqa: PLC0415

        return LANGUAGES.index(self.spec.language)

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        if self.feats is None:
            raise RuntimeError("TTS task used before open_corpus()")
        f = self.feats
        rows = [self.row_of[str(it.path)] for it in batch.items]
        lang = np.full((len(rows),), self.language_id, np.int32)
        if self.spec.alignment == "corpus":
            nb = make_batch(f, rows, **self.stats)
            nb.pop("frames")
            return {**nb, "language": lang}
        nb = align_inputs([f["ids"][i] for i in rows], [f["mel"][i] for i in rows], multiple=16)
        T = nb["mel"].shape[1]
        bin_w = self.spec.bin_weight if self.step >= self.spec.bin_start else 0.0
        return {**nb, "language": lang,
                "frame_log_f0": pad_rows([f["frame_log_f0"][i] for i in rows], T, np.nan).astype(np.float32),
                "frame_energy": pad_rows([f["frame_energy"][i] for i in rows], T).astype(np.float32),
                "align_weight": np.full((len(rows),), self.spec.align_weight, np.float32),
                "bin_weight": np.full((len(rows),), bin_w, np.float32)}

    # -- voice folder ----------------------------------------------------------------------------
    @property
    def voice_dir(self) -> Path:
        return Path(self.spec.voice_dir) if self.spec.voice_dir else self.out_dir / "voice"

    def voice_meta(self) -> dict[str, Any]:
        """``voice.json`` of the voice this run writes (a vocoder entry already there is kept)."""
        s = self.spec
        fest = s.synthesize
        source = self.sources[0] if self.sources else ""
        name = Path(source).name if Path(source).is_dir() else Path(source).stem
        meta = {"name": self.out_dir.name, "language": s.language, "mel_preset": s.mel_preset,
                "speakers": [fest.voice if fest else name],
                "teacher": f"festival {fest.voice}" if fest else f"recordings {source}",
                "alignment": s.alignment, "vocoder": "griffin-lim"}
        old = self.voice_dir / "voice.json"
        if old.is_file():  # keep a vocoder entry written by the vocoder recipe
            meta["vocoder"] = json.loads(old.read_text()).get("vocoder", "griffin-lim")
        return meta

    def write_voice_meta(self) -> None:
        self.voice_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.voice_dir / "voice.json") as tmp:
            tmp.write_text(json.dumps(self.voice_meta(), indent=2) + "\n", encoding="utf-8")
        self.write_adaptation()

    def write_adaptation(self) -> None:
        """``frontend.json``: the corpus teacher's English word forms and pauses (text/adapt.py),
        for an English voice trained on corpus phones (it learned those, not our front end's)."""
        if self.spec.alignment != "corpus" or self.spec.language != "en" or not self.train_items:
            return
        from mlx_speech.text.adapt import ADAPTATION_FILE, fit  # noqa: PLC0415

        if self._adaptation is None:
            self._adaptation = fit(self.train_items)
        self._adaptation.save(self.voice_dir / ADAPTATION_FILE)

    def summary(self) -> dict[str, Any]:
        f = self.feats or {"ids": [], "skipped": 0}
        return {"voice": str(self.voice_dir), "utterances": len(f["ids"]), "skipped": int(f.get("skipped", 0))}
