"""The ``dac`` task's framework-neutral half: frame-aligned crops and semantic targets.

Imports neither mlx nor torch (numpy only). ``prepare`` cuts ``segment_frames`` codec frames
from each item at a frame boundary (random offset from the row's generator in training, centred
otherwise; a shorter item is zero-padded and its padded frames are masked out of the semantic
loss). Inputs of one step:

* ``wav (B, S)``, ``S = segment_frames x hop``;
* ``frame_mask (B, F)`` float32, 1 on frames holding audio;
* training with quantizer dropout: ``level_mask (B, K)`` float32, the levels each row keeps
  (drawn here from the row's generator, so a resumed run, any number of ranks and both
  frameworks draw the same);
* semantic mode ``wavlm``: ``semantic (B, F, H)`` teacher features on the codec's frames;
* semantic mode ``hubert_clusters``: ``semantic_ids (B, F)`` int32, the nearest of the k-means
  centroids (numpy, so both trainers get the same ids).

Teacher features come from the cache that :mod:`mlx_speech.train.dac_targets` (MLX) fills: one
``.npz`` per utterance under ``<cache_dir>/<teacher tag>/`` (the layout, keys and frame
alignment of the ``mimi9`` task's cache, whose helpers this module uses), so a torch_ref run
reads what an MLX run wrote. The k-means centroids are fitted once per teacher tag on the first
``kmeans_items`` training items and saved beside the cache (``kmeans_<K>_<seed>.npy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data.loader import Batch
from mlx_speech.data.manifest import DataError, Item
from mlx_speech.data.sampler import Corpus, build_corpus
from mlx_speech.errors import SpecError
from mlx_speech.models.dac.train_spec import DACTrainSpec
from mlx_speech.registry import resolve
from mlx_speech.train.mimi9_data import (_digest, _dir_identity, _teacher_dir, cache_file,
                                         read_targets)
from mlx_speech.train.task_base import Task
from mlx_speech.utils.atomic import atomic_path
from mlx_speech.utils.sampling import dropout_levels

CACHE_VERSION = 1


def nearest_centroid(feats: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index ``(N,)`` int32 of the nearest centroid (Euclidean) of each row of ``feats``."""
    d = (centroids * centroids).sum(1)[None, :] - 2.0 * feats.astype(np.float64) @ centroids.T
    return d.argmin(axis=1).astype(np.int32)


