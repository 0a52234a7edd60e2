"""torch_ref side of the weights core: tagged files <-> torch_ref modules (either layout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.registry import get_model
from mlx_speech.weights.checkpoint import convert_arrays, load_checkpoint, save_checkpoint
from mlx_speech.weights.core import param_kinds
from mlx_speech.weights.strict import check_state


def load_torch_state(module: Any, state: dict[str, Any], *, where: str = "state dict") -> Any:
    """Load a torch_ref state dict (numpy arrays or tensors, torch layouts) into ``module`` in
    place after the strict key check; keeps the module's dtypes. Returns the module."""
    import torch  # noqa: PLC0415

    own = module.state_dict()
    check_state(state, own, where=where, what=f"torch_ref {type(module).__name__}")
    module.load_state_dict({k: (v if isinstance(v, torch.Tensor)
                                else torch.from_numpy(np.ascontiguousarray(v))).to(own[k].dtype)
                            for k, v in state.items()}, strict=True)
    return module


def save_torch_model(path: str | Path, module: Any, *, model: str, spec: Any) -> None:
    """Save a torch_ref module of a registered model in torch layout."""
    spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    get_model(model)
    arrays = {k: v.detach().cpu().float().numpy() for k, v in module.state_dict().items()}
    save_checkpoint(path, arrays, fmt="torch", model=model, spec=spec_dict)


def load_torch_model(path: str | Path) -> tuple[Any, Any]:
    """Build the registered torch_ref model named in the file's tag and load it (either layout)."""
    arrays, meta = load_checkpoint(path)
    entry = get_model(meta["model"])
    spec = entry.build_spec(json.loads(meta["spec"]))
    module = entry.build_torch(spec)
    kinds = param_kinds(module)  # torch_ref declares the same kinds: no MLX needed
    torch_arrays = convert_arrays(arrays, kinds, source=meta["format"], target="torch",
                                  where=str(path))
    return load_torch_state(module, torch_arrays, where=str(path)), spec
