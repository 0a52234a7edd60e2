"""A wheel install finds its shipped recipes: build the wheel, install it into a fresh venv
(system site-packages for mlx / torch / numpy, the wheel itself with ``--no-deps``), and run
``mlx-speech train mimi9`` from an empty directory. The default recipe must come from the
installed package (``mlx_speech/configs/mimi9_distill.yaml``): the run gets as far as the
recipe's own model path, a one-line error naming it, exit code 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ANYWHERE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                   ".pytest_cache")
_TOP = {"runs", "data", ".venv", "out"}  # a checkout's own folders, not packages


def _skip(folder: str, names: list[str]) -> set[str]:
    """What the copy leaves out: build litter anywhere, run and data folders at the top only
    (``mlx_speech/data`` is a package the wheel must hold)."""
    top = {n for n in names if n in _TOP} if Path(folder) == ROOT else set()
    return set(_ANYWHERE(folder, names)) | top


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_install_reads_its_default_recipe(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT, src, ignore=_skip)
    wheels = tmp_path / "wheels"
    res = _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                "-w", str(wheels)], src, env)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(wheels.glob("mlx_speech-*.whl"))
    venv = tmp_path / "venv"
    res = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, env)
    assert res.returncode == 0, res.stderr[-2000:]
    py, exe = venv / "bin" / "python", venv / "bin" / "mlx-speech"
    res = _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, env)
    assert res.returncode == 0, res.stderr[-2000:]
    shutil.rmtree(src)  # nothing of the source tree is left to import from
    work = tmp_path / "cwd"
    work.mkdir()
    res = _run([str(py), "-c", "import mlx_speech, cli; print(mlx_speech.__file__); print(cli.__file__)"],
               work, env)
    assert res.returncode == 0, res.stderr[-2000:]
    for line in res.stdout.split():
        assert Path(line).resolve().is_relative_to(venv.resolve()), res.stdout  # the wheel, not a checkout
    shipped = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" \
        / "mlx_speech" / "configs" / "mimi9_distill.yaml"
    assert shipped.is_file()
    res = _run([str(exe), "train", "mimi9", "--no-progress"], work, env)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    # checkpoints/mimi9 is the recipe's model.weights: the shipped recipe was read
    assert lines[0].startswith("error: model.weights: surgered Mimi9 checkpoint not found: checkpoints/mimi9"), \
        lines[0]
    assert not (work / "runs").exists()
