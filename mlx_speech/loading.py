"""The one way in for MLX: :func:`load` turns a local path into a built MLX model with its
weights. What a path is (our tagged files, folders, each family's upstream formats) is decided
by :func:`mlx_speech.weights.find.find`, shared with :func:`torch_ref.load`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.registry import resolve
from mlx_speech.weights.find import apply_options, find


def load(path: str | Path, *, family: str | None = None, **options: Any) -> Any:
    """An MLX model (eval mode) with the weights at ``path``; see the module docstring.

    ``options`` go to the family's loader (e.g. ``num_codebooks`` for codecs). Calls
    :func:`mlx_speech.accelerate` first.
    """
    import mlx_speech  # noqa: PLC0415

    mlx_speech.accelerate()
    how, what = find(path, family=family)
    if how == "format":
        return resolve(what.mlx)(Path(path).expanduser(), **options)
    from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

    model, _ = load_mlx_model(what[0])
    model.eval()
    return apply_options(model, dict(options), what[0])
