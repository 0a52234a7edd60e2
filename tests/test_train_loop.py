"""The trainers in-process: learning, parameter groups, EMA, validation, gradient accumulation,
GAN mode, mixed precision, MLX/torch agreement, NaN guard, memory ceiling, thermal pause."""

import json

import numpy as np
import pytest

from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.errors import SpecError
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.loop import MemoryCeilingReached, TrainingDiverged
from mlx_speech.train.monitor import MemoryGuard, ThermalGate, read_metrics
from mlx_speech.train.recipe import make_trainer
from mlx_speech.train.task_base import register_task
from mlx_speech.train.tiny import MelDenoiseTask as MLXDenoise

torch = pytest.importorskip("torch")
from torch_ref.train.tiny import MelDenoiseTask as TorchDenoise  # noqa: E402

BACKENDS = ["mlx", "torch"]
TINY = {"dim": 32, "num_layers": 1, "num_heads": 4, "ffn_dim": 64}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=12, seconds=(0.5, 1.0)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def recipe(manifest, out, **over):
    d = {"task": "mel_denoise", "steps": 6, "out_dir": str(out), "model": dict(TINY),
         "data": {"sources": [{"kind": "manifest", "path": manifest}], "batch_size": 4,
                  "crop_seconds": 0.4, "prefetch": 2, "workers": 1},
         "optimizer": {"lr": 3e-3, "warmup_steps": 1}, "checkpoint": {"every": 100},
         "monitor": {"progress": False, "log_every": 1}}
    for k, v in over.items():
        d[k] = {**d[k], **v} if k in ("data", "monitor") else v
    return TrainSpec.from_dict(d)


def _maxdiff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_learns_with_groups_ema_validation_and_log(manifest, tmp_path, backend):
    spec = recipe(manifest, tmp_path, steps=24, ema={"decay": 0.8},
                  data={"val_fraction": 0.25}, val_every=12,
                  optimizer={"lr": 3e-3, "warmup_steps": 2, "groups": [
                      {"name": "frozen", "match": ["in_proj.*"], "frozen": True},
                      {"name": "still", "match": ["out_proj.bias"], "lr": 0.0},
                      {"name": "head", "match": ["out_proj.weight"], "lr": 1e-2}]},
                  monitor={"progress": False, "log_every": 4})
    tr = make_trainer(spec, backend)
    w0 = tr.weights()
    out = tr.run()
    w, ema = tr.weights(), tr.weights(ema=True)
    assert out["step"] == 24 and out["skipped_steps"] == 0
    for k in ("in_proj.weight", "in_proj.bias", "out_proj.bias"):
        assert np.array_equal(w[k], w0[k]), k  # frozen group and lr = 0 group untouched
    assert not np.array_equal(w["out_proj.weight"], w0["out_proj.weight"])
    assert 0 < _maxdiff(ema, w) < _maxdiff(w0, w)  # the EMA lags behind the weights
    recs = read_metrics(tmp_path / "metrics.jsonl")
    losses = [r["loss"] for r in recs if "loss" in r]
    vals = [r["val_loss"] for r in recs if "val_loss" in r]
    assert [r["step"] for r in recs if "loss" in r] == [1, 4, 8, 12, 16, 20, 24]
    assert len(vals) == 2 and out["val_loss"] == vals[-1]
    assert np.mean(losses[-2:]) < 0.8 * losses[0]
    assert all(k in recs[0] for k in ("lr", "grad_norm", "steps_per_s", "memory_gb", "l1", "data_wait"))
    assert np.mean([r["data_wait"] for r in recs if "loss" in r][1:]) < 0.5  # the prefetcher keeps up
    assert (tmp_path / "checkpoints" / "ckpt_00000024.safetensors").is_file()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_accumulation_is_the_same_maths(manifest, tmp_path, backend):
    model = {**TINY, "spec_augment": {"time_masks": 1, "time_width": 5}}
    runs = []
    for accum in (1, 2, 4):
        # eps 1e-4: with the L1 loss some bias gradients are ~0 +- rounding, which Adam's default
        # eps would blow up to +-lr; summing micro-batches reorders that rounding.
        tr = make_trainer(recipe(manifest, tmp_path / str(accum), steps=3, grad_accum=accum,
                                 model=model, optimizer={"lr": 3e-3, "eps": 1e-4}), backend)
        tr.run()
        runs.append(tr.weights())
    assert _maxdiff(runs[0], runs[1]) < 2e-6 and _maxdiff(runs[0], runs[2]) < 2e-6


