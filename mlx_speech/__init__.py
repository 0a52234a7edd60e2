"""mlx-speech: Apple-Silicon-first speech models in MLX, with a PyTorch mirror (torch_ref).

Importing this package does nothing to the process: it imports neither mlx nor torch, edits no
environment variable, starts no process, compiles nothing and loads no shared library (a
subprocess test checks each). Two entry points are defined here and import their machinery
only when called:

- :func:`accelerate`: the Linux-CPU accelerations for MLX (private OpenBLAS, few-row sgemm,
  kernel flags, breadth-first evaluation); a no-op on macOS and on GPU backends.
- :func:`load`: any supported checkpoint (ours, HF-style folders, upstream formats) as a built
  MLX model with its weights.
"""

from __future__ import annotations

from typing import Any

from mlx_speech._version import __version__

__all__ = ["__version__", "accelerate", "load"]


def accelerate() -> dict[str, Any]:
    """Switch on the Linux-CPU accelerations for MLX (see :mod:`mlx_speech._accelerate`).

    Call it before ``import mlx.core`` so the BLAS part can take effect; idempotent, never
    raises, and a no-op on macOS or where MLX has a GPU backend.
    """
    from mlx_speech._accelerate import accelerate as _accelerate  # noqa: PLC0415

    return _accelerate()


def load(path: Any, *, family: str | None = None, **options: Any) -> Any:
    """Any supported checkpoint at ``path`` as an MLX model (see :mod:`mlx_speech.loading`):
    our tagged files, HF-style folders and each family's upstream formats."""
    from mlx_speech.loading import load as _load  # noqa: PLC0415

    return _load(path, family=family, **options)
