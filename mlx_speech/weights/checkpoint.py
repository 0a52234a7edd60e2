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

from mlx_speech.errors import CheckpointError
from mlx_speech.utils.atomic import atomic_path
from mlx_speech.weights.layout import to_mlx, to_torch
from mlx_speech.weights.strict import check_state

FORMATS = ("mlx", "torch")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], *, fmt: str, model: str,
                    spec: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    """Write ``arrays`` (numpy, in ``fmt``'s layouts) with the metadata tag, atomically."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    from mlx_speech._version import __version__  # noqa: PLC0415

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    meta = {"format": fmt, "model": model, "spec": json.dumps(spec, sort_keys=True),
            "mlx_speech": __version__, **(extra or {})}
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


def _pickle_refusal(exc: BaseException) -> str:
    """One line on why a pickle was not loaded. torch's own message advises loading with
    ``weights_only=False`` or allowlisting the offending global, either of which would run the
    file's code: never repeat that; keep only the unpickler's reason (e.g. ``Unsupported
    global: GLOBAL posix.system was not an allowed global by default.``)."""
    text = str(exc)
    if "weights_only" not in text and "WeightsUnpickler" not in text:
        return f"unreadable torch checkpoint ({_first_line(exc)})"
    lines = [ln.strip() for ln in text.splitlines()]
    why = ""
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip()
            why = rest or next((x for x in lines[i + 1:] if x), "")
            break
    # keep the reason, not torch's remedy: allowlisting the global (add_safe_globals) is the
    # unsafe step for a file that names os.system
    why = why.split(" Please use", 1)[0].strip()
    why = why if why and "weights_only" not in why else "objects other than tensors"
    return (f"refused or unreadable torch checkpoint: only tensors-only pickles load ({why[:160]}); "
            f"nothing in it was run and it was not loaded")


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as numpy, with no framework: bfloat16 (which numpy
    lacks) is widened to float32 exactly, from its raw bits. Clear errors for missing, empty
    and corrupt files."""
    from safetensors import safe_open  # noqa: PLC0415

    path = _existing(path)
    try:
        base, header = _header(path)
        with safe_open(str(path), framework="np") as fh:
            return {name: _bf16(path, base, header[name]) if header[name]["dtype"] == "BF16"
                    else fh.get_tensor(name) for name in fh.keys()}
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises several internal types
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None


def _header(path: Path) -> tuple[int, dict[str, Any]]:
    """``(offset of the data, header)`` of a safetensors file."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return 8 + n, json.loads(fh.read(n))


def _bf16(path: Path, base: int, entry: dict[str, Any]) -> np.ndarray:
    start, end = entry["data_offsets"]
    with open(path, "rb") as fh:
        fh.seek(base + start)
        raw = np.frombuffer(fh.read(end - start), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def load_pickle(path: str | Path) -> Any:
    """The whole object of a torch pickle file, read safely (``weights_only=True``): no code is
    executed, only tensors and plain containers load. For readers that need more than the state
    dict (e.g. Descript's ``{"state_dict": ..., "metadata": {"kwargs": ...}}``)."""
    import torch  # noqa: PLC0415

    path = _existing(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unsafe or corrupt pickles land here
        raise CheckpointError(f"{path}: {_pickle_refusal(exc)}") from None


def load_pickle_state(path: str | Path) -> dict[str, Any]:
    """A torch pickle checkpoint's state dict (``{"state_dict": sd}`` is unwrapped), read safely
    through :func:`load_pickle`."""
    obj = load_pickle(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def convert_arrays(arrays: dict[str, np.ndarray], kinds: dict[str, str], *, source: str,
                   target: str, where: str = "checkpoint") -> dict[str, np.ndarray]:
    """Change layouts of a whole state between formats; keys must equal ``kinds``' keys."""
    check_state(arrays, kinds, where=where, what="the model", shapes=False)
    if source == target:
        return dict(arrays)
    fn = to_torch if target == "torch" else to_mlx
    return {k: fn(kinds[k], v, k) for k, v in arrays.items()}


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

