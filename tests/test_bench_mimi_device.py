"""``bench/mimi.py --device gpu`` on a machine without an MLX GPU: one line, exit 2, before any
weights are written (issue 19). Where a GPU exists the bench itself is the check."""

import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(mx.is_available(mx.gpu), reason="this MLX has a GPU: the bench runs there")
def test_gpu_bench_without_gpu_is_one_line_and_exit_2():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "mimi.py"), "--device", "gpu"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no GPU device" in lines[0]
