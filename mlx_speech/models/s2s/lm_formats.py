"""What a moshi LM path is, and its state in our names (framework-free; shared by
:mod:`.lm_load` and ``torch_ref.models.s2s.lm_load``).

A moshi LM folder (``kyutai/moshiko-pytorch-bf16`` and its kind) holds ``model.safetensors``
(or the file its ``config.json`` names as ``moshi_name``) and ``config.json`` with the
``lm_kwargs`` (:meth:`MoshiLMSpec.from_moshi_config`). Accepted paths: that folder, or the
weights file itself with ``config.json`` beside it. Without a ``config.json`` the architecture is
moshi's legacy default, the released Moshi 7B (``moshiko``), as moshi's own loader assumes.

Recognised by key names, never by shapes: a text embedding, a text head and a temporal
transformer (:func:`~.moshi_keys.is_moshi_lm_state`); our own tagged files (``model`` in the
safetensors metadata) are left to the tagged loader. bfloat16 files are read without a
framework (``weights.checkpoint.read_safetensors``) and widened to float32. Torch pickles are
not read (the released LMs are safetensors). Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.s2s.lm_spec import MoshiLMSpec, moshiko
from mlx_speech.models.s2s.moshi_keys import convert_moshi_lm_state, is_moshi_lm_state
from mlx_speech.weights.checkpoint import _header, read_metadata, read_safetensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_NAME = "moshi_lm"  # the registered model: the tag of our own files
DTYPES = ("float32", "bfloat16", "float16")


def check_dtype(dtype: str | None, path: Any) -> str:
    """The compute dtype a loader was asked for (default float32); CheckpointError otherwise."""
    dtype = dtype or "float32"
    if dtype not in DTYPES:
        raise CheckpointError(f"{path}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def resolve(path: str | Path) -> tuple[Path, dict[str, Any] | None, Path | None]:
    """``(weights file, config or None, config path or None)`` of a folder or weights file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"moshi LM weights not found: {p}")
    folder = p if p.is_dir() else p.parent
    config_path = folder / CONFIG_FILE
    config = _read_config(config_path)
    if p.is_dir():
        name = (config or {}).get("moshi_name", WEIGHTS_FILE)
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{config_path}: moshi_name must be a file name, got {name!r}")
        weights = p / name
        if not weights.is_file():
            raise CheckpointError(f"{p}: a folder without {name} (expected a moshi LM folder)")
    else:
        weights = p
    return weights, config, config_path if config is not None else None


def _keys(weights: Path) -> list[str]:
    _, header = _header(weights)
    return [k for k in header if k != "__metadata__"]


def recognise(path: str | Path) -> bool:
    """True for a moshi LM folder or weights file (used by :func:`mlx_speech.load`); never
    raises for a foreign path."""
    try:
        weights, _, _ = resolve(path)
        if weights.suffix != ".safetensors" or not weights.is_file():
            return False
        meta = read_metadata(weights)
        if "model" in meta and "format" in meta:  # ours: the tagged loader's
            return False
        return is_moshi_lm_state(_keys(weights))
    except (CheckpointError, OSError, ValueError, KeyError):
        return False


def spec_of(path: str | Path) -> tuple[MoshiLMSpec, str]:
    """The spec of a moshi LM path and where it came from (for messages)."""
    _, config, config_path = resolve(path)
    if config is None:
        return moshiko(), "no config.json: moshi's default moshiko architecture"
    try:
        return MoshiLMSpec.from_moshi_config(config), str(config_path)
    except SpecError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None


def read_moshi_lm(path: str | Path, *,
                  spec: MoshiLMSpec | None = None) -> tuple[dict[str, np.ndarray], MoshiLMSpec]:
    """``(torch_ref state dict, spec)`` of the moshi LM at ``path``; ``spec`` overrides the
    folder's config. CheckpointError naming the keys on any mismatch."""
    weights, _, _ = resolve(path)
    if spec is None:
        spec, source = spec_of(path)
    else:
        source = "the given spec"
    state = read_safetensors(weights)
    if not is_moshi_lm_state(state):
        raise CheckpointError(f"{weights}: not a moshi LM state dict (no text_emb / "
                              f"text_linear / transformer.layers keys)")
    return convert_moshi_lm_state(state, spec, where=f"{weights} (config: {source})"), spec
