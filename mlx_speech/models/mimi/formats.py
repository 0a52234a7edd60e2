"""Load Mimi weights from a local path, whatever their format, into MLX or torch_ref.

Formats, recognised in this order (never by tensor shapes):

1. ours: a safetensors file tagged ``model=mimi`` (``format`` mlx or torch), written by
   :func:`save_mimi` / ``mlx_speech.weights.checkpoint``;
2. moshi: a safetensors (or torch pickle, ``{"model": state}`` or a bare state) whose keys start
   with ``encoder.model.`` (``mlx_speech/models/mimi/moshi.py``), e.g. the released
   ``tokenizer-e351c8d8-checkpoint125.safetensors``; the architecture is ``mimi_202407`` with
   the codebook counts read from the keys;
3. transformers: a directory holding ``config.json`` + ``model.safetensors``, or that
   ``model.safetensors`` itself with ``config.json`` beside it (``mlx_speech/models/mimi/hf.py``).

``num_codebooks`` sets how many codebooks ``encode`` uses by default (the weights always keep
all of them). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError
from mlx_speech.models.mimi.hf import (convert_hf_state, is_hf_state, read_hf_config,
                                       spec_from_hf_config)
from mlx_speech.models.mimi.moshi import convert_moshi_state, is_moshi_state, spec_from_moshi_state
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.weights.checkpoint import (_PICKLE_SUFFIXES, load_pickle_state, read_metadata,
                                           read_safetensors)

MODEL_NAME = "mimi"
FORMATS = ("mlx-speech", "moshi", "transformers")


def resolve_mimi_path(path: str | Path) -> tuple[Path, Path | None]:
    """``(weights file, config.json or None)`` for a file or a transformers directory."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"Mimi weights not found: {p}")
    if p.is_dir():
        weights = p / "model.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{p} is a directory without model.safetensors "
                                  "(expected a transformers Mimi folder)")
        config = p / "config.json"
        return weights, config if config.is_file() else None
    config = p.parent / "config.json"
    return p, config if config.is_file() else None


def detect_format(path: str | Path) -> str:
    """``"mlx-speech"``, ``"moshi"`` or ``"transformers"``; CheckpointError otherwise."""
    weights, _ = resolve_mimi_path(path)
    if weights.suffix in _PICKLE_SUFFIXES:
        return "moshi"
    meta = read_metadata(weights)
    if "model" in meta and "format" in meta:
        if meta["model"] != MODEL_NAME:
            raise CheckpointError(f"{weights}: an mlx-speech {meta['model']!r} checkpoint, not Mimi")
        return "mlx-speech"
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(weights), framework="np") as fh:
        keys = list(fh.keys())
    if is_moshi_state(keys):
        return "moshi"
    if is_hf_state(keys):
        return "transformers"
    raise CheckpointError(f"{weights}: not a Mimi checkpoint (no encoder.model.* or "
                          f"encoder.layers.* keys; first keys: {', '.join(sorted(keys)[:3])})")


def read_upstream_state(path: str | Path, *, num_codebooks: int | None = None,
                        spec: MimiSpec | None = None) -> tuple[dict[str, np.ndarray], MimiSpec, str]:
    """``(torch_ref state dict, spec, format)`` of moshi / transformers weights at ``path``.

    ``spec`` overrides the architecture (default: moshi's ``mimi_202407`` with the codebook
    counts of the file / the transformers ``config.json``); ``num_codebooks`` overrides the
    default codebook count.
    """
    fmt = detect_format(path)
    weights, config = resolve_mimi_path(path)
    if fmt == "mlx-speech":
        raise CheckpointError(f"{weights}: already an mlx-speech checkpoint; use load_mimi")
    if fmt == "moshi":
        raw = read_moshi_raw(weights)
        spec = spec or spec_from_moshi_state(raw, num_codebooks=num_codebooks)
        state = convert_moshi_state(raw, spec, where=f"{weights} (moshi format)")
    else:
        if spec is None:
            if config is None:
                raise CheckpointError(f"{weights}: transformers Mimi weights need config.json "
                                      "beside them")
            spec = spec_from_hf_config(read_hf_config(config), num_codebooks=num_codebooks)
        state = convert_hf_state(read_safetensors(weights), spec,
                                 where=f"{weights} (transformers format)")
    return state, _with_codebooks(spec, num_codebooks), fmt


def _with_codebooks(spec: MimiSpec, num_codebooks: int | None) -> MimiSpec:
    if num_codebooks is None or num_codebooks == spec.num_codebooks:
        return spec
    return spec.replace(num_codebooks=num_codebooks)


def read_moshi_raw(weights: Path) -> dict[str, Any]:
    if weights.suffix in _PICKLE_SUFFIXES:
        obj = load_pickle_state(weights)
        if isinstance(obj.get("model"), dict):
            obj = obj["model"]
        if not is_moshi_state(obj):
            raise CheckpointError(f"{weights}: not a moshi Mimi state dict")
        return obj
    return read_safetensors(weights)


def recognise(path: str | Path) -> bool:
    """True for Mimi weights in any supported format (used by :func:`mlx_speech.load`); a
    transformers folder must say ``model_type: mimi`` (other encoders share its key names)."""
    try:
        fmt = detect_format(path)
        if fmt == "transformers":
            _, config = resolve_mimi_path(path)
            return config is not None and read_hf_config(config).get("model_type") == "mimi"
        return fmt in FORMATS
    except CheckpointError:
        return False
