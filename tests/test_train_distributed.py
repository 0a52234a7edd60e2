"""Data parallel on the real launchers: 2 ranks of ``mlx.launch --backend ring`` and of
``torchrun`` (gloo) on localhost end with the same weights as 1 process on the combined batch."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.train.checkpoint import CheckpointManager
from mlx_speech.train.monitor import read_metrics


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=12, seconds=(0.5, 1.0)))


def _recipe(manifest: str, out: Path) -> dict:
    # No dropout (its masks depend on the rank's rows); noise, SpecAugment and crops are drawn
    # per global row and so match the single process exactly.
    # The GAN task exercises both optimisers (two DDP modules in torch) and micro-batches.
    return {"task": "mel_denoise_gan", "steps": 6, "out_dir": str(out), "seed": 1, "grad_accum": 2,
            "model": {"generator": {"dim": 32, "num_layers": 1, "num_heads": 4, "ffn_dim": 64,
                                    "spec_augment": {"time_masks": 1, "time_width": 6}},
                      "disc_dim": 16},
            "data": {"sources": [{"kind": "manifest", "path": manifest}], "batch_size": 8,
                     "crop_seconds": 0.4, "val_fraction": 0.25, "prefetch": 2, "workers": 1},
            "optimizer": {"lr": 3e-3, "warmup_steps": 1, "eps": 1e-4}, "disc_optimizer": {"lr": 1e-3},
            "ema": {"decay": 0.9},
            "checkpoint": {"every": 3}, "monitor": {"progress": False, "log_every": 1}}


def _free_ports(n: int) -> int:
    """A base port with ``n`` consecutive free ports after it."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout}\n{out.stderr}"
    return out


def _compare(tmp_path: Path, single: str, multi: str) -> float:
    a, _, sa = CheckpointManager.load(tmp_path / single / "checkpoints" / "ckpt_00000006.safetensors")
    b, _, sb = CheckpointManager.load(tmp_path / multi / "checkpoints" / "ckpt_00000006.safetensors")
    assert sb["world"] == 2 and sa["world"] == 1 and set(a) == set(b)
    assert any(k.startswith("doptim.") for k in a)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a if k.startswith(("model.", "ema.", "optim", "doptim")))


def _launch_and_check(tmp_path, manifest, backend, launcher):
    for name in ("single", "multi"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(_recipe(manifest, tmp_path / name)))
    train = ["-m", "cli", "train", "--backend", backend, "--no-progress"]
    _run([sys.executable, *train, "single.yaml"], tmp_path)
    out = _run([*launcher, *train, "multi.yaml"], tmp_path)
    diff = _compare(tmp_path, "single", "multi")
    assert diff < 2e-5, f"{backend}: 2 ranks differ from 1 process by {diff}"
    one = [r for r in read_metrics(tmp_path / "single" / "metrics.jsonl") if "val_loss" in r]
    two = [r for r in read_metrics(tmp_path / "multi" / "metrics.jsonl") if "val_loss" in r]
    assert two[-1]["val_items"] == one[-1]["val_items"] == 3  # sharded validation covers all items
    assert two[-1]["val_loss"] == pytest.approx(one[-1]["val_loss"], rel=1e-4)
    # Rank 0 alone writes checkpoints and logs: one summary, one line per step.
    assert out.stdout.count("skipped_steps") == 1
    steps = [r["step"] for r in read_metrics(tmp_path / "multi" / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 7))


def test_mlx_launch_ring_two_ranks_match_one_process(manifest, tmp_path):
    launch = shutil.which("mlx.launch") or str(Path(sys.executable).with_name("mlx.launch"))
    if not Path(launch).exists():
        pytest.skip("mlx.launch not found (ships with mlx)")
    port = _free_ports(4)
    cmd = [launch, "--backend", "ring", "--hosts", "127.0.0.1", "-n", "2",
           "--starting-port", str(port), "--", sys.executable]
    _launch_and_check(tmp_path, manifest, "mlx", cmd)


def test_torchrun_ddp_two_ranks_match_one_process(manifest, tmp_path):
    pytest.importorskip("torch")
    port = _free_ports(2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port)]
    _launch_and_check(tmp_path, manifest, "torch", cmd)
