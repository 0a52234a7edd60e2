"""Breadth-first evaluation order for MLX on CPU-only Linux installs.

Why: ``mx.eval`` turns the graph into a tape that is breadth-first from the outputs but goes
depth-first whenever more than ``MLX_BFS_MAX_WIDTH`` (MLX's default: 20) nodes are queued, and
the calling thread may run at most 10 operations ahead of the streams. Work spread over several
CPU streams (the trainer's ``cpu_shards``) then reaches them mostly one stream at a time: the
tape holds a long stretch of one shard's graph before the next shard's, and the other stream
idles. With a width larger than any graph the tape interleaves the shards level by level and
the streams run side by side; at width 20 the same work was slower than one stream
(docs/performance.md, "Evaluation order").

:func:`ensure` sets the variable only where MLX has no GPU backend (Linux with ``mlx-cpu`` and
without ``mlx-cuda``) and only when it is unset (set it yourself to override). MLX reads it once,
at the first evaluation, so it must run before any: ``mlx_speech.accelerate()`` calls it.
Single-stream work was measured neutral in peak memory and time (docs/performance.md,
"Evaluation order"). Nothing here imports mlx; it never raises.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

WIDTH = 1 << 20  # wider than any graph we build: plain breadth-first


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def ensure() -> str | None:
    """Set ``MLX_BFS_MAX_WIDTH`` for CPU-only MLX on Linux; returns the value in effect."""
    try:
        if (sys.platform.startswith("linux") and "MLX_BFS_MAX_WIDTH" not in os.environ
                and _installed("mlx-cpu") and not _installed("mlx-cuda")):
            os.environ["MLX_BFS_MAX_WIDTH"] = str(WIDTH)
    except Exception:  # noqa: BLE001 - an import-time helper must not break the import
        pass
    return status()


def status() -> str | None:
    """``MLX_BFS_MAX_WIDTH`` as this process sees it (None: MLX's default, 20)."""
    return os.environ.get("MLX_BFS_MAX_WIDTH")
