""":func:`load`: any supported checkpoint as a torch_ref model; the same resolution as
:func:`mlx_speech.load` (:func:`mlx_speech.weights.find.find`), built in torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.weights.find import apply_options, find
from mlx_speech.registry import resolve


def load(path: str | Path, *, family: str | None = None, **options: Any) -> Any:
    """A torch_ref model (eval mode) with the weights at ``path``."""
    how, what = find(path, family=family)
    if how == "format":
        if what.torch is None:
            raise CheckpointError(f"{path}: {what.name} weights have no torch_ref twin "
                                  "(use the upstream package on the torch side)")
        return resolve(what.torch)(Path(path).expanduser(), **options)
    from torch_ref.weights import load_torch_model  # noqa: PLC0415

    model, _ = load_torch_model(what[0])
    model.eval()
    return apply_options(model, dict(options), what[0])
