"""Batches of waveforms, read ahead in background threads so the trainer never waits on disk.

Framework-neutral (numpy + soundfile). A :class:`Loader` walks a
:class:`~mlx_speech.data.sampler.BatchPlan` from a ``(epoch, index)`` position; each batch holds
this rank's items as ``wav (b, T)`` float32 plus ``lengths (b,)``. Random crop offsets come
from ``default_rng([seed, 0xC209, epoch, index, slot])`` with ``slot`` the item's place in
the *global* batch, so the data do not depend on the number of ranks, on the worker threads,
or on how far ahead the prefetcher ran: resuming at a position gives the same batches.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from mlx_speech.audio.io import load as load_audio
from mlx_speech.data.manifest import DataError, Item
from mlx_speech.data.sampler import BatchPlan, shard

_CROP_STREAM = 0xC209


@dataclasses.dataclass
class Batch:
    """This rank's part of global batch ``index`` of ``epoch``."""

    wav: np.ndarray  # (b, T) float32, zero-padded
    lengths: np.ndarray  # (b,) int32 valid samples per row
    items: list[Item]
    epoch: int
    index: int


def read_segment(item: Item, *, sample_rate: int, crop: int | None,
                 rng: np.random.Generator | None) -> np.ndarray:
    """``(n,)`` float32 audio of ``item`` at ``sample_rate``: a crop of ``crop`` samples (random
    offset from ``rng``, centred when ``rng`` is None), or the whole item when ``crop`` is None.
    Items shorter than the crop are returned whole."""
    if item.sample_rate == sample_rate and item.duration is not None and crop is not None:
        total = int(round(item.duration * sample_rate))
        start = _offset(total, crop, rng)
        try:
            x, sr = sf.read(item.path, start=start, stop=start + crop, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            raise DataError(f"cannot read audio file {item.path}: {' '.join(str(exc).split())}") from None
        x = x.mean(axis=1)
        if not np.isfinite(x).all():
            raise DataError(f"audio file {item.path} contains NaN or Inf samples")
        return np.ascontiguousarray(x, dtype=np.float32)
    x, _ = load_audio(item.path, sr=sample_rate, mono=True)
    if crop is None or len(x) <= crop:
        return x
    start = _offset(len(x), crop, rng)
    return x[start:start + crop]


def _offset(total: int, crop: int, rng: np.random.Generator | None) -> int:
    if total <= crop:
        return 0
    return int(rng.integers(0, total - crop + 1)) if rng is not None else (total - crop) // 2


def collate(segments: list[np.ndarray], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``segments`` into ``(b, T)`` (``T = pad_to`` or the longest) + ``lengths``."""
    lengths = np.array([len(s) for s in segments], dtype=np.int32)
    T = pad_to if pad_to is not None else int(lengths.max())
    wav = np.zeros((len(segments), T), dtype=np.float32)
    for i, s in enumerate(segments):
        wav[i, :len(s)] = s
    return wav, lengths


class Loader:
    """Iterate this rank's batches from ``start`` forever (epochs roll over).

    Args:
        items, plan: the corpus and its batch plan (global batches).
        sample_rate: rate the audio is read at. crop_seconds: crop length (None: whole items).
        seed: base seed of the crop offsets.
        rank, world: data-parallel position; each rank reads only its slice.
        prefetch: batches prepared ahead; workers: threads reading one batch's files.
        start: ``(epoch, index)`` of the first batch.
    """

    def __init__(self, items: list[Item], plan: BatchPlan, *, sample_rate: int,
                 crop_seconds: float | None, seed: int, rank: int = 0, world: int = 1,
                 prefetch: int = 4, workers: int = 2, start: tuple[int, int] = (0, 0)) -> None:
        if plan.batch_size % world:
            raise DataError(f"batch_size {plan.batch_size} is not divisible by {world} ranks")
        self.items, self.plan = items, plan
        self.sample_rate, self.seed = sample_rate, seed
        self.crop = None if crop_seconds is None else int(round(crop_seconds * sample_rate))
        self.rank, self.world = rank, world
        self.start = start
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loader")
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()

    def make(self, epoch: int, index: int) -> Batch:
        """Build one batch synchronously (also what the prefetch thread runs)."""
        glob = self.plan.batch(epoch, index)
        mine = shard(np.arange(len(glob)), self.rank, self.world)
        def read(slot: int) -> np.ndarray:
            rng = np.random.default_rng([self.seed, _CROP_STREAM, epoch, index, int(slot)])
            return read_segment(self.items[int(glob[slot])], sample_rate=self.sample_rate,
                                crop=self.crop, rng=rng)
        segs = list(self._pool.map(read, mine))
        wav, lengths = collate(segs, pad_to=self.crop)
        return Batch(wav=wav, lengths=lengths, items=[self.items[int(glob[s])] for s in mine],
                     epoch=epoch, index=index)

    def _produce(self) -> None:
        epoch, index = self.start
        while not self._stop.is_set():
            try:
                out: object = self.make(epoch, index)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                out = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(out, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(out, BaseException):
                return
            epoch, index = self.plan.next_position(epoch, index)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        while True:
            try:
                out = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("data loader thread stopped unexpectedly") from None
        if isinstance(out, BaseException):
            self.close()
            raise out
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def eval_batches(items: list[Item], *, batch_size: int, sample_rate: int,
                 crop_seconds: float | None, rank: int = 0, world: int = 1,
                 max_batches: int | None = None) -> Iterator[Batch]:
    """Deterministic validation batches of this rank's share (items ``rank::world``), centre
    crops, the last batch possibly smaller."""
    crop = None if crop_seconds is None else int(round(crop_seconds * sample_rate))
    mine = items[rank::world]
    n = 0
    for s in range(0, len(mine), batch_size):
        if max_batches is not None and n >= max_batches:
            return
        chunk = mine[s:s + batch_size]
        segs = [read_segment(it, sample_rate=sample_rate, crop=crop, rng=None) for it in chunk]
        wav, lengths = collate(segs, pad_to=crop)
        yield Batch(wav=wav, lengths=lengths, items=chunk, epoch=0, index=n)
        n += 1
