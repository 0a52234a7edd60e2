"""Batch plans (weighted sampling, bucketing, sharding), the prefetching loader, augmentation."""

import threading

import numpy as np
import pytest

from mlx_speech.data.augment import frame_lengths, spec_augment_masks, white_noise_at_snr
from mlx_speech.data.loader import Loader, eval_batches, read_segment
from mlx_speech.data.manifest import DataError, Item, read_manifest
from mlx_speech.data.sampler import BatchPlan, shard
from mlx_speech.data.toy import write_toy_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    m = write_toy_corpus(tmp_path_factory.mktemp("toy"), n=12, seconds=(0.4, 1.2))
    return read_manifest(m)


def _plan(items, **kw):
    return BatchPlan(np.array([it.duration for it in items]), **kw)


def test_unweighted_epoch_is_a_permutation_and_deterministic(corpus):
    plan = _plan(corpus, batch_size=4, seed=3)
    e0 = np.concatenate(plan.epoch(0))
    assert sorted(e0.tolist()) == list(range(12))
    assert not np.array_equal(e0, np.concatenate(plan.epoch(1)))
    again = _plan(corpus, batch_size=4, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(plan.epoch(1), again.epoch(1)))
    assert plan.next_position(0, 2) == (1, 0) and plan.next_position(0, 1) == (0, 2)


def test_weighted_sampling_follows_source_shares():
    src = np.array([0] * 90 + [1] * 10)
    plan = BatchPlan(np.ones(100), batch_size=10, seed=0, source_of=src, weights=[1.0, 1.0])
    drawn = np.concatenate([np.concatenate(plan.epoch(e)) for e in range(40)])
    share = np.mean(src[drawn] == 1)
    assert share == pytest.approx(0.5, abs=0.03)  # the small source is up-sampled to half
    with pytest.raises(DataError, match="fewer than batch_size"):
        BatchPlan(np.ones(3), batch_size=4, seed=0)


def test_bucketing_groups_similar_lengths():
    dur = np.random.default_rng(0).uniform(0.5, 10.0, size=64)
    plain = BatchPlan(dur, batch_size=4, seed=0)
    bucketed = BatchPlan(dur, batch_size=4, seed=0, bucket_size=8)
    spread = lambda p: np.mean([np.ptp(dur[b]) for b in p.epoch(0)])  # noqa: E731
    assert spread(bucketed) < 0.5 * spread(plain)
    assert sorted(np.concatenate(bucketed.epoch(0)).tolist()) == list(range(64))


def test_shards_partition_the_global_batch():
    batch = np.arange(8)
    parts = [shard(batch, r, 2) for r in range(2)]
    assert np.array_equal(np.concatenate(parts), batch)
    with pytest.raises(DataError, match="cannot be split"):
        shard(np.arange(6), 0, 4)


def test_loader_resumes_at_a_position_and_ignores_ranks_for_content(corpus):
    plan = _plan(corpus, batch_size=4, seed=1)
    kw = dict(sample_rate=16000, crop_seconds=0.5, seed=7, prefetch=2, workers=2)
    with Loader(corpus, plan, **kw) as loader:
        straight = [next(loader) for _ in range(7)]
    assert [(b.epoch, b.index) for b in straight] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert straight[0].wav.shape == (4, 8000) and straight[0].wav.dtype == np.float32
    with Loader(corpus, plan, start=(1, 1), **kw) as loader:
        resumed = next(loader)
    assert np.array_equal(resumed.wav, straight[4].wav)
    halves = []
    for rank in range(2):
        with Loader(corpus, plan, rank=rank, world=2, start=(1, 1), **kw) as loader:
            halves.append(next(loader))
    assert np.array_equal(np.concatenate([h.wav for h in halves]), straight[4].wav)
    assert [it.path for h in halves for it in h.items] == [it.path for it in straight[4].items]


def test_crops_pad_short_items_and_keep_lengths(corpus):
    short = min(corpus, key=lambda it: it.duration)
    seg = read_segment(short, sample_rate=16000, crop=32000, rng=np.random.default_rng(0))
    assert len(seg) == round(short.duration * 16000)
    long = max(corpus, key=lambda it: it.duration)
    a = read_segment(long, sample_rate=16000, crop=4000, rng=np.random.default_rng(1))
    b = read_segment(long, sample_rate=8000, crop=2000, rng=np.random.default_rng(1))  # resampled path
    assert len(a) == 4000 and len(b) == 2000
    plan = _plan(corpus, batch_size=4, seed=0)
    with Loader(corpus, plan, sample_rate=16000, crop_seconds=None, seed=0) as loader:
        batch = next(loader)
    assert batch.wav.shape[1] == batch.lengths.max()
    assert np.all(batch.wav[np.arange(batch.wav.shape[1])[None, :] >= batch.lengths[:, None]] == 0)


def test_loader_surfaces_read_errors_and_stops_its_thread(corpus, tmp_path):
    broken = [Item(path=str(tmp_path / "gone.wav"), duration=1.0, sample_rate=16000)] * 4
    plan = _plan(broken, batch_size=4, seed=0)
    before = threading.active_count()
    loader = Loader(broken, plan, sample_rate=16000, crop_seconds=0.5, seed=0)
    with pytest.raises(DataError, match="gone.wav"):
        next(loader)
    loader.close()
    assert threading.active_count() <= before + 1


def test_eval_batches_cover_every_item_once_across_ranks(corpus):
    seen = []
    for rank in range(3):
        for b in eval_batches(corpus, batch_size=2, sample_rate=16000, crop_seconds=0.3,
                              rank=rank, world=3):
            seen += [it.path for it in b.items]
            assert b.wav.shape[1] == 4800
    assert sorted(seen) == sorted(it.path for it in corpus)


def test_spec_augment_masks_and_noise_snr():
    rng = np.random.default_rng(0)
    t, f = spec_augment_masks(rng, 3, 50, 20, time_masks=2, time_width=5, freq_masks=1, freq_width=4)
    assert t.shape == (3, 50) and f.shape == (3, 20)
    assert set(np.unique(t)) <= {0.0, 1.0} and (50 - t.sum(1)).max() <= 10 and (20 - f.sum(1)).max() <= 4
    assert (t == 0).any() and (f == 0).any()
    none = spec_augment_masks(rng, 2, 10, 8, time_masks=0, time_width=5, freq_masks=0, freq_width=3)
    assert none[0].all() and none[1].all()
    wav = np.sin(np.linspace(0, 200, 16000, dtype=np.float32))[None].repeat(2, 0)
    lengths = np.array([16000, 8000])
    noise = white_noise_at_snr(np.random.default_rng(1), wav, lengths, (10.0, 10.0))
    snr = 10 * np.log10(np.mean(wav[0] ** 2) / np.mean(noise[0] ** 2))
    assert snr == pytest.approx(10.0, abs=0.2)
    assert np.all(noise[1, 8000:] == 0)
    frames = frame_lengths(np.array([16000, 8000]), hop_length=160, center=True, n_fft=512)
    assert frames.tolist() == [101, 51]
