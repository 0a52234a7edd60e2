"""Which items go into which batch: weighted multilingual sampling, length bucketing, sharding.

Framework-neutral (numpy only). Everything is a pure function of ``(seed, epoch)``: the
batches of an epoch can be recomputed at any time, so a data position is just
``(epoch, batch index)`` and resuming needs no sampler state. Batches are *global*
(``batch_size`` items); rank ``r`` of ``world`` takes the slice ``r * b : (r + 1) * b`` with
``b = batch_size // world``, so the union over ranks is exactly one single-process batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlx_speech.data.manifest import DataError, Item, load_source

_EPOCH_STREAM = 0xDA7A  # separates the shuffling stream from the crop stream of the loader


@dataclasses.dataclass
class Corpus:
    """Training items with their source index, the sources' weights, and validation items."""

    items: list[Item]
    source_of: np.ndarray  # (N,) int: which source each item came from
    weights: list[float] | None  # per source, or None for "each item once per epoch"
    val_items: list[Item]

    @property
    def durations(self) -> np.ndarray:
        return np.array([it.duration or 0.0 for it in self.items], dtype=np.float64)


def build_corpus(spec, seed: int) -> Corpus:
    """Read every source of a :class:`~mlx_speech.specs.train.DataSpec`, drop items outside
    ``[min_seconds, max_seconds]`` and split off validation items."""
    if not spec.sources:
        raise DataError("data.sources is empty: name at least one manifest, folder or ljspeech source")
    items: list[Item] = []
    source_of: list[int] = []
    for i, src in enumerate(spec.sources):
        got = [it for it in load_source(src.kind, src.path, lang=src.lang, langs=src.langs)
               if _keep(it, spec)]
        if not got:
            raise DataError(f"{src.path}: no items between min_seconds and max_seconds")
        items += got
        source_of += [i] * len(got)
    val: list[Item] = []
    for src in spec.val_sources:
        val += [it for it in load_source(src.kind, src.path, lang=src.lang, langs=src.langs)
                if _keep(it, spec)]
    src_arr = np.array(source_of, dtype=np.int64)
    if not spec.val_sources and spec.val_fraction > 0:
        n_val = max(1, int(round(spec.val_fraction * len(items))))
        if n_val >= len(items):
            raise DataError(f"val_fraction {spec.val_fraction} leaves no training items")
        order = np.random.default_rng([seed, 0x5A1]).permutation(len(items))
        held = set(order[:n_val].tolist())
        val = [items[i] for i in sorted(held)]
        keep = [i for i in range(len(items)) if i not in held]
        items, src_arr = [items[i] for i in keep], src_arr[keep]
    weights = None if spec.sources[0].weight is None else [s.weight for s in spec.sources]
    return Corpus(items=items, source_of=src_arr, weights=weights, val_items=val)


def _keep(it: Item, spec) -> bool:
    d = it.duration or 0.0
    return d >= spec.min_seconds and (spec.max_seconds is None or d <= spec.max_seconds)


class BatchPlan:
    """Global batches of item indices per epoch.

    Args:
        durations: ``(N,)`` seconds per item (for bucketing).
        batch_size: items per global batch (incomplete last batches are dropped).
        seed: base seed; epoch ``e`` uses ``default_rng([seed, 0xDA7A, e])``.
        source_of, weights: with weights, an epoch draws ``N`` items with replacement, source
            ``s`` contributing a ``weights[s] / sum(weights)`` share (uniform within a source);
            without, an epoch is a permutation of all items.
        bucket_size: sort windows of ``batch_size * bucket_size`` drawn items by length (longest
            first) before cutting batches, then shuffle the batches (0: no bucketing).
    """

    def __init__(self, durations: np.ndarray, *, batch_size: int, seed: int,
                 source_of: np.ndarray | None = None, weights: list[float] | None = None,
                 bucket_size: int = 0) -> None:
        self.n = len(durations)
        if self.n < batch_size:
            raise DataError(f"{self.n} training items are fewer than batch_size {batch_size}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket_size = bucket_size
        self._p = None
        if weights is not None:
            src = np.asarray(source_of)
            counts = np.bincount(src, minlength=len(weights)).astype(np.float64)
            w = np.asarray(weights, dtype=np.float64)
            if np.any(counts == 0):
                raise DataError("a weighted source has no items")
            p = (w / w.sum())[src] / counts[src]
            self._p = p / p.sum()
        self._cache: tuple[int, list[np.ndarray]] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def epoch(self, e: int) -> list[np.ndarray]:
        if self._cache is not None and self._cache[0] == e:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, _EPOCH_STREAM, e])
        if self._p is None:
            order = rng.permutation(self.n)
        else:
            order = rng.choice(self.n, size=self.n, replace=True, p=self._p)
        nb, b = self.batches_per_epoch, self.batch_size
        if self.bucket_size > 0:
            win = b * self.bucket_size
            parts = []
            for s in range(0, len(order), win):
                w = order[s:s + win]
                parts.append(w[np.argsort(-self.durations[w], kind="stable")])
            order = np.concatenate(parts)
            batches = [order[i * b:(i + 1) * b] for i in range(nb)]
            batches = [batches[i] for i in rng.permutation(nb)]
        else:
            batches = [order[i * b:(i + 1) * b] for i in range(nb)]
        self._cache = (e, batches)
        return batches

    def batch(self, epoch: int, index: int) -> np.ndarray:
        return self.epoch(epoch)[index]

    def next_position(self, epoch: int, index: int) -> tuple[int, int]:
        index += 1
        return (epoch + 1, 0) if index >= self.batches_per_epoch else (epoch, index)


def shard(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s contiguous slice of a global batch (its size must divide by ``world``)."""
    if len(batch) % world:
        raise DataError(f"batch of {len(batch)} items cannot be split across {world} ranks")
    b = len(batch) // world
    return batch[rank * b:(rank + 1) * b]
