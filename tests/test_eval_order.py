"""CPU-only Linux installs get a breadth-first MLX evaluation order from mlx_speech.accelerate()
(mlx_speech._evalorder), unless the user set MLX_BFS_MAX_WIDTH; elsewhere the variable is left alone."""

import os
import subprocess
import sys

import pytest

from mlx_speech import _evalorder

# Tests the Linux-CPU acceleration itself: nothing to test when the suite runs on a GPU.
pytestmark = pytest.mark.cpu_only

PROBE = "import os, mlx_speech; mlx_speech.accelerate(); print(os.environ.get('MLX_BFS_MAX_WIDTH'))"


def _probe(**env_over) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLX_BFS_MAX_WIDTH"}
    env.update(env_over)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_accelerate_sets_breadth_first_only_on_cpu_only_linux():
    cpu_only = (sys.platform.startswith("linux") and _evalorder._installed("mlx-cpu")
                and not _evalorder._installed("mlx-cuda"))
    assert _probe() == (str(_evalorder.WIDTH) if cpu_only else "None")


def test_a_users_setting_wins():
    assert _probe(MLX_BFS_MAX_WIDTH="7") == "7"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only setting")
def test_not_set_when_a_gpu_backend_is_installed(monkeypatch):
    monkeypatch.delenv("MLX_BFS_MAX_WIDTH", raising=False)
    monkeypatch.setattr(_evalorder, "_installed", lambda dist: True)  # mlx-cpu and mlx-cuda
    assert _evalorder.ensure() is None
    monkeypatch.setattr(_evalorder, "_installed", lambda dist: dist == "mlx-cpu")
    assert _evalorder.ensure() == str(_evalorder.WIDTH)
