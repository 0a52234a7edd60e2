"""File-to-file conversion of tagged checkpoints between the MLX and torch_ref layouts
(``mlx-speech convert to-torch / to-mlx``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError
from mlx_speech.registry import get_model
from mlx_speech.weights.checkpoint import FORMATS, convert_arrays, load_checkpoint, save_checkpoint
from mlx_speech.weights.core import flatten_tree, param_kinds
from mlx_speech.weights.strict import check_state, short


def kinds_for(model: str, spec: dict[str, Any]) -> dict[str, str]:
    """Declared parameter kinds of a registered model, read from a freshly built MLX module."""
    return param_kinds(get_model(model).build_mlx(spec))


def convert_file(src: str | Path, dst: str | Path, *, target: str) -> dict[str, Any]:
    """Convert a tagged checkpoint to ``target`` layout ("mlx" | "torch"); returns its metadata.

    The input is checked against the model its tag names before anything is written: every
    tensor present with the model's shape (in its layout) and a floating-point dtype, so a
    tampered file is refused here rather than written out as a "converted" checkpoint.
    """
    if target not in FORMATS:
        raise CheckpointError(f"target must be one of {FORMATS}, got {target!r}")
    if Path(src).resolve() == Path(dst).resolve():
        raise CheckpointError("source and destination are the same file; choose another output")
    arrays, meta = load_checkpoint(src)
    spec = json.loads(meta["spec"])
    module = get_model(meta["model"]).build_mlx(spec)
    kinds = param_kinds(module)
    where = f"{src} ({meta['model']}, {meta['format']} layout)"
    not_float = [f"{k} ({v.dtype})" for k, v in arrays.items() if not np.issubdtype(v.dtype, np.floating)]
    if not_float:
        raise CheckpointError(f"{where}: weights must be floating point: {short(not_float)}")
    try:
        as_mlx = convert_arrays(arrays, kinds, source=meta["format"], target="mlx", where=where)
    except ValueError as exc:  # a tensor whose rank does not fit its declared layout
        raise CheckpointError(f"{where}: {exc}") from None
    check_state(as_mlx, flatten_tree(module.parameters()), where=where, what=meta["model"])
    out = as_mlx if target == "mlx" else convert_arrays(arrays, kinds, source=meta["format"],
                                                        target=target, where=where)
    extra = {k: v for k, v in meta.items() if k not in {"format", "model", "spec", "mlx_speech"}}
    save_checkpoint(dst, out, fmt=target, model=meta["model"], spec=spec, extra=extra)
    return {**meta, "format": target, "num_tensors": len(out)}
