"""The framework-free module walk behind every layout conversion.

``param_kinds(module)`` walks an MLX module tree (or its torch_ref twin, whose layers declare
the same ``PARAM_KINDS``, so the torch side converts without MLX installed) and returns
``{flat.name: kind}`` from each owning module's ``PARAM_KINDS``; ``flatten_tree`` flattens MLX's
nested parameter dicts to dotted names. Imports neither mlx nor torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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


def _as_numpy(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach"):  # torch tensor, without importing torch here
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)
