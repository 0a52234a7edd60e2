"""Load Mimi weights from a local path, whatever their format, into MLX or torch_ref.

Formats, recognised in this order (never by tensor shapes):

1. ours: a safetensors file tagged ``model=mimi`` (``format`` mlx or torch), written by
   :func:`save_mimi` / ``convert.checkpoint``;
2. moshi: a safetensors (or torch pickle, ``{"model": state}`` or a bare state) whose keys start
   with ``encoder.model.`` (``convert/mimi_moshi.py``), e.g. the released
   ``tokenizer-e351c8d8-checkpoint125.safetensors``; the architecture is ``mimi_202407`` with
   the codebook counts read from the keys;
3. transformers: a directory holding ``config.json`` + ``model.safetensors``, or that
   ``model.safetensors`` itself with ``config.json`` beside it (``convert/mimi_hf.py``).

``num_codebooks`` sets how many codebooks ``encode`` uses by default (the weights always keep
all of them). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convert.checkpoint import (_PICKLE_SUFFIXES, load_mlx_model, load_pickle_state,
                                load_torch_model, read_metadata, save_checkpoint)
from convert.mimi_keys import short
from convert.mimi_hf import convert_hf_state, is_hf_state, read_hf_config, spec_from_hf_config
from convert.mimi_moshi import convert_moshi_state, is_moshi_state, spec_from_moshi_state
from mlx_speech.errors import CheckpointError
from mlx_speech.specs.mimi import MimiSpec

MODEL_NAME = "mimi"
FORMATS = ("mlx-speech", "moshi", "transformers")


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file  # noqa: PLC0415

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - bf16 files need torch; corrupt files land here
        try:
            from safetensors.torch import load_file as load_torch  # noqa: PLC0415
        except ImportError:
            raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None
        try:
            return {k: v.float().numpy() for k, v in load_torch(str(path)).items()}
        except Exception as exc2:  # noqa: BLE001
            raise CheckpointError(f"{path}: unreadable safetensors file ({exc2})") from None


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
        state = convert_hf_state(_read_safetensors(weights), spec,
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
    return _read_safetensors(weights)


def load_mimi(path: str | Path, *, num_codebooks: int | None = None,
              spec: MimiSpec | None = None) -> Any:
    """An MLX :class:`~mlx_speech.models.mimi.MimiModel` (eval mode) with the weights at ``path``."""
    from convert.core import load_torch_state_into_mlx  # noqa: PLC0415
    from mlx_speech.models.mimi import build_mimi  # noqa: PLC0415

    if detect_format(path) == "mlx-speech":
        model, tagged = load_mlx_model(resolve_mimi_path(path)[0])
        model.set_num_codebooks(_with_codebooks(tagged, num_codebooks).num_codebooks)
    else:
        state, spec, _ = read_upstream_state(path, num_codebooks=num_codebooks, spec=spec)
        model = load_torch_state_into_mlx(build_mimi(spec), state)
    model.eval()
    return model


def load_mimi_torch(path: str | Path, *, num_codebooks: int | None = None,
                    spec: MimiSpec | None = None) -> Any:
    """A torch_ref ``MimiModel`` (eval mode) with the weights at ``path``."""
    import torch  # noqa: PLC0415

    from torch_ref.models.mimi import build_mimi  # noqa: PLC0415

    if detect_format(path) == "mlx-speech":
        model, tagged = load_torch_model(resolve_mimi_path(path)[0])
        model.set_num_codebooks(_with_codebooks(tagged, num_codebooks).num_codebooks)
        model.eval()
        return model
    state, spec, _ = read_upstream_state(path, num_codebooks=num_codebooks, spec=spec)
    model = build_mimi(spec)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(f"{path}: Mimi weights do not match torch_ref: missing "
                              f"{short(missing)}; unexpected {short(extra)}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch: {short(bad)}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
                          strict=True)
    model.eval()
    return model


def save_mimi(path: str | Path, model: Any) -> None:
    """Save an MLX or torch_ref Mimi as a tagged safetensors file (``model=mimi``)."""
    spec = model.spec
    if hasattr(model, "state_dict"):  # torch_ref
        arrays = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
        save_checkpoint(path, arrays, fmt="torch", model=MODEL_NAME, spec=spec.to_dict())
    else:
        from convert.core import mlx_to_numpy  # noqa: PLC0415

        save_checkpoint(path, mlx_to_numpy(model), fmt="mlx", model=MODEL_NAME,
                        spec=spec.to_dict())
