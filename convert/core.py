"""MLX module <-> torch_ref state dict, names unchanged, layouts by declared kind.

``param_kinds(module)`` walks an MLX module tree (or its torch_ref twin, whose layers declare
the same ``PARAM_KINDS``, so the torch side converts without MLX installed) and returns
``{flat.name: kind}`` from each owning module's ``PARAM_KINDS``. Everything else here is a thin, asserted use of it.
Imports mlx lazily (only the functions that receive an MLX module need it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.layout import to_mlx, to_torch
from mlx_speech.errors import CheckpointError


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten_tree(v, f"{prefix}{k}."))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(flatten_tree(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = tree
    return out


def param_kinds(module: Any) -> dict[str, str]:
    """``{name: kind}`` for every parameter of an MLX module (trainable and frozen), or for
    every state-dict entry of a torch_ref module (parameters and buffers)."""
    kinds: dict[str, str] = {}
    if hasattr(module, "state_dict") and hasattr(module, "named_buffers"):  # torch
        names = list(module.state_dict())
    else:
        names = flatten_tree(module.parameters())
    owners = dict(module.named_modules())
    for name in names:
        owner_path, _, leaf = name.rpartition(".")
        owner = owners.get(owner_path, module if owner_path == "" else None)
        declared = getattr(type(owner), "PARAM_KINDS", {}) if owner is not None else {}
        kinds[name] = declared.get(leaf, "plain")
    return kinds


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


def torch_state_to_mlx_arrays(module: Any, state: dict[str, Any]) -> dict[str, np.ndarray]:
    """A torch_ref state dict (tensors or arrays) in MLX layouts, checked against ``module``.

    Every parameter of the MLX module must be present with the right shape and no extra keys
    may remain: a mismatch raises :class:`CheckpointError` naming the keys.
    """
    kinds = param_kinds(module)
    expected = mlx_to_numpy(module)
    arrays = {k: _as_numpy(v) for k, v in state.items()}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"state dict does not match {type(module).__name__}: "
            f"missing {_short(missing)}; unexpected {_short(extra)}")
    out = {}
    bad = []
    for k, v in arrays.items():
        m = to_mlx(kinds[k], v, k)
        if m.shape != expected[k].shape:
            bad.append(f"{k} {tuple(m.shape)} != {tuple(expected[k].shape)}")
        out[k] = m
    if bad:
        raise CheckpointError(f"shape mismatch: {_short(bad)}")
    return out


def load_torch_state_into_mlx(module: Any, state: dict[str, Any]) -> Any:
    """Load a torch_ref state dict into an MLX module in place (strict); returns the module."""
    import mlx.core as mx  # noqa: PLC0415

    arrays = torch_state_to_mlx_arrays(module, state)
    current = flatten_tree(module.parameters())
    module.load_weights([(k, mx.array(v).astype(current[k].dtype)) for k, v in arrays.items()],
                        strict=True)
    return module


def copy_mlx_to_torch(mlx_module: Any, torch_module: Any) -> Any:
    """Copy an MLX module's weights into its torch_ref twin (strict: same names, all keys)."""
    import torch  # noqa: PLC0415

    state = {k: torch.from_numpy(v.copy()) for k, v in mlx_to_torch_state(mlx_module).items()}
    own = torch_module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"torch {type(torch_module).__name__} and MLX {type(mlx_module).__name__} differ: "
            f"torch-only {_short(missing)}; mlx-only {_short(extra)}")
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{k}: torch shape {tuple(own[k].shape)} != {tuple(v.shape)}")
        state[k] = v.to(own[k].dtype)
    torch_module.load_state_dict(state, strict=True)
    return torch_module


def _as_numpy(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach"):  # torch tensor, without importing torch here
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)


def _short(names: list[str], n: int = 6) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more