@pytest.mark.cpu_only  # CPU shards are CPU streams
def test_cpu_shards_are_the_same_maths(manifest, tmp_path):
    """Row shards on separate CPU streams (2 even, 3 uneven: rows 1/2/1, with accumulation),
    and the optimiser and EMA spread over those streams, give the one-stream result, for a
    plain and a GAN task."""
    for task, model in (("mel_denoise", {**TINY, "spec_augment": {"time_masks": 1}}),
                        ("mel_denoise_gan", {"generator": TINY, "disc_dim": 16})):
        runs = {}
        for shards, accum in ((1, 1), (2, 1), (3, 1), (2, 2)):
            tr = make_trainer(recipe(manifest, tmp_path / f"{task}_{shards}_{accum}", task=task,
                                     steps=3, model=model, cpu_shards=shards, grad_accum=accum,
                                     optimizer={"lr": 3e-3, "eps": 1e-4}, ema={"decay": 0.5}),
                              "mlx")
            assert tr.cpu_shards == shards and len(tr.optims["optim"].streams) == (shards > 1) * shards
            w0 = tr.weights()
            tr.run()
            runs[shards, accum] = (tr.weights(), tr.weights(ema=True))
        assert _maxdiff(runs[1, 1][0], w0) > 1e-3
        for key, (w, ema) in runs.items():
            assert _maxdiff(runs[1, 1][0], w) < 2e-6, (task, key)
            assert _maxdiff(runs[1, 1][1], ema) < 2e-6, (task, key)


def test_cpu_shards_recipe_values(manifest, tmp_path):
    assert recipe(manifest, tmp_path).cpu_shards == "auto"
    for bad in (0, -1, "two", True, 1.5):
        with pytest.raises(SpecError, match="cpu_shards"):
            recipe(manifest, tmp_path, cpu_shards=bad)


def test_mlx_and_torch_trainers_agree(manifest, tmp_path):
    from convert.parity import copy_mlx_to_torch

    for task, model in (("mel_denoise", TINY), ("mel_denoise_gan", {"generator": TINY, "disc_dim": 16})):
        kw = dict(task=task, model=model, steps=5, grad_accum=2,  # eps: see the accumulation test
                  optimizer={"lr": 2e-3, "betas": [0.8, 0.99], "eps": 1e-4, "warmup_steps": 2,
                             "grad_clip": 0.5,
                             "groups": [{"name": "head", "match": ["*out_proj.*"], "lr": 5e-3}]},
                  disc_optimizer={"lr": 1e-3}, ema={"decay": 0.9})
        m = make_trainer(recipe(manifest, tmp_path / f"m_{task}", **kw), "mlx")
        t = make_trainer(recipe(manifest, tmp_path / f"t_{task}", **kw), "torch")
        copy_mlx_to_torch(m.model, t.model)
        t.ema.weights = {k: v.detach().clone() for k, v in t.model.named_parameters()}
        w0 = m.weights()
        m.run()
        t.run()
        moved = _maxdiff(m.weights(), w0)
        assert moved > 1e-3
        assert _maxdiff(m.weights(), t.weights()) < 1e-4, task
        assert _maxdiff(m.weights(ema=True), t.weights(ema=True)) < 1e-4, task


@pytest.mark.parametrize("backend", BACKENDS)
def test_gan_mode_steps_both_players(manifest, tmp_path, backend):
    spec = recipe(manifest, tmp_path, task="mel_denoise_gan", steps=4,
                  model={"generator": TINY, "disc_dim": 16}, disc_optimizer={"lr": 1e-2})
    tr = make_trainer(spec, backend)
    w0 = tr.weights()
    tr.run()
    w = tr.weights()
    for prefix in ("generator.", "discriminator."):
        assert any(not np.array_equal(w[k], w0[k]) for k in w if k.startswith(prefix)), prefix
    rec = read_metrics(tmp_path / "metrics.jsonl")[-1]
    assert {"d_loss", "adv", "l1"} <= set(rec)
    assert set(tr.optims) == {"optim", "doptim"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_mixed_precision_trains_fp32_masters(manifest, tmp_path, backend):
    tr = make_trainer(recipe(manifest, tmp_path, steps=8, precision="bf16"), backend)
    tr.run()
    w = tr.weights()
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in w.values())
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < losses[0]


# --- NaN / Inf guard ------------------------------------------------------------------------
class _Poison:
    """Makes the loss NaN on the training steps listed in ``POISON`` (counted by prepare)."""

    POISON: set[int] = set()

    def prepare(self, batch, rngs, *, train):
        out = super().prepare(batch, rngs, train=train)
        self.calls = getattr(self, "calls", 0) + train
        bad = train and self.calls in self.POISON
        out["poison"] = np.full((len(rngs),), np.nan if bad else 0.0, dtype=np.float32)
        return out

    def loss(self, model, inputs):
        loss, metrics = super().loss(model, inputs)
        return loss + inputs["poison"].mean(), metrics


