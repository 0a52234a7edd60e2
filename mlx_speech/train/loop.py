"""The training loop both trainers share; each framework fills in a handful of hooks.

Framework-neutral (imports neither mlx nor torch): ``mlx_speech.train.trainer.Trainer`` and
``torch_ref.train.trainer.Trainer`` subclass :class:`TrainLoop`, so step counting, data
positions, the per-row random generators, the NaN/Inf guard, logging, validation,
checkpoint cadence, resume and the resource guards are one piece of code.

Exact resume: the data position is ``(epoch, batch)`` of a deterministic plan, each step's
random draws come from generators seeded by the trainer's numpy generator (whose state is
checkpointed), and the framework saves its own RNG state, weights, EMA and optimiser state.
Running N steps, stopping (or being killed) after a checkpoint and resuming therefore gives
the same weights as N straight steps.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlx_speech.data.loader import Loader, eval_batches
from mlx_speech.data.sampler import BatchPlan
from mlx_speech.errors import CheckpointError, SpecError, UserError
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.checkpoint import CheckpointManager
from mlx_speech.train.monitor import MemoryGuard, MetricsLog, Progress, ThermalGate, macos_thermal_state
from mlx_speech.train.schedule import lr_factor
from mlx_speech.train.task_base import Task, get_task
from mlx_speech.utils.atomic import remove_stale_temps

_VAL_STREAM = 0x7A1


class TrainingStopped(UserError):
    """Training stopped cleanly before the last step (a checkpoint was written first)."""


class TrainingDiverged(TrainingStopped):
    """Too many consecutive steps with a non-finite loss or gradient."""


class MemoryCeilingReached(TrainingStopped):
    """Memory stayed above the configured ceiling with no work left to shed."""


class TrainingInterrupted(TrainingStopped):
    """Ctrl-C (SIGINT): the step in flight finished, a checkpoint was written, then stopped."""


class _InterruptGate:
    """Turns the first SIGINT into a request to stop at the next step boundary.

    A step is never cut in half (weights, optimiser and EMA stay consistent, so the checkpoint
    written on the way out resumes exactly); a second Ctrl-C interrupts at once as usual. Only
    installed in the main thread (Python delivers signals there), otherwise inert.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: give up waiting for the step
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _InterruptGate:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@dataclasses.dataclass
class StepResult:
    """One optimiser step as the framework reports it (loss and norm averaged over ranks)."""

    loss: float
    grad_norm: float
    finite: bool
    metrics: dict[str, float]


