"""Mimi weights from any supported file into torch_ref (the formats are read, framework-free,
by :mod:`mlx_speech.models.mimi.formats`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.models.mimi.formats import (_with_codebooks, detect_format, read_upstream_state,
                                            resolve_mimi_path)
from mlx_speech.models.mimi.spec import MimiSpec
from torch_ref.weights import load_torch_model, load_torch_state


def load_mimi_torch(path: str | Path, *, num_codebooks: int | None = None,
                    spec: MimiSpec | None = None) -> Any:
    """A torch_ref ``MimiModel`` (eval mode) with the weights at ``path``."""
    from torch_ref.models.mimi.model import build_mimi  # noqa: PLC0415

    if detect_format(path) == "mlx-speech":
        model, tagged = load_torch_model(resolve_mimi_path(path)[0])
        model.set_num_codebooks(_with_codebooks(tagged, num_codebooks).num_codebooks)
    else:
        state, spec, _ = read_upstream_state(path, num_codebooks=num_codebooks, spec=spec)
        model = load_torch_state(build_mimi(spec), state, where=str(path))
    model.eval()
    return model
