"""DAC weights from any supported file into MLX (:func:`load_dac`), and our tagged file back out
(:func:`save_dac`). The formats themselves are read, framework-free, in :mod:`.formats`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.models.dac.formats import (MODEL_NAME, detect_format, read_upstream_state,
                                           tagged_path)
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.weights.mlx import load_mlx_model, load_torch_state_into_mlx, save_tagged


def load_dac(path: str | Path, *, num_codebooks: int | None = None,
             spec: DACSpec | None = None) -> Any:
    """An MLX :class:`~mlx_speech.models.dac.model.DACModel` (eval mode) with the weights at
    ``path``: our tagged file, Descript's ``.pth`` or a transformers folder.

    ``spec`` replaces the architecture an upstream file records (a tagged file carries its own,
    so ``spec`` is an error there); ``num_codebooks`` sets the default levels of ``encode``.
    Every path ends in the strict key and shape check before a tensor is copied.
    """
    from mlx_speech.models.dac.model import DACModel  # noqa: PLC0415

    if detect_format(path) == "mlx-speech":
        if spec is not None:
            raise CheckpointError(f"{path}: an mlx-speech DAC file records its own spec; "
                                  "spec= applies to upstream formats only")
        model, _ = load_mlx_model(tagged_path(path))
        if num_codebooks is not None:
            model.set_num_codebooks(num_codebooks)
    else:
        state, spec = read_upstream_state(path, num_codebooks=num_codebooks, spec=spec)
        model = load_torch_state_into_mlx(DACModel(spec), state, where=str(path))
    model.eval()
    return model


def save_dac(path: str | Path, model: Any) -> None:
    """Save an MLX or torch_ref DAC as our tagged safetensors file (``model=dac``), in its own
    framework's layout; either framework loads it back."""
    save_tagged(path, model, model=MODEL_NAME)