def split_rows(inputs: dict[str, np.ndarray], parts: int) -> list[dict[str, np.ndarray]]:
    """Cut every array along its first axis into ``parts`` equal micro-batches."""
    rows = len(next(iter(inputs.values())))
    if rows % parts:
        raise SpecError(f"{rows} rows per rank cannot be split into {parts} micro-batches")
    n = rows // parts
    return [{k: v[i * n:(i + 1) * n] for k, v in inputs.items()} for i in range(parts)]


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that cannot be one, before any data is read or model built."""
    for p in (out_dir, *out_dir.parents):
        if p.exists():
            if not p.is_dir():
                what = "out_dir" if p == out_dir else f"out_dir {out_dir}: {p}"
                raise SpecError(f"{what} is a file, not a folder; choose another out_dir")
            if not os.access(p, os.W_OK | os.X_OK):
                raise SpecError(f"out_dir {out_dir}: cannot write in {p} (permission denied)")
            return


class TrainLoop:
    """Shared driver. Subclasses set ``framework`` and implement the ``_hooks``.

    Args:
        spec: the recipe.
        out_dir: overrides ``spec.out_dir`` (checkpoints in ``out_dir/checkpoints``, the JSONL
            log in ``out_dir/metrics.jsonl``).
        progress: overrides ``spec.monitor.progress``.
        thermal_probe / sleep: injectable for tests (default: the macOS thermal state).
    """

    framework: ClassVar[str]

    def __init__(self, spec: TrainSpec, *, out_dir: str | Path | None = None,
                 progress: bool | None = None,
                 thermal_probe: Callable[[], int | None] = macos_thermal_state,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec = spec
        self.out_dir = Path(out_dir if out_dir is not None else spec.out_dir)
        _check_out_dir(self.out_dir)
        self.rank, self.world = self._init_distributed()
        self.is_main = self.rank == 0
        b = spec.data.batch_size
        if b % (self.world * spec.grad_accum):
            raise SpecError(f"data.batch_size {b} must be divisible by ranks ({self.world}) x "
                            f"grad_accum ({spec.grad_accum})")
        self.rows = b // self.world
        self.task: Task = get_task(spec.task, self.framework)(spec.model)
        self.show_progress = spec.monitor.progress if progress is None else progress
        self.corpus = self.task.open_corpus(spec, self.out_dir, progress=self.show_progress and self.is_main)
        self.plan = BatchPlan(self.corpus.durations, batch_size=b, seed=spec.seed,
                              source_of=self.corpus.source_of, weights=self.corpus.weights,
                              bucket_size=spec.data.bucket_size)
        # Same seed on every rank: row generators are keyed by the row's place in the global batch.
        self.rng = np.random.default_rng(spec.seed)
        self.step = 0
        self.position: tuple[int, int] = (0, 0)
        self.grad_accum = spec.grad_accum
        self.nonfinite_run = 0
        self.nonfinite_total = 0
        self.last: StepResult | None = None
        self.ckpt = CheckpointManager(self.out_dir / "checkpoints", keep_last=spec.checkpoint.keep_last)
        mon = spec.monitor
        self._progress = Progress(total=spec.steps, initial=0, enabled=False)
        self.thermal = ThermalGate(enabled=mon.thermal_pause, poll_s=mon.thermal_poll_s,
                                   probe=thermal_probe, sleep=sleep, say=self.say)
        self.memory = MemoryGuard(mon.memory_limit_gb, warn_fraction=mon.memory_warn_fraction,
                                  device_bytes=self._device_bytes)
        self.log = MetricsLog(self.out_dir / "metrics.jsonl", enabled=self.is_main)
        self._setup()

    # -- hooks a framework implements ----------------------------------------------------------
    def _init_distributed(self) -> tuple[int, int]:
        raise NotImplementedError

    def _setup(self) -> None:
        raise NotImplementedError

    def _train_step(self, micro: list[dict[str, np.ndarray]], lr_scale: float, step: int) -> StepResult:
        raise NotImplementedError

    def _eval_batch(self, inputs: dict[str, np.ndarray]) -> tuple[float, int]:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _sum_scalars(self, values: list[float]) -> list[float]:
        raise NotImplementedError

    def _device_bytes(self) -> int:
        return 0

    def _release_memory(self) -> None:
        pass

    def _export(self) -> None:
        """Hand the model, with the current weights (the EMA's when EMA runs with ``ema.eval``,
        the weights validation reads), to ``task.export`` (rank 0)."""

    # -- shared machinery ---------------------------------------------------------------------
    def say(self, message: str) -> None:
        if self.is_main:
            self._progress.write(message)

    def _row_rngs(self, n: int) -> list[np.random.Generator]:
        step_seed = int(self.rng.integers(0, 2**63))
        first = self.rank * self.rows
        return [np.random.default_rng([step_seed, first + i]) for i in range(n)]

    def resume(self) -> Path | None:
        """Load the newest checkpoint in ``out_dir/checkpoints`` if there is one."""
        if self.is_main:
            for p in self.ckpt.clean_temps():
                self.say(f"removed an interrupted checkpoint write: {p.name}")
            for p in remove_stale_temps(self.out_dir):  # e.g. the metrics log's rewrite
                self.say(f"removed an interrupted write: {p.name}")
        found = self.ckpt.load_latest()
        if found is None:
            return None
        path, arrays, meta, state = found
        if meta.get("format") != self.framework:
            raise CheckpointError(f"{path} was written by the {meta.get('format')} trainer; "
                                  f"resume it with --backend {meta.get('format')}")
        if meta.get("model") != self.spec.task:
            raise CheckpointError(f"{path} is a {meta.get('model')!r} checkpoint, the recipe "
                                  f"trains {self.spec.task!r}")
        self._load_state_arrays(arrays)
        self.step = int(state["step"])
        self.position = (int(state["position"][0]), int(state["position"][1]))
        self.rng.bit_generator.state = state["np_rng"]
        self.nonfinite_run = int(state["nonfinite_run"])
        self.nonfinite_total = int(state["nonfinite_total"])
        self.grad_accum = int(state["grad_accum"])
        if self.rows % self.grad_accum:
            self.grad_accum = self.spec.grad_accum
        self.say(f"resumed from {path} at step {self.step}")
        return path

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 only)."""
        if not self.is_main:
            return None
        state = {"step": self.step, "position": list(self.position),
                 "np_rng": self.rng.bit_generator.state, "nonfinite_run": self.nonfinite_run,
                 "nonfinite_total": self.nonfinite_total, "grad_accum": self.grad_accum,
                 "world": self.world}
        path = self.ckpt.save(self.step, self._state_arrays(), fmt=self.framework,
                              task=self.spec.task, spec=self.spec.to_dict(), state=state)
        self._export()
        return path

    def validate(self) -> float | None:
        """Mean validation loss over every rank's share (None without validation data)."""
        items = self.corpus.val_items
        if not items:
            return None
        total, count = 0.0, 0
        d = self.spec.data
        for batch in eval_batches(items, batch_size=self.rows, sample_rate=d.sample_rate,
                                  crop_seconds=d.crop_seconds, rank=self.rank, world=self.world,
                                  max_batches=self.spec.val_batches):
            first = batch.index * self.rows
            rngs = [np.random.default_rng([self.spec.seed, _VAL_STREAM, self.rank + self.world * (first + i)])
                    for i in range(len(batch.items))]
            s, n = self._eval_batch(self.task.prepare(batch, rngs, train=False))
            total, count = total + s, count + n
        total, count = self._sum_scalars([total, float(count)])
        val = total / max(count, 1.0)
        self.log.write({"step": self.step, "val_loss": val, "val_items": int(count)})
        self.say(f"step {self.step}: val_loss {val:.5g}")
        return val

    def _guard(self, res: StepResult) -> None:
        if res.finite:
            self.nonfinite_run = 0
            return
        self.nonfinite_run += 1
        self.nonfinite_total += 1
        limit = self.spec.max_nonfinite
        self.say(f"step {self.step}: non-finite loss or gradient (loss {res.loss}, norm "
                 f"{res.grad_norm}); update skipped ({self.nonfinite_run}/{limit} in a row)")
        if self.nonfinite_run >= limit:
            path = self.save()
            raise TrainingDiverged(
                f"stopped at step {self.step} after {limit} consecutive non-finite steps "
                f"(checkpoint {path or 'written by rank 0'}); lower the lr or check the data")

    def _memory(self) -> None:
        status, used = self.memory.check()
        if status == "warn":
            self.say(f"memory {used:.2f} GB is above {self.memory.warn_fraction:.0%} of the "
                     f"{self.memory.limit_gb} GB ceiling")
        stop = 0.0
        if status == "over":
            self._release_memory()
            status, used = self.memory.check()
        if status == "over":
            if self.rows % (2 * self.grad_accum) == 0:
                self.grad_accum *= 2
                self.say(f"memory {used:.2f} GB over the {self.memory.limit_gb} GB ceiling: "
                         f"gradient accumulation raised to {self.grad_accum} "
                         "(same maths, smaller micro-batches)")
                self.log.write({"step": self.step, "event": "grad_accum", "grad_accum": self.grad_accum,
                                "memory_gb": used})
            else:
                stop = 1.0
        if self.world > 1:
            stop = self._sum_scalars([stop])[0]
        if stop > 0:
            path = self.save()
            raise MemoryCeilingReached(
                f"stopped at step {self.step}: memory {used:.2f} GB over the {self.memory.limit_gb} GB "
                f"ceiling with one row per micro-batch (checkpoint {path or 'written by rank 0'})")

    def run(self) -> dict[str, Any]:
        """Train to ``spec.steps`` (resuming when a checkpoint exists); returns a summary."""
        spec = self.spec
        resumed = self.resume()
        self.log.truncate_after(self.step)
        val = None
        if self.step < spec.steps:
            self._progress = Progress(total=spec.steps, initial=self.step,
                                      enabled=self.is_main and self.show_progress)
            d = spec.data
            loader = Loader(self.corpus.items, self.plan, sample_rate=d.sample_rate,
                            crop_seconds=d.crop_seconds, seed=spec.seed, rank=self.rank,
                            world=self.world, prefetch=d.prefetch, workers=d.workers,
                            start=self.position)
            try:
                with _InterruptGate() as gate:
                    val = self._loop(loader, gate)
            finally:
                loader.close()
                self._progress.close()
        if spec.val_every == 0 or spec.steps % spec.val_every:
            val = self.validate() if self.corpus.val_items else val
        return {"step": self.step, "backend": self.framework, "loss": None if self.last is None else self.last.loss,
                "val_loss": val, "skipped_steps": self.nonfinite_total,
                "resumed_from": None if resumed is None else str(resumed),
                "checkpoint": str(self.ckpt.directory / f"ckpt_{self.step:08d}.safetensors"),
                **self.task.summary()}

    def _interrupted(self, gate: _InterruptGate) -> bool:
        """Whether any rank got Ctrl-C (ranks agree, so they stop at the same step)."""
        if self.world > 1:
            return self._sum_scalars([1.0 if gate.requested else 0.0])[0] > 0
        return gate.requested

    def _loop(self, loader: Loader, gate: _InterruptGate) -> float | None:
        spec, mon = self.spec, self.spec.monitor
        val = None
        t0, n0, waited = time.perf_counter(), 0, 0.0
        while self.step < spec.steps:
            self.thermal.wait()
            tw = time.perf_counter()
            batch = next(loader)
            waited += time.perf_counter() - tw
            if (batch.epoch, batch.index) != self.position:
                raise RuntimeError(f"loader at {(batch.epoch, batch.index)}, trainer at {self.position}")
            self.task.step = self.step
            inputs = self.task.prepare(batch, self._row_rngs(len(batch.items)), train=True)
            scale = lr_factor(self.step, spec.optimizer, spec.steps)
            res = self._train_step(split_rows(inputs, self.grad_accum), scale, self.step)
            self.position = self.plan.next_position(batch.epoch, batch.index)
            self.step += 1
            self.last = res
            self._guard(res)
            n0 += 1
            lr = spec.optimizer.lr * scale
            self._progress.update(1, loss=res.loss, lr=lr)
            if self.step % mon.log_every == 0 or self.step == spec.steps or self.step == 1:
                now = time.perf_counter()
                rate = n0 / max(now - t0, 1e-9)
                # Share of the wall time spent waiting for data (0: the prefetcher keeps up).
                data_wait = waited / max(now - t0, 1e-9)
                t0, n0, waited = now, 0, 0.0
                self.log.write({"step": self.step, "loss": res.loss, "grad_norm": res.grad_norm,
                                "lr": lr, "steps_per_s": rate, "data_wait": round(data_wait, 4),
                                "epoch": batch.epoch,
                                "skipped": self.nonfinite_total, "grad_accum": self.grad_accum,
                                "memory_gb": round(self.memory.usage_gb(), 3), "time": time.time(),
                                **res.metrics})
                self._memory()
            if spec.val_every and self.step % spec.val_every == 0:
                val = self.validate()
            saved = self.step % spec.checkpoint.every == 0 or self.step == spec.steps
            if saved:
                self.save()
            if self.step < spec.steps and self._interrupted(gate):
                path = None if saved else self.save()
                where = self.ckpt.directory / f"ckpt_{self.step:08d}.safetensors"
                raise TrainingInterrupted(
                    f"interrupted at step {self.step}/{spec.steps}; checkpoint "
                    f"{path or where} written; run the same command to resume")
        return val
