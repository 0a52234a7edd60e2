"""Exact resume and crash safety: 20 straight steps == 10 steps, kill -9 (inside the next
checkpoint write), resume, 10 more; for the MLX and the torch trainer. Checkpoint rotation."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.errors import CheckpointError
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.checkpoint import PAUSE_ENV, PAUSE_STEP_ENV, CheckpointManager
from mlx_speech.train.monitor import read_metrics
from mlx_speech.train.recipe import make_trainer

BACKENDS = ["mlx", pytest.param("torch", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="torch not installed"))]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=12, seconds=(0.5, 1.0)))


def _recipe(manifest: str, out: Path) -> dict:
    # Every random stream is in play: dropout, SpecAugment, noise, crops, EMA, accumulation.
    return {"task": "mel_denoise", "steps": 20, "out_dir": str(out), "grad_accum": 2, "seed": 3,
            "model": {"dim": 32, "num_layers": 1, "num_heads": 4, "ffn_dim": 64, "dropout": 0.1,
                      "spec_augment": {"time_masks": 1, "time_width": 6, "freq_masks": 1, "freq_width": 4}},
            "data": {"sources": [{"kind": "manifest", "path": manifest}], "batch_size": 4,
                     "crop_seconds": 0.4, "prefetch": 3, "workers": 2},
            "optimizer": {"lr": 3e-3, "warmup_steps": 3, "betas": [0.8, 0.99]},
            "ema": {"decay": 0.9}, "checkpoint": {"every": 10, "keep_last": 3},
            "monitor": {"progress": False, "log_every": 1}}


def _env(**extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env.pop(PAUSE_ENV, None)
    env.pop(PAUSE_STEP_ENV, None)
    return {**env, **extra}


def _cli(recipe_path: Path, backend: str) -> list[str]:
    return [sys.executable, "-m", "cli", "train", str(recipe_path), "--backend", backend, "--no-progress"]


def _wait_for_paused_write(ckpt_dir: Path, proc: subprocess.Popen, timeout: float = 120.0) -> Path:
    """The temporary file of the step-20 save, once it stopped growing (the hook sleeps)."""
    deadline = time.monotonic() + timeout
    last = (None, -1)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early:\n{proc.stderr.read()}")
        temps = sorted(ckpt_dir.glob(".ckpt_00000020.safetensors.*")) if ckpt_dir.is_dir() else []
        if temps:
            size = temps[0].stat().st_size
            if size > 0 and last == (temps[0], size):
                return temps[0]
            last = (temps[0], size)
        time.sleep(0.25)
    raise AssertionError("the checkpoint write never paused")


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_during_checkpoint_write_then_resume_is_exact(manifest, tmp_path, backend):
    if backend == "torch":
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the subprocesses run with OMP_NUM_THREADS=1
    try:
        straight = make_trainer(TrainSpec.from_dict(_recipe(manifest, tmp_path / "straight")), backend)
        straight.run()
    finally:
        if backend == "torch":
            torch.set_num_threads(threads)

    out = tmp_path / "killed"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_recipe(manifest, out)))
    ckpts = out / "checkpoints"
    proc = subprocess.Popen(_cli(path, backend), cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(**{PAUSE_ENV: "120", PAUSE_STEP_ENV: "20"}))
    try:
        temp = _wait_for_paused_write(ckpts, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # The write was cut off: step 20 never appeared, step 10 is intact, a temp file is left.
    assert [s for s, _ in CheckpointManager(ckpts).list()] == [10]
    assert temp.exists()
    # A kill inside the metrics log's atomic rewrite (at resume) would leave its temp file too.
    (out / ".metrics.jsonl.k9x_2ab7.jsonl").write_text('{"step": 1}\n')
    arrays, meta, state = CheckpointManager.load(ckpts / "ckpt_00000010.safetensors")
    assert state["step"] == 10 and meta["format"] == backend and "model.in_proj.weight" in arrays

    done = subprocess.run(_cli(path, backend), cwd=tmp_path, text=True, capture_output=True,
                          env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "removed an interrupted checkpoint write" in done.stderr
    assert "resumed from" in done.stderr and "ckpt_00000010" in done.stderr
    assert not list(ckpts.glob(".ckpt_*"))
    hidden = [p.name for d in (out, ckpts) for p in d.iterdir() if p.name.startswith(".")]
    assert hidden == [], f"temporary files left after resume: {hidden}"

    a, _, sa = CheckpointManager.load(tmp_path / "straight" / "checkpoints" / "ckpt_00000020.safetensors")
    b, _, sb = CheckpointManager.load(ckpts / "ckpt_00000020.safetensors")
    assert set(a) == set(b)
    assert any(k.startswith("ema.") for k in a) and any(k.startswith("optim.") for k in a)
    # State is not a parameter: `_`-prefixed attributes (RoPE tables, caches) stay out.
    assert not any(part.startswith("_") for k in a for part in k.split("."))
    if backend == "mlx":
        import mlx.core as mx

        rope = straight.model.transformer.layers[0].self_attn.rope
        assert isinstance(getattr(rope, "_periods", None), mx.array)  # an array, yet not saved
    diff = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)
    assert diff <= 1e-6, f"resume differs from the straight run by {diff}"
    assert sa["np_rng"] == sb["np_rng"] and sa["position"] == sb["position"]
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 21))  # the log reads like one straight run


def test_rotation_keeps_last_n_and_skips_unreadable_files(manifest, tmp_path):
    spec = TrainSpec.from_dict({**_recipe(manifest, tmp_path), "steps": 8,
                                "checkpoint": {"every": 2, "keep_last": 2}})
    make_trainer(spec, "mlx").run()
    mgr = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    assert [s for s, _ in mgr.list()] == [6, 8]
    (tmp_path / "checkpoints" / "ckpt_00000010.safetensors").write_bytes(b"\0" * 64)  # not ours
    path, _, _, state = mgr.load_latest()
    assert path.name == "ckpt_00000008.safetensors" and state["step"] == 8
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        mgr.load(tmp_path / "checkpoints" / "ckpt_00000010.safetensors")


def test_resume_refuses_the_other_framework_and_another_task(manifest, tmp_path):
    pytest.importorskip("torch")
    spec = TrainSpec.from_dict({**_recipe(manifest, tmp_path), "steps": 2})
    make_trainer(spec, "mlx").run()
    with pytest.raises(CheckpointError, match="written by the mlx trainer; resume it with --backend mlx"):
        make_trainer(spec, "torch").run()
    gan = TrainSpec.from_dict({**_recipe(manifest, tmp_path), "steps": 4, "task": "mel_denoise_gan",
                               "model": {}})
    with pytest.raises(CheckpointError, match="is a 'mel_denoise' checkpoint"):
        make_trainer(gan, "mlx").run()
