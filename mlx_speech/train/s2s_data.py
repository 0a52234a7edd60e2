"""The ``s2s`` task's framework-neutral half: pair manifests, the codes cache, step inputs.

Imports neither mlx nor torch (numpy only). The cache is *filled* by
:mod:`mlx_speech.train.s2s_encode` (the MLX codec), looked up by name on the first miss.

Pair manifest (JSONL, one pair per line; paths relative to the manifest's folder or absolute)::

    {"path": "in/0001.wav", "target": "out/0001.wav", "text": "...",
     "speaker": 3, "emotion": 0, "language": 1, "duration": 2.4}

``path`` is the input audio and ``target`` the output audio (both required); ``speaker``,
``emotion`` and ``language`` are optional integer ids below the model's ``num_speakers`` /
``num_emotions`` / ``num_languages`` (absent: no condition for that pair); ``text`` (what the
target says) and ``words`` (its ``[[word, start_s, end_s], ...]`` timings in the target, as the
offline corpus manifests have them) are kept for the Moshi-style LM's inner monologue
(:mod:`mlx_speech.train.s2s_lm_data`) and unused by the encoder-decoder; ``duration`` (input seconds) is read from the header when
absent. Any other key is an error naming the line.

Codes cache: every audio file (inputs and targets alike, so a file in several pairs is coded
once) is tokenised once by the codec ``arch.codec`` with the weights ``arch.codec_weights`` and
stored as ``<cache_dir>/<codec tag>/<audio key>.npz`` holding ``codes (K, F)`` int32 and
``num_samples``. The tag hashes the codec's name, the *content* of its weights file (or folder)
and the number of codebooks kept (``max(in_codebooks, out_codebooks)``); the key hashes the
audio file's absolute path, size and modification time, so an edited file is coded again.
Files are written atomically. The MLX and torch_ref trainers read the same files.
``open_corpus`` codes every missing file before training (the torch trainer needs MLX for
that, or a cache made by an MLX run).

Step inputs (every array has the rows first): ``codes_in (B, K_in, max_in_frames)`` int32 and
``in_mask (B, max_in_frames)`` bool; the teacher-forcing triple ``dec_in``, ``target`` (int32)
and ``target_mask`` (float32), each ``(B, K_out, S)`` with ``S`` the decoder steps of
``max_out_frames`` frames (:mod:`mlx_speech.models.s2s.encdec_pattern`); ``codebook_weights
(B, K_out)`` float32; and ``speaker`` / ``emotion`` / ``language`` ``(B,)`` int32 (-1: absent)
for the conditions the model has. Pairs longer than the frame limits leave the corpus
(``skipped`` in the summary), so every batch has one shape and the MLX step compiles once.
The loader still reads each batch's input audio (as for every task); the task uses only its
items, so a recipe keeps ``data.crop_seconds`` short and ``data.sample_rate`` at the files'
rate to make that read cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data.loader import Batch
from mlx_speech.data.manifest import DataError, Item, _timings, read_jsonl, with_audio_info
from mlx_speech.data.sampler import Corpus
from mlx_speech.errors import CheckpointError, CodesError, SpecError
from mlx_speech.models.s2s import encdec_pattern as pat
from mlx_speech.models.s2s.train_spec import S2STrainSpec
from mlx_speech.registry import resolve
from mlx_speech.train.task_base import Task
from mlx_speech.utils.atomic import atomic_path

CACHE_VERSION = 1
CONDITIONS = ("speaker", "emotion", "language")
_KEYS = {"path", "target", "text", "words", "duration", *CONDITIONS}


@dataclasses.dataclass(frozen=True)
class PairItem(Item):
    """One pair: ``path`` the input audio (absolute), ``target`` the output audio (absolute),
    condition ids (-1: absent), ``where`` the manifest line (for messages)."""

    target: str = ""
    speaker_id: int = -1
    emotion_id: int = -1
    language_id: int = -1
    where: str = ""


def _pair(obj: Any, root: Path, where: str) -> PairItem:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise DataError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(_KEYS))}")
    paths = {}
    for key in ("path", "target"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise DataError(f"{where}: {key!r} (a non-empty string) is required")
        p = Path(obj[key])
        paths[key] = str(p if p.is_absolute() else root / p)
    ids = {}
    for key in CONDITIONS:
        v = obj.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise DataError(f"{where}: {key!r} must be an integer id >= 0, got {v!r}")
        ids[f"{key}_id"] = -1 if v is None else v
    text = obj.get("text") or ""
    if not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string, got {text!r}")
    duration = obj.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or duration <= 0):
        raise DataError(f"{where}: 'duration' must be a positive number, got {duration!r}")
    words = obj.get("words")
    words = None if words is None else _timings(words, f"{where}: 'words'")
    return PairItem(path=paths["path"], target=paths["target"], text=text, words=words,
                    duration=None if duration is None else float(duration), where=where, **ids)


def read_pairs(path: str | os.PathLike) -> list[PairItem]:
    """Pairs of a JSONL pair manifest (module docstring); blank lines are skipped."""
    return read_jsonl(path, _pair, what="pair manifest", unit="pairs")


def _load(sources: list[Any], spec: Any) -> tuple[list[PairItem], list[int]]:
    items, source_of = [], []
    for i, src in enumerate(sources):
        if src.kind != "manifest":
            raise SpecError(f"data.sources: the s2s task reads pair manifests (kind: manifest), "
                            f"got kind {src.kind!r} for {src.path}")
        got = with_audio_info(read_pairs(src.path))
        for it in got:
            if not Path(it.target).is_file():
                raise DataError(f"{it.where}: target audio not found: {it.target}")
        d = spec.max_seconds
        got = [it for it in got if it.duration >= spec.min_seconds and (d is None or it.duration <= d)]
        items += got
        source_of += [i] * len(got)
    return items, source_of


def build_pair_corpus(data: Any, seed: int) -> Corpus:
    """The pairs of a :class:`~mlx_speech.specs.train.DataSpec`'s sources, filtered by input
    duration, with validation pairs split off as ``build_corpus`` does."""
    if not data.sources:
        raise DataError("data.sources is empty: name at least one pair manifest")
    items, source_of = _load(data.sources, data)
    if not items:
        raise DataError("no pairs between data.min_seconds and data.max_seconds")
    val = _load(data.val_sources, data)[0] if data.val_sources else []
    src = np.array(source_of, dtype=np.int64)
    if not data.val_sources and data.val_fraction > 0:
        n_val = max(1, int(round(data.val_fraction * len(items))))
        if n_val >= len(items):
            raise DataError(f"val_fraction {data.val_fraction} leaves no training pairs")
        held = set(np.random.default_rng([seed, 0x5A1]).permutation(len(items))[:n_val].tolist())
        val = [items[i] for i in sorted(held)]
        keep = [i for i in range(len(items)) if i not in held]
        items, src = [items[i] for i in keep], src[keep]
    weights = None if data.sources[0].weight is None else [s.weight for s in data.sources]
    return Corpus(items=items, source_of=src, weights=weights, val_items=val)


# --- the codes cache --------------------------------------------------------------------------
def _digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def content_digest(path: str | os.PathLike) -> str:
    """sha1 of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    p = Path(path).expanduser()
    if p.is_file():
        files = [(p.name, p)]
    elif p.is_dir():
        files = sorted((f.relative_to(p).as_posix(), f) for f in p.rglob("*")
                       if f.is_file() and not f.name.startswith("."))
    else:
        raise CheckpointError(f"codec weights not found: {p}")
    h = hashlib.sha1()
    for name, f in files:
        h.update(name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class CodesCache:
    """``<root>/<tag>/<audio key>.npz`` files of one codec (module docstring)."""

    def __init__(self, root: str | os.PathLike, *, codec: str, weights: str | None,
                 num_codebooks: int) -> None:
        if not weights:
            raise SpecError("model.arch.codec_weights is not set: name the codec weights the "
                            f"audio is tokenised with ({codec})")
        self.codec, self.weights, self.num_codebooks = codec, str(weights), int(num_codebooks)
        self.identity = {"version": CACHE_VERSION, "codec": codec,
                         "weights": content_digest(weights), "num_codebooks": self.num_codebooks}
        self.tag = _digest(self.identity)
        self.dir = Path(root) / self.tag

    def file(self, audio: str) -> Path:
        try:
            st = os.stat(audio)
        except OSError:
            raise DataError(f"audio file not found: {audio}") from None
        key = _digest([str(Path(audio).resolve()), st.st_size, st.st_mtime_ns], 24)
        return self.dir / f"{key}.npz"

    def missing(self, audios: list[str]) -> list[str]:
        """The distinct files among ``audios`` that have no cache entry, in order."""
        return [a for a in dict.fromkeys(audios) if not self.file(a).is_file()]

    def write(self, audio: str, codes: np.ndarray, num_samples: int) -> Path:
        """Store ``codes (K, F)`` of ``audio`` (atomic)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != self.num_codebooks:
            raise CodesError(f"{audio}: expected codes ({self.num_codebooks}, F), got {codes.shape}")
        path = self.file(audio)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, codes=codes.astype(np.int32), num_samples=np.int64(num_samples))
        return path

    def read(self, audio: str) -> np.ndarray:
        """``codes (K, F)`` int32 of ``audio``."""
        path = self.file(audio)
        try:
            with np.load(path) as z:
                codes = z["codes"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"corrupt codes cache file {path} ({exc}); delete it to rebuild") from None
        if codes.ndim != 2 or codes.shape[0] != self.num_codebooks or codes.shape[1] == 0:
            raise CodesError(f"codes cache file {path} ({audio}) holds codes of shape "
                             f"{codes.shape}, expected ({self.num_codebooks}, F >= 1)")
        return codes.astype(np.int32)


# --- the task's neutral half ------------------------------------------------------------------
def cache_root(cache_dir: str | None, out_dir: Path) -> Path:
    """The codes cache of a run: the recipe's ``cache_dir``, else ``<out_dir>/codes``."""
    return Path(cache_dir) if cache_dir else Path(out_dir) / "codes"


def fill_cache(cache: CodesCache, audios: list[str], *, codebook_size: int,
               progress: bool = False) -> None:
    """Code ``audios`` with the MLX codec into ``cache`` (looked up by name, so this neutral
    module and torch_ref, which imports it, do not depend on MLX)."""
    try:
        encode = resolve("mlx_speech.train.s2s_encode:encode_into_cache")
    except ModuleNotFoundError as exc:
        raise SpecError(f"codes cache {cache.dir} lacks {len(audios)} audio files and the MLX "
                        f"codec cannot run here ({exc}); build the cache with an MLX run and "
                        f"copy it over") from None
    encode(cache, audios, codebook_size=codebook_size, progress=progress)


def fitting_pairs(corpus: Corpus, cache: CodesCache, fits: Any, *, codebook_size: int,
                  progress: bool = False) -> tuple[Corpus, list[PairItem], int]:
    """Every pair's audio coded into ``cache`` (the missing ones now), then the corpus of the
    pairs ``fits(pair)`` keeps: ``(corpus, its training pairs, pairs dropped)``."""
    pairs = [*corpus.items, *corpus.val_items]
    missing = cache.missing([p for it in pairs for p in (it.path, it.target)])
    if missing:
        fill_cache(cache, missing, codebook_size=codebook_size, progress=progress)
    keep = [fits(it) for it in corpus.items]
    items = [it for it, ok in zip(corpus.items, keep) if ok]
    val = [it for it in corpus.val_items if fits(it)]
    skipped = len(keep) - len(items) + len(corpus.val_items) - len(val)
    return (dataclasses.replace(corpus, items=items, val_items=val,
                                source_of=corpus.source_of[np.flatnonzero(keep)]),
            items, skipped)


class S2STaskBase(Task):
    """Inputs of one step (module docstring); the framework halves add ``build`` and ``loss``."""

    spec_class = S2STrainSpec

    def __init__(self, spec: dict[str, Any] | S2STrainSpec) -> None:
        super().__init__(spec)
        self.arch = self.spec.model_spec()
        self.codebook_weights = np.array(self.spec.weights(), dtype=np.float32)
        self.cache: CodesCache | None = None
        self.out_dir = Path(".")
        self.skipped = 0
        self.pairs = 0

    @property
    def conditions(self) -> dict[str, int]:
        return {k: v for k, v in self.arch.conditions().items() if v}

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Corpus:
        self.out_dir = Path(out_dir)
        corpus = build_pair_corpus(spec.data, spec.seed)
        for it in [*corpus.items, *corpus.val_items]:
            for name in CONDITIONS:
                v, count = getattr(it, f"{name}_id"), self.arch.conditions()[name]
                if v >= count:
                    raise DataError(f"{it.where}: {name} {v} is out of range: the model has "
                                    f"{count} (model.arch.num_{name}s)")
        a = self.arch
        self.cache = CodesCache(cache_root(self.spec.cache_dir, self.out_dir), codec=a.codec,
                                weights=a.codec_weights,
                                num_codebooks=max(a.in_codebooks, a.out_codebooks))
        out, items, self.skipped = fitting_pairs(corpus, self.cache, self.fits,
                                                 codebook_size=a.codebook_size, progress=progress)
        self.pairs = len(items)
        if not items:
            raise DataError(f"no training pair fits model.max_in_frames {self.spec.max_in_frames} "
                            f"and model.max_out_frames {self.spec.max_out_frames}")
        return out

    def codes(self, audio: str, num_codebooks: int) -> np.ndarray:
        """The first ``num_codebooks`` cached codebooks of ``audio``, range-checked."""
        codes = self.cache.read(audio)[:num_codebooks]
        return pat.check_codes(codes[None], num_codebooks=num_codebooks,
                               codebook_size=self.arch.codebook_size,
                               where=f"codes cache {self.cache.file(audio)} ({audio})")[0]

    def fits(self, item: PairItem) -> bool:
        a = self.arch
        return (self.codes(item.path, a.in_codebooks).shape[1] <= self.spec.max_in_frames
                and self.codes(item.target, a.out_codebooks).shape[1] <= self.spec.max_out_frames)

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        if self.cache is None:
            raise RuntimeError("s2s task used before open_corpus()")
        a, s = self.arch, self.spec
        B = len(batch.items)
        codes_in = np.zeros((B, a.in_codebooks, s.max_in_frames), np.int32)
        codes_out = np.zeros((B, a.out_codebooks, s.max_out_frames), np.int32)
        in_len, out_len = np.zeros(B, np.int64), np.zeros(B, np.int64)
        for i, it in enumerate(batch.items):
            ci, co = self.codes(it.path, a.in_codebooks), self.codes(it.target, a.out_codebooks)
            codes_in[i, :, :ci.shape[1]], codes_out[i, :, :co.shape[1]] = ci, co
            in_len[i], out_len[i] = ci.shape[1], co.shape[1]
        dec_in, target, mask = pat.teacher_forcing(codes_out, out_len, special=a.special,
                                                   pattern=a.pattern)
        out = {"codes_in": codes_in,
               "in_mask": np.arange(s.max_in_frames)[None, :] < in_len[:, None],
               "dec_in": dec_in, "target": target, "target_mask": mask,
               "codebook_weights": np.tile(self.codebook_weights, (B, 1))}
        for name in self.conditions:
            out[name] = np.array([getattr(it, f"{name}_id") for it in batch.items], np.int32)
        return out

    def check_init(self, spec: Any) -> None:
        """``model.init``'s spec must be the recipe's (up to where the codec weights are)."""
        if spec.replace(codec_weights=None) != self.arch.replace(codec_weights=None):
            raise SpecError(f"model.init {self.spec.init}: its spec differs from the recipe's")

    @staticmethod
    def export_spec(spec: Any) -> Any:
        """The spec written with an exported model: the codec weights as an absolute path, so
        the file finds its codec from any working directory."""
        w = spec.codec_weights
        return spec if w is None else spec.replace(codec_weights=str(Path(w).expanduser().resolve()))

    def summary(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "skipped": self.skipped,
                "codes_cache": None if self.cache is None else str(self.cache.dir)}
