"""Checkpoint files: safetensors with a metadata tag, atomic writes, MLX <-> torch conversion.

Metadata (all strings, as safetensors requires): ``format`` ("mlx" | "torch"), ``model`` (a
registered model name), ``spec`` (the spec as JSON), ``mlx_speech`` (writer version). A file is
recognised by its tag, never by tensor shapes, so converting or loading twice is harmless.
Pickle checkpoints are read only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from convert.core import param_kinds
from convert.layout import to_mlx, to_torch
from mlx_speech.errors import CheckpointError
from mlx_speech.registry import get_model
from mlx_speech.utils.atomic import atomic_path

FORMATS = ("mlx", "torch")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], *, fmt: str, model: str,
                    spec: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    """Write ``arrays`` (numpy, in ``fmt``'s layouts) with the metadata tag, atomically."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    import mlx_speech  # noqa: PLC0415

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    meta = {"format": fmt, "model": model, "spec": json.dumps(spec, sort_keys=True),
            "mlx_speech": mlx_speech.__version__, **(extra or {})}
    bad = [k for k, v in arrays.items() if not np.all(np.isfinite(v))]
    if bad:
        raise CheckpointError(f"refusing to save non-finite weights: {', '.join(bad[:5])}")
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata tag of a safetensors checkpoint (clear errors for missing / corrupt files)."""
    from safetensors import safe_open  # noqa: PLC0415

    path = _existing(path)
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises several internal types
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    return meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read arrays + metadata; the metadata must carry our tag."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    meta = read_metadata(path)
    for key in ("format", "model", "spec"):
        if key not in meta:
            raise CheckpointError(f"{path}: no mlx-speech metadata tag ({key!r} missing); "
                                  "upstream checkpoints go through their model's converter")
    if meta["format"] not in FORMATS:
        raise CheckpointError(f"{path}: unknown format tag {meta['format']!r}")
    try:
        arrays = load_file(str(path))
        json.loads(meta["spec"])
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: corrupt checkpoint ({_first_line(exc)})") from None
    return arrays, meta


def load_pickle_state(path: str | Path) -> dict[str, Any]:
    """A torch pickle checkpoint, read safely (``weights_only=True``): no code is executed."""
    import torch  # noqa: PLC0415

    path = _existing(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unsafe or corrupt pickles land here
        raise CheckpointError(f"{path}: refused or unreadable torch checkpoint "
                              f"(only plain tensors are loaded: {_first_line(exc)})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def convert_arrays(arrays: dict[str, np.ndarray], kinds: dict[str, str], *, source: str,
                   target: str) -> dict[str, np.ndarray]:
    """Change layouts of a whole state between formats; keys must equal ``kinds``' keys."""
    missing = sorted(set(kinds) - set(arrays))
    extra = sorted(set(arrays) - set(kinds))
    if missing or extra:
        raise CheckpointError(f"checkpoint does not match the model: missing {missing[:5] or 'none'}, "
                              f"unexpected {extra[:5] or 'none'}")
    if source == target:
        return dict(arrays)
    fn = to_torch if target == "torch" else to_mlx
    return {k: fn(kinds[k], v, k) for k, v in arrays.items()}


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


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory, not a checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file")
    return p


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --- whole models ------------------------------------------------------------------------------
def save_mlx_model(path: str | Path, module: Any, *, model: str, spec: Any) -> None:
    """Save an MLX module of a registered model in MLX layout (spec: a Spec or dict)."""
    from convert.core import mlx_to_numpy  # noqa: PLC0415

    spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    get_model(model)  # fail early on an unregistered name
    save_checkpoint(path, mlx_to_numpy(module), fmt="mlx", model=model, spec=spec_dict)


def save_torch_model(path: str | Path, module: Any, *, model: str, spec: Any) -> None:
    """Save a torch_ref module of a registered model in torch layout."""
    spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    get_model(model)
    arrays = {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}
    save_checkpoint(path, arrays, fmt="torch", model=model, spec=spec_dict)


def load_mlx_model(path: str | Path) -> tuple[Any, Any]:
    """Build the registered MLX model named in the file's tag and load it (either layout)."""
    import mlx.core as mx  # noqa: PLC0415

    arrays, meta = load_checkpoint(path)
    entry = get_model(meta["model"])
    spec = entry.build_spec(json.loads(meta["spec"]))
    module = entry.build_mlx(spec)
    mlx_arrays = convert_arrays(arrays, param_kinds(module), source=meta["format"], target="mlx")
    _check_shapes(path, mlx_arrays, {k: tuple(v.shape) for k, v in _flat_params(module).items()})
    module.load_weights([(k, mx.array(v)) for k, v in mlx_arrays.items()], strict=True)
    return module, spec


def load_torch_model(path: str | Path) -> tuple[Any, Any]:
    """Build the registered torch_ref model named in the file's tag and load it (either layout)."""
    import torch  # noqa: PLC0415

    arrays, meta = load_checkpoint(path)
    entry = get_model(meta["model"])
    spec = entry.build_spec(json.loads(meta["spec"]))
    module = entry.build_torch(spec)
    kinds = param_kinds(module)  # torch_ref declares the same kinds: no MLX needed
    torch_arrays = convert_arrays(arrays, kinds, source=meta["format"], target="torch")
    own = module.state_dict()
    _check_shapes(path, torch_arrays, {k: tuple(v.shape) for k, v in own.items()})
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype)
                            for k, v in torch_arrays.items()}, strict=True)
    return module, spec


def _flat_params(module: Any) -> dict[str, Any]:
    from convert.core import flatten_tree  # noqa: PLC0415

    return flatten_tree(module.parameters())


def _check_shapes(path: str | Path, arrays: dict[str, np.ndarray], expected: dict[str, tuple]) -> None:
    bad = [f"{k} {tuple(arrays[k].shape)} != {expected[k]}" for k in expected
           if k in arrays and tuple(arrays[k].shape) != expected[k]]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch: {'; '.join(bad[:4])}")