def fit_kmeans(x: np.ndarray, k: int, *, iters: int, seed: int) -> np.ndarray:
    """Lloyd's k-means on ``x (N, D)`` (float64, seeded) from a k-means++ start, ``(k, D)``
    float32 centroids; an empty cluster restarts at a random row. Needs ``N >= k`` rows."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float64)
    if x.shape[0] < k:
        raise DataError(f"k-means of {k} clusters needs at least {k} teacher frames, the "
                        f"semantic.kmeans_items gave {x.shape[0]}: use more items or fewer clusters")
    centres = [int(rng.integers(x.shape[0]))]
    d = ((x - x[centres[0]]) ** 2).sum(1)
    for _ in range(1, k):  # k-means++: the next centre with probability ~ squared distance
        total = d.sum()
        nxt = int(rng.choice(x.shape[0], p=d / total)) if total > 0 else int(rng.integers(x.shape[0]))
        centres.append(nxt)
        d = np.minimum(d, ((x - x[nxt]) ** 2).sum(1))
    c = x[centres]
    for _ in range(iters):
        ids = nearest_centroid(x, c)
        counts = np.bincount(ids, minlength=k)
        sums = np.zeros_like(c)
        np.add.at(sums, ids, x)
        empty = counts == 0
        c = np.where(empty[:, None], x[rng.integers(0, x.shape[0], k)],
                     sums / np.maximum(counts, 1)[:, None])
    return c.astype(np.float32)


class DACTaskBase(Task):
    """Crops and semantic targets of the ``dac`` task (see the module docstring)."""

    spec_class = DACTrainSpec
    gan = True

    def __init__(self, spec: dict[str, Any] | DACTrainSpec) -> None:
        super().__init__(spec)
        self.codec = self.spec.codec_spec()
        self.hop = self.codec.hop_length
        sem = self.spec.semantic
        self.semantic = sem.mode
        self.tag = None
        self.centroids: np.ndarray | None = None
        self._filler: Any = None
        if sem.mode != "none":
            identity = {"version": CACHE_VERSION, "sample_rate": self.codec.sample_rate,
                        "frame_rate": self.codec.frame_rate, "layer": sem.layer, "seed": sem.seed,
                        "dir": _dir_identity(_teacher_dir(sem.path, "semantic"), "semantic"),
                        "spec": sem.teacher_spec}
            self.tag = _digest(identity)

    def check_init(self, spec: Any) -> None:
        """``model.init``'s codec spec must be the recipe's (up to the default number of
        codebooks and the quantizer dropout, which are run settings, not weights)."""
        same = spec.replace(num_codebooks=self.codec.num_codebooks,
                            quantizer_dropout=self.codec.quantizer_dropout)
        if same != self.codec:
            raise SpecError(f"model.init {self.spec.init}: its codec spec differs from the recipe's")

    # -- the teacher cache -------------------------------------------------------------------
    def cache_files(self, items: list[Item]) -> list[Path]:
        return [cache_file(self.spec.semantic.cache_dir, self.tag, it) for it in items]

    def ensure_cache(self, items: list[Item]) -> int:
        """Compute and write the teacher features of ``items`` missing from the cache."""
        missing = [(it, p) for it, p in zip(items, self.cache_files(items)) if not p.is_file()]
        if not missing:
            return 0
        if self._filler is None:
            try:
                # MLX-only, looked up by name so this module (imported by torch_ref) does not
                # depend on it
                teacher = resolve("mlx_speech.train.dac_targets:SemanticTeacher")
            except ModuleNotFoundError as exc:
                raise SpecError(f"teacher cache {Path(self.spec.semantic.cache_dir) / self.tag} "
                                f"lacks {len(missing)} utterances and the MLX teacher cannot run "
                                f"here ({exc}); build the cache with MLX and copy it over") from None
            self._filler = teacher(self.spec.semantic, self.codec)
        self._filler.fill(missing)
        return len(missing)

    def _kmeans_file(self) -> Path:
        s = self.spec.semantic
        return Path(s.cache_dir) / self.tag / f"kmeans_{s.clusters}_{s.seed}.npy"

    def fit_centroids(self, items: list[Item]) -> np.ndarray:
        """The cluster centroids (fitted on ``items`` and saved on the first call)."""
        path = self._kmeans_file()
        if path.is_file():
            return np.load(path)
        s = self.spec.semantic
        chosen = items[:s.kmeans_items]
        self.ensure_cache(chosen)
        feats = np.concatenate([read_targets(p)["features"] for p in self.cache_files(chosen)])
        centroids = fit_kmeans(feats, s.clusters, iters=s.kmeans_iters, seed=s.seed)
        with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, centroids)
        return centroids

    # -- hooks ---------------------------------------------------------------------------------
    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Corpus:
        if spec.data.sample_rate != self.codec.sample_rate:
            raise SpecError(f"data.sample_rate {spec.data.sample_rate} != the codec's "
                            f"{self.codec.sample_rate} Hz")
        if self.semantic != "none" and spec.data.crop_seconds is not None:
            raise SpecError("model.semantic needs whole utterances (the task crops them at frame "
                            "boundaries to match the teacher): set data.crop_seconds: null")
        corpus = build_corpus(spec.data, spec.seed)
        if self.semantic == "hubert_clusters":
            self.centroids = self.fit_centroids(list(corpus.items))
        return corpus

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        F, hop = self.spec.segment_frames, self.hop
        B = batch.wav.shape[0]
        wav = np.zeros((B, F * hop), dtype=np.float32)
        mask = np.zeros((B, F), dtype=np.float32)
        starts = []
        for i in range(B):
            avail = int(batch.lengths[i]) // hop
            if avail > F:
                start = int(rngs[i].integers(0, avail - F + 1)) if train else (avail - F) // 2
            else:
                start = 0
            take = min(int(batch.lengths[i]) - start * hop, F * hop)
            wav[i, :take] = batch.wav[i, start * hop:start * hop + take]
            mask[i, :min(max(avail - start, 0), F)] = 1.0
            starts.append(start)
        out = {"wav": wav, "frame_mask": mask}
        p, k = self.codec.quantizer_dropout, self.codec.total_codebooks
        if train and p > 0 and k > 1:
            out["level_mask"] = np.concatenate([dropout_levels(r, 1, k, p) for r in rngs])
        if self.semantic != "none":
            out.update(self._semantic_rows(batch, starts, F))
        return out

    def _semantic_rows(self, batch: Batch, starts: list[int], F: int) -> dict[str, np.ndarray]:
        self.ensure_cache(batch.items)
        rows = []
        for item, path, start in zip(batch.items, self.cache_files(batch.items), starts):
            feats = read_targets(path)["features"][start:start + F]
            row = np.zeros((F, feats.shape[1]), dtype=np.float32)
            row[:len(feats)] = feats
            rows.append(row)
        feats = np.stack(rows)
        if self.semantic == "wavlm":
            return {"semantic": feats}
        if self.centroids is None:
            raise SpecError("hubert_clusters: the centroids are fitted by open_corpus; "
                            "run the task through the trainer")
        ids = nearest_centroid(feats.reshape(-1, feats.shape[-1]), self.centroids)
        return {"semantic_ids": ids.reshape(feats.shape[:2])}

    @property
    def semantic_dim(self) -> int:
        """Width of the semantic head's output: teacher features or cluster logits."""
        s = self.spec.semantic
        if s.mode == "hubert_clusters":
            return s.clusters
        if s.teacher_spec is not None:
            from mlx_speech.models.ssl.spec import Wav2Vec2Spec  # noqa: PLC0415

            return Wav2Vec2Spec._build(s.teacher_spec, strict=True,
                                       where="model.semantic.teacher_spec").hidden_size
        import json  # noqa: PLC0415

        cfg = Path(s.path).expanduser() / "config.json"
        return int(json.loads(cfg.read_text(encoding="utf-8"))["hidden_size"])
