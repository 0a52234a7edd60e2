"""Training checkpoints: one tagged safetensors file per save, atomic, newest N kept.

Framework-neutral (numpy + safetensors). A checkpoint ``ckpt_<step:08d>.safetensors`` holds
every array of the training state under a prefix (``model.``, ``ema.``, ``optim.``,
``doptim.``, ``rng.``) and carries the usual mlx-speech tag (``format`` = the trainer's
framework, ``model`` = the task, ``spec`` = the recipe as JSON) plus ``train_state``: JSON
with the step, the data position, the numpy generator state and the guard counters.

Writes go through :func:`mlx_speech.utils.atomic.atomic_path` (temporary file in the same
directory, fsync, ``os.replace``): a crash or ``kill -9`` mid-write leaves at most a stray
``.ckpt_*`` temporary file, which :meth:`CheckpointManager.clean_temps` removes, and never a
damaged checkpoint. Older checkpoints are deleted only after the new one is in place.

Test hook: ``MLX_SPEECH_CKPT_PAUSE_S`` (seconds) sleeps after the temporary file is written and
before it is renamed, so a test can kill the process inside that window; with
``MLX_SPEECH_CKPT_PAUSE_STEP`` set, only the save of that step pauses.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech._version import __version__
from mlx_speech.weights.checkpoint import load_checkpoint
from mlx_speech.errors import CheckpointError
from mlx_speech.utils.atomic import atomic_path

_NAME = re.compile(r"^ckpt_(\d{8})\.safetensors$")
PAUSE_ENV = "MLX_SPEECH_CKPT_PAUSE_S"
PAUSE_STEP_ENV = "MLX_SPEECH_CKPT_PAUSE_STEP"


def checkpoint_name(step: int) -> str:
    return f"ckpt_{step:08d}.safetensors"


class CheckpointManager:
    """Save / find / load training checkpoints in ``directory``; keep the newest ``keep_last``."""

    def __init__(self, directory: str | os.PathLike, *, keep_last: int = 3) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last

    def list(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every checkpoint file, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if (m := _NAME.match(p.name)) and p.is_file()]
        return sorted(found)

    def clean_temps(self) -> list[Path]:
        """Remove temporary files left by an interrupted save; returns what was removed."""
        if not self.directory.is_dir():
            return []
        stale = [p for p in self.directory.iterdir() if p.name.startswith(".ckpt_")]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def save(self, step: int, arrays: dict[str, np.ndarray], *, fmt: str, task: str,
             spec: dict[str, Any], state: dict[str, Any]) -> Path:
        """Write the checkpoint of ``step`` atomically, then prune to ``keep_last``."""
        bad = [k for k, v in arrays.items()
               if k.startswith(("model.", "ema.")) and not np.all(np.isfinite(v))]
        if bad:
            raise CheckpointError(f"refusing to save non-finite weights: {', '.join(bad[:5])}")
        meta = {"format": fmt, "model": task, "spec": json.dumps(spec, sort_keys=True),
                "mlx_speech": __version__, "train_state": json.dumps(state)}
        path = self.directory / checkpoint_name(step)
        from safetensors.numpy import save_file  # noqa: PLC0415

        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                      metadata=meta)
            _test_pause(step)
        self.prune()
        return path

    def prune(self) -> None:
        for _, p in self.list()[:-self.keep_last]:
            p.unlink(missing_ok=True)

    def load_latest(self) -> tuple[Path, dict[str, np.ndarray], dict[str, Any], dict[str, Any]] | None:
        """``(path, arrays, meta, train_state)`` of the newest checkpoint that reads back, or
        None; unreadable files (which atomic writes should never produce) are skipped."""
        for _, p in reversed(self.list()):
            try:
                return (p, *self.load(p))
            except CheckpointError:
                continue
        return None

    @staticmethod
    def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
        """``(arrays, tag metadata, train_state)`` of a training checkpoint."""
        arrays, meta = load_checkpoint(path)
        if "train_state" not in meta:
            raise CheckpointError(f"{path}: a model checkpoint, not a training checkpoint "
                                  "(no train_state in its metadata)")
        try:
            state = json.loads(meta["train_state"])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: corrupt train_state metadata") from None
        return arrays, meta, state


def _test_pause(step: int) -> None:
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    only = os.environ.get(PAUSE_STEP_ENV)
    if pause > 0 and (not only or int(only) == step):
        time.sleep(pause)


def strip_prefix(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under ``prefix.`` with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


def add_prefix(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in arrays.items()}
