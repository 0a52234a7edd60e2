"""torch_ref: the PyTorch mirror of mlx_speech.

Same sub-packages, file names, class names and attribute names as ``mlx_speech``, so state-dict
keys are identical. It imports only the framework-free parts of mlx_speech (specs, errors, numpy
DSP, registry, weights core, data) and never mlx (a test and an import-linter contract check
this). :func:`load` is the torch twin of :func:`mlx_speech.load`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load"]


def load(path: Any, *, family: str | None = None, **options: Any) -> Any:
    """Any supported checkpoint at ``path`` as a torch_ref model (see :mod:`torch_ref.loading`)."""
    from torch_ref.loading import load as _load  # noqa: PLC0415

    return _load(path, family=family, **options)
