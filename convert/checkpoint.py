"""File-to-file conversion of tagged checkpoints between the MLX and torch_ref layouts
(``mlx-speech convert to-torch / to-mlx``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.registry import get_model
from mlx_speech.weights.checkpoint import FORMATS, convert_arrays, load_checkpoint, save_checkpoint
from mlx_speech.weights.core import param_kinds


def kinds_for(model: str, spec: dict[str, Any]) -> dict[str, str]:
    """Declared parameter kinds of a registered model, read from a freshly built MLX module."""
    return param_kinds(get_model(model).build_mlx(spec))


def convert_file(src: str | Path, dst: str | Path, *, target: str) -> dict[str, Any]:
    """Convert a tagged checkpoint to ``target`` layout ("mlx" | "torch"); returns its metadata."""
    if target not in FORMATS:
        raise CheckpointError(f"target must be one of {FORMATS}, got {target!r}")
    if Path(src).resolve() == Path(dst).resolve():
        raise CheckpointError("source and destination are the same file; choose another output")
    arrays, meta = load_checkpoint(src)
    spec = json.loads(meta["spec"])
    out = convert_arrays(arrays, kinds_for(meta["model"], spec), source=meta["format"], target=target)
    extra = {k: v for k, v in meta.items() if k not in {"format", "model", "spec", "mlx_speech"}}
    save_checkpoint(dst, out, fmt=target, model=meta["model"], spec=spec, extra=extra)
    return {**meta, "format": target, "num_tensors": len(out)}
