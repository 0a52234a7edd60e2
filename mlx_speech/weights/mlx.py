"""MLX side of the weights core: MLX modules <-> numpy states and tagged files.

Every function here takes or builds an MLX module, so this module is the only part of
:mod:`mlx_speech.weights` that imports mlx (lazily, inside the calls). torch_ref's twin is
:mod:`torch_ref.weights`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.registry import get_model
from mlx_speech.weights.checkpoint import convert_arrays, load_checkpoint, save_checkpoint
from mlx_speech.weights.core import _as_numpy, flatten_tree, param_kinds
from mlx_speech.weights.layout import to_mlx, to_torch
from mlx_speech.weights.strict import check_state


def mlx_to_numpy(module: Any) -> dict[str, np.ndarray]:
    """MLX parameters as float numpy arrays in MLX layout (bf16 is widened to fp32)."""
    import mlx.core as mx  # noqa: PLC0415

    out = {}
    for k, v in flatten_tree(module.parameters()).items():
        if v.dtype == mx.bfloat16:
            v = v.astype(mx.float32)
        out[k] = np.array(v)
    return out


def mlx_to_torch_state(module: Any) -> dict[str, np.ndarray]:
    """The MLX module's parameters as a torch_ref state dict (numpy arrays, torch layouts)."""
    kinds = param_kinds(module)
    return {k: to_torch(kinds[k], v, k) for k, v in mlx_to_numpy(module).items()}


def torch_state_to_mlx_arrays(module: Any, state: dict[str, Any], *,
                              where: str = "state dict") -> dict[str, np.ndarray]:
    """A torch_ref state dict (tensors or arrays) in MLX layouts, checked against ``module``
    by :func:`~mlx_speech.weights.strict.check_state` (names and shapes, strict)."""
    kinds = param_kinds(module)
    expected = {k: tuple(v.shape) for k, v in flatten_tree(module.parameters()).items()}
    arrays = {k: _as_numpy(v) for k, v in state.items()}
    check_state(arrays, expected, where=where, what=type(module).__name__, shapes=False)
    out = {k: to_mlx(kinds[k], v, k) for k, v in arrays.items()}
    check_state(out, expected, where=where, what=type(module).__name__)
    return out


def load_arrays(module: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Copy MLX-layout arrays (already checked) into ``module``, keeping its dtypes."""
    import mlx.core as mx  # noqa: PLC0415

    current = flatten_tree(module.parameters())
    module.load_weights([(k, mx.array(v).astype(current[k].dtype)) for k, v in arrays.items()],
                        strict=True)
    return module


def load_torch_state_into_mlx(module: Any, state: dict[str, Any], *,
                              where: str = "state dict") -> Any:
    """Load a torch_ref state dict into an MLX module in place (strict); returns the module."""
    return load_arrays(module, torch_state_to_mlx_arrays(module, state, where=where))


def save_mlx_model(path: str | Path, module: Any, *, model: str, spec: Any) -> None:
    """Save an MLX module of a registered model in MLX layout (spec: a Spec or dict)."""
    spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    get_model(model)  # fail early on an unregistered name
    save_checkpoint(path, mlx_to_numpy(module), fmt="mlx", model=model, spec=spec_dict)


def save_tagged(path: str | Path, module: Any, *, model: str) -> None:
    """Save an MLX or a torch_ref module (told apart by torch's ``state_dict``) of the
    registered ``model`` as our tagged file, in its own framework's layout, with its
    ``spec``; either framework loads it back. torch is never imported here."""
    spec = module.spec
    if hasattr(module, "state_dict"):  # torch_ref
        arrays = {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}
        save_checkpoint(path, arrays, fmt="torch", model=model, spec=spec.to_dict())
    else:
        save_checkpoint(path, mlx_to_numpy(module), fmt="mlx", model=model, spec=spec.to_dict())


def load_mlx_model(path: str | Path) -> tuple[Any, Any]:
    """Build the registered MLX model named in the file's tag and load it (either layout)."""
    arrays, meta = load_checkpoint(path)
    entry = get_model(meta["model"])
    spec = entry.build_spec(json.loads(meta["spec"]))
    module = entry.build_mlx(spec)
    mlx_arrays = convert_arrays(arrays, param_kinds(module), source=meta["format"], target="mlx",
                                where=str(path))
    check_state(mlx_arrays, flatten_tree(module.parameters()), where=str(path),
                what=f"{meta['model']} (MLX)")
    return load_arrays(module, mlx_arrays), spec
