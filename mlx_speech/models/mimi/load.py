"""Mimi weights from any supported file into MLX (:func:`load_mimi`), and our tagged file
back out (:func:`save_mimi`). The formats themselves are read in :mod:`.formats`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.models.mimi.formats import (MODEL_NAME, _with_codebooks, detect_format,
                                            read_upstream_state, resolve_mimi_path)
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.weights.mlx import load_mlx_model, load_torch_state_into_mlx, save_tagged


def load_mimi(path: str | Path, *, num_codebooks: int | None = None,
              spec: MimiSpec | None = None) -> Any:
    """An MLX :class:`~mlx_speech.models.mimi.model.MimiModel` (eval mode) with the weights at ``path``."""
    from mlx_speech.models.mimi.model import build_mimi  # noqa: PLC0415

    if detect_format(path) == "mlx-speech":
        model, tagged = load_mlx_model(resolve_mimi_path(path)[0])
        model.set_num_codebooks(_with_codebooks(tagged, num_codebooks).num_codebooks)
    else:
        state, spec, _ = read_upstream_state(path, num_codebooks=num_codebooks, spec=spec)
        model = load_torch_state_into_mlx(build_mimi(spec), state, where=str(path))
    model.eval()
    return model


def save_mimi(path: str | Path, model: Any) -> None:
    """Save an MLX or torch_ref Mimi as a tagged safetensors file (``model=mimi``)."""
    save_tagged(path, model, model=MODEL_NAME)
