"""Vector-ISA flags for the C++ kernels MLX compiles on Linux x86-64.

Why: on the CPU, ``mx.compile`` writes every fused element-wise kernel as C++ and builds it with
``g++ -std=c++17 -O3 -Wall -fPIC -shared`` (the command is built into ``libmlx``). MLX appends
``-mavx2 -mfma -mf16c`` only when ``libmlx`` itself was built for AVX2, and the ``mlx[cpu]``
wheels on PyPI are built for baseline x86-64. Their kernels therefore get SSE2 (4 lanes), a
scalar ``sqrt`` (the libm call may set ``errno``), and a kernel with several outputs is not
vectorised at all (gcc versions a loop for at most 10 possibly-aliasing pointer pairs). The
fused AdamW update (3 outputs, 14 inputs) ran as a scalar loop; the flags below vectorise it
(docs/performance.md, "CPU kernels and JIT flags").

How: ``libmlx`` runs ``g++`` through the shell, so it is looked up on ``PATH``. :func:`ensure`
writes a small ``g++`` wrapper into the user cache and puts its folder first on this process's
``PATH``. For a command that builds an MLX kernel (``-shared`` and a ``.cpp`` under
``.../mlx/<version>/cpu/``) the wrapper appends :data:`FLAGS`; every other command goes to the
real compiler unchanged (child processes inherit ``PATH``, so they see the same wrapper).

Flags: ``-mavx2 -mfma -mf16c`` (those of MLX's own AVX2 builds), ``-fno-math-errno`` (a
vector ``sqrt``), ``-ffp-contract=off`` (no multiply-add contraction, so every kernel computes
bit for bit what the baseline build computes; a test checks this) and a larger alias-check
budget. Only with Linux on x86-64, a CPU reporting ``avx2 fma f16c`` and a ``g++`` on ``PATH``.
Kernels already in MLX's kernel cache (``$TMPDIR/mlx/<version>/cpu``) from runs without the
wrapper are reused as they are (same results, baseline speed); deleting that folder rebuilds
them. Set ``MLX_SPEECH_JIT_FLAGS=off`` to opt out. Nothing here imports mlx; it never raises.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from mlx_speech._cache import cache_root

FLAGS = ("-mavx2", "-mfma", "-mf16c", "-fno-math-errno", "-ffp-contract=off",
         "--param", "vect-max-version-for-alias-checks=64")
_CPU_FLAGS = ("avx2", "fma", "f16c")
_STATE: dict[str, str | None] = {"mode": None, "detail": None, "wrapper": None}

_MARKER = "# Written by mlx_speech._jit"
_WRAPPER = """#!/bin/sh
# Written by mlx_speech._jit: vector-ISA flags for MLX's CPU kernel builds, nothing else.
kernel=0
shared=0
for a in "$@"; do
  case "$a" in
    -shared) shared=1 ;;
    */mlx/*/cpu/*.cpp) kernel=1 ;;
  esac
done
if [ "$kernel$shared" = 11 ]; then
  exec {real} "$@" {flags}
fi
exec {real} "$@"
"""


def _cache_dir() -> Path:
    return cache_root() / "jit"


def _cpu_supports() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return all(f in have for f in _CPU_FLAGS)
    return False


def _ours(entry: str) -> bool:
    """Whether a ``PATH`` entry is a wrapper folder (this cache's or a parent process's)."""
    try:
        with open(Path(entry) / "g++", "rb") as f:
            return _MARKER.encode() in f.read(200)
    except OSError:
        return False


def _set_path(entries: list[str]) -> None:
    os.environ["PATH"] = os.pathsep.join(e for e in entries if e)


def _real_compiler() -> str | None:
    """``g++`` on ``PATH``, not counting wrapper folders (a child process inherits them)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not _ours(d)]
    return shutil.which("g++", path=os.pathsep.join(dirs))


def wrapper_text(real: str) -> str:
    """The wrapper script for the real compiler at ``real``."""
    return _WRAPPER.format(real=shlex.quote(real), flags=" ".join(shlex.quote(f) for f in FLAGS))


def _write_wrapper(real: str) -> Path:
    text = wrapper_text(real)
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    folder = _cache_dir() / key
    target = folder / "g++"
    if target.exists() and target.read_text() == text and os.access(target, os.X_OK):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".g++.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a concurrent import sees the old or the new file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder


def ensure() -> dict[str, str | None]:
    """Put the kernel-flag wrapper first on ``PATH`` where it applies. Safe to call repeatedly;
    never raises."""
    if _STATE["mode"] is not None:
        return dict(_STATE)
    try:  # a wrapper inherited from a parent process is dropped first, then added back if wanted
        _set_path([d for d in os.environ.get("PATH", "").split(os.pathsep) if not _ours(d)])
    except Exception as exc:  # noqa: BLE001
        _STATE.update(mode="baseline", detail=f"kernel flags unavailable: {exc}")
        return dict(_STATE)
    if os.environ.get("MLX_SPEECH_JIT_FLAGS", "").lower() in {"off", "0", "none", "baseline"}:
        _STATE.update(mode="baseline", detail="disabled by MLX_SPEECH_JIT_FLAGS")
        return dict(_STATE)
    if sys.platform != "linux" or platform.machine().lower() not in {"x86_64", "amd64"}:
        _STATE.update(mode="native", detail="not Linux x86-64: MLX's own kernel build is used")
        return dict(_STATE)
    if not _cpu_supports():
        _STATE.update(mode="baseline", detail="the CPU does not report avx2, fma and f16c")
        return dict(_STATE)
    try:
        real = _real_compiler()
        if real is None:
            _STATE.update(mode="baseline", detail="no g++ on PATH (MLX compiles no CPU kernels)")
            return dict(_STATE)
        folder = _write_wrapper(real)
        _set_path([str(folder), *os.environ.get("PATH", "").split(os.pathsep)])
        _STATE.update(mode="avx2", wrapper=str(folder / "g++"),
                      detail=f"MLX CPU kernels built by {real} with {' '.join(FLAGS)}")
    except Exception as exc:  # noqa: BLE001 - slower kernels must never stop the import
        _STATE.update(mode="baseline", detail=f"kernel flags unavailable: {exc}")
    return dict(_STATE)


def status() -> dict[str, str | None]:
    """How MLX's CPU kernels are built in this process."""
    return dict(_STATE)
