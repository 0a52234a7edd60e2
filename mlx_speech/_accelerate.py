"""The one switch for the Linux-CPU accelerations of MLX: :func:`accelerate`.

Importing ``mlx_speech`` changes nothing in the process. What used to happen at import now
happens here, and only when asked for (the CLI, :func:`mlx_speech.load` and the bench scripts
ask; a library user calls ``mlx_speech.accelerate()`` first thing):

- a private OpenBLAS (and, on AVX2 CPUs, our few-row ``cblas_sgemm`` in front of it) for MLX's
  CPU matmuls (:mod:`mlx_speech._blas`). It can only take effect *before* ``mlx.core`` is first
  imported: the dynamic loader binds libmlx's BLAS at that moment. Called later, it reports
  ``reference`` with the reason and leaves MLX's own BLAS in place;
- vector-ISA flags for the C++ kernels MLX compiles on the CPU, through a ``g++`` wrapper first
  on ``PATH`` (:mod:`mlx_speech._jit`); it applies to kernels built after the call;
- a breadth-first evaluation order (``MLX_BFS_MAX_WIDTH``, :mod:`mlx_speech._evalorder`), read
  by MLX at its first evaluation, so it applies only when set before one.

None of it runs on macOS (MLX uses Accelerate and Metal there) or where MLX has a GPU backend
(``mlx-cuda`` installed): GPU code must never rely on a CPU-only trick. Each part keeps its
opt-out (``MLX_SPEECH_BLAS=reference``, ``MLX_SPEECH_SGEMM=openblas``,
``MLX_SPEECH_JIT_FLAGS=off``, a user-set ``MLX_BFS_MAX_WIDTH``); ``MLX_SPEECH_ACCELERATE=off``
turns the whole call into a no-op. The call is idempotent and never raises.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from mlx_speech._evalorder import _installed  # nothing there runs at import

_STATE: dict[str, Any] = {}


def _not_applicable() -> str | None:
    """Why the accelerations do not apply here, or None when they do."""
    if os.environ.get("MLX_SPEECH_ACCELERATE", "").lower() in {"off", "0", "none", "no"}:
        return "disabled by MLX_SPEECH_ACCELERATE"
    if not sys.platform.startswith("linux"):
        return f"{sys.platform}: MLX's own backend is used as it is"
    if _installed("mlx-cuda"):
        return "MLX has a GPU backend (mlx-cuda): CPU-only accelerations stay off"
    return None


def accelerate() -> dict[str, Any]:
    """Switch on the Linux-CPU accelerations (see the module docstring); returns :func:`status`.

    Call it before ``import mlx.core`` for the BLAS part to take effect. Safe to call again.
    """
    if _STATE:
        return status()
    reason = _not_applicable()
    if reason is not None:
        _STATE.update(applied=False, detail=reason)
        return status()
    from mlx_speech import _blas, _evalorder, _jit  # noqa: PLC0415

    _blas.ensure()  # first: it must run before mlx.core is loaded
    _jit.ensure()
    _evalorder.ensure()
    _STATE.update(applied=True, detail="Linux CPU: see blas, cpu_kernels, mlx_bfs_max_width")
    return status()


def status() -> dict[str, Any]:
    """Whether :func:`accelerate` ran in this process and what each part does."""
    if not _STATE:
        return {"applied": False, "detail": "mlx_speech.accelerate() was not called"}
    out = dict(_STATE)
    if out["applied"]:
        from mlx_speech import _blas, _evalorder, _jit  # noqa: PLC0415

        out.update(blas=_blas.status()["backend"], cpu_kernels=_jit.status()["mode"],
                   mlx_bfs_max_width=_evalorder.status())
    return out