class PoisonMLX(_Poison, MLXDenoise):
    pass


class PoisonTorch(_Poison, TorchDenoise):
    pass


register_task("poison_test", mlx=f"{__name__}:PoisonMLX", torch=f"{__name__}:PoisonTorch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_guard_skips_counts_and_stops_cleanly(manifest, tmp_path, backend, capsys):
    base = dict(task="poison_test", max_nonfinite=3, optimizer={"lr": 3e-3, "schedule": "constant"},
                ema={"decay": 0.9})
    _Poison.POISON = {2, 3}
    tr = make_trainer(recipe(manifest, tmp_path / "a", steps=5, **base), backend)
    out = tr.run()
    assert out["skipped_steps"] == 2 and all(np.isfinite(v).all() for v in tr.weights().values())
    assert "update skipped (2/3 in a row)" in capsys.readouterr().err

    _Poison.POISON = {5, 6, 7, 8}
    tr = make_trainer(recipe(manifest, tmp_path / "b", steps=10, **base), backend)
    with pytest.raises(TrainingDiverged, match="stopped at step 7 after 3 consecutive non-finite"):
        tr.run()
    _Poison.POISON = set()
    clean = make_trainer(recipe(manifest, tmp_path / "c", steps=4, **base), backend)
    clean.run()
    from mlx_speech.train.checkpoint import CheckpointManager

    stopped, _, state = CheckpointManager.load(tmp_path / "b" / "checkpoints" / "ckpt_00000007.safetensors")
    ref, _, _ = CheckpointManager.load(tmp_path / "c" / "checkpoints" / "ckpt_00000004.safetensors")
    assert state["nonfinite_run"] == 3 and state["step"] == 7
    # Skipped steps change nothing: weights, EMA and optimiser state equal 4 clean steps.
    keys = [k for k in ref if not k.startswith("rng.")]
    assert max(float(np.abs(ref[k] - stopped[k]).max()) for k in keys) == 0.0


# --- resource guards -------------------------------------------------------------------------
def test_memory_ceiling_sheds_work_then_stops_with_a_checkpoint(manifest, tmp_path):
    spec = recipe(manifest, tmp_path, steps=10, monitor={"progress": False, "log_every": 1,
                                                         "memory_limit_gb": 1e-6})
    tr = make_trainer(spec, "mlx")
    with pytest.raises(MemoryCeilingReached, match="stopped at step 3"):
        tr.run()
    events = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("event") == "grad_accum"]
    assert [e["grad_accum"] for e in events] == [2, 4]
    assert (tmp_path / "checkpoints" / "ckpt_00000003.safetensors").is_file()


def test_memory_guard_warns_once_per_crossing():
    used = [0.5, 0.95, 0.96, 0.5, 0.97, 1.5]
    guard = MemoryGuard(1.0, warn_fraction=0.9)
    guard.usage_gb = lambda: used.pop(0)
    assert [guard.check()[0] for _ in range(6)] == ["ok", "warn", "ok", "ok", "warn", "over"]
    assert MemoryGuard(None).check()[0] == "ok"


def test_thermal_gate_pauses_while_serious(manifest, tmp_path):
    states = [3, 2, 1]
    slept = []
    gate = ThermalGate(enabled=True, poll_s=5, probe=lambda: states.pop(0), sleep=slept.append)
    assert gate.wait() == 10 and slept == [5, 5]
    assert ThermalGate(enabled=True, probe=lambda: None, sleep=slept.append).wait() == 0
    seq = iter([2] + [0] * 100)
    tr = make_trainer(recipe(manifest, tmp_path, steps=2, monitor={"progress": False, "thermal_poll_s": 7.0}),
                      "mlx", thermal_probe=lambda: next(seq), sleep=slept.append)
    tr.run()
    assert slept[-1] == 7.0


def test_jsonl_log_is_valid_json_lines(manifest, tmp_path):
    tr = make_trainer(recipe(manifest, tmp_path, steps=2), "mlx")
    tr.run()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]


def test_split_by_size_covers_every_parameter_once_in_balanced_runs():
    from mlx_speech.train.optim import split_by_size

    assert split_by_size([10, 10, 10, 10], 2) == [range(0, 2), range(2, 4)]
    assert split_by_size([100, 1, 1, 1], 2) == [range(0, 1), range(1, 4)]
    assert split_by_size([5], 3) == [range(0, 1)]
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = list(rng.integers(1, 1000, size=int(rng.integers(1, 30))))
        parts = int(rng.integers(1, 6))
        runs = split_by_size(sizes, parts)
        assert 1 <= len(runs) <= parts
        assert [i for r in runs for i in r] == list(range(len(sizes)))
