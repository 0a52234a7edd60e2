"""``import mlx_speech`` / ``torch_ref`` / ``convert`` leave the process as it was: no
environment edit (PATH included), no child process, nothing compiled or written, no new shared
library mapped. The accelerations happen only in ``mlx_speech.accelerate()``."""

import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, os, subprocess, sys

def maps():
    try:
        with open("/proc/self/maps") as f:
            return {ln.split()[-1] for ln in f if ".so" in ln}
    except OSError:
        return set()

spawned = []
def refuse(name):
    def call(*a, **k):
        spawned.append(name)
        raise RuntimeError(f"{name} called during import")
    return call
subprocess.Popen.__init__ = refuse("subprocess.Popen")
for name in ("system", "fork", "posix_spawn", "posix_spawnp", "execv", "execve"):
    if hasattr(os, name):
        setattr(os, name, refuse("os." + name))

env_before, maps_before = dict(os.environ), maps()
import mlx_speech, torch_ref, convert  # noqa
maps_after = maps()
print(json.dumps({
    "env_changed": sorted(k for k in set(env_before) | set(os.environ)
                          if env_before.get(k) != os.environ.get(k)),
    "new_libraries": sorted(maps_after - maps_before),
    "spawned": spawned,
    "heavy": [m for m in ("mlx", "mlx.core", "torch", "ctypes", "numpy") if m in sys.modules],
}))
"""


def _probe(tmp_path, **extra) -> dict:
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    cache.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLX_BFS_MAX_WIDTH"}
    env.update(MLX_SPEECH_CACHE=str(cache), TMPDIR=str(tmp), XDG_CACHE_HOME=str(cache), **extra)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["written"] = sorted(str(p) for p in (*cache.rglob("*"), *tmp.rglob("*")))
    return result


def test_importing_the_packages_changes_nothing(tmp_path):
    got = _probe(tmp_path)
    assert got == {"env_changed": [], "new_libraries": [], "spawned": [], "heavy": [],
                   "written": []}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the accelerations are Linux-only")
@pytest.mark.cpu_only  # accelerate() is a no-op with mlx-cuda
def test_accelerate_is_the_one_switch(tmp_path):
    """The same process changes only when asked, and asking twice changes nothing more."""
    code = ("import os, mlx_speech; before = dict(os.environ); a = mlx_speech.accelerate();"
            "mid = dict(os.environ); b = mlx_speech.accelerate();"
            "import json; print(json.dumps([a == b, mid == dict(os.environ), a['applied'],"
            " sorted(k for k in mid if before.get(k) != mid[k])]))")
    env = {**os.environ, "MLX_SPEECH_CACHE": str(tmp_path)}
    env.pop("MLX_BFS_MAX_WIDTH", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    same, stable, applied, changed = json.loads(out.stdout.strip().splitlines()[-1])
    assert same and stable
    from mlx_speech._accelerate import _installed

    if _installed("mlx-cuda"):
        assert not applied and changed == []
    else:
        assert applied and "MLX_BFS_MAX_WIDTH" in changed
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "MLX_SPEECH_ACCELERATE": "off"}, timeout=120)
    assert json.loads(off.stdout.strip().splitlines()[-1])[2:] == [False, []], off.stderr


def test_accelerate_stays_off_on_gpu_backends_and_macos(monkeypatch):
    from mlx_speech import _accelerate

    monkeypatch.delenv("MLX_SPEECH_ACCELERATE", raising=False)
    monkeypatch.setattr(_accelerate, "_installed", lambda dist: dist in {"mlx-cpu", "mlx-cuda"})
    monkeypatch.setattr(sys, "platform", "linux")
    assert "GPU backend" in _accelerate._not_applicable()
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "darwin" in _accelerate._not_applicable()
    monkeypatch.setattr(_accelerate, "_installed", lambda dist: dist == "mlx-cpu")
    monkeypatch.setattr(sys, "platform", "linux")
    assert _accelerate._not_applicable() is None
