"""Registered models: name -> spec class and lazily imported MLX / torch_ref builders.

Builders are ``"module:attribute"`` strings so that this registry imports neither mlx nor torch;
each builder is called as ``builder(spec)`` and returns a module with random weights.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.specs.base import Spec


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    spec: str  # "module:SpecClass"
    mlx: str  # "module:builder"
    torch: str  # "module:builder"

    def spec_class(self) -> type[Spec]:
        return _resolve(self.spec)

    def build_spec(self, data: dict[str, Any] | Spec | None = None) -> Spec:
        cls = self.spec_class()
        if isinstance(data, cls):
            return data
        return cls.from_dict(data or {})

    def build_mlx(self, spec: dict[str, Any] | Spec | None = None) -> Any:
        return _resolve(self.mlx)(self.build_spec(spec))

    def build_torch(self, spec: dict[str, Any] | Spec | None = None) -> Any:
        return _resolve(self.torch)(self.build_spec(spec))


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, spec: str, mlx: str, torch: str) -> None:
    _MODELS[name] = ModelEntry(name=name, spec=spec, mlx=mlx, torch=torch)


def get_model(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise CheckpointError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS)) or 'none'}")
    return _MODELS[name]


def model_names() -> list[str]:
    return sorted(_MODELS)


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# --- the registered models ----------------------------------------------------------------
register_model("transformer", spec="mlx_speech.specs.layers:TransformerSpec",
               mlx="mlx_speech.layers.transformer:build_transformer",
               torch="torch_ref.layers.transformer:build_transformer")
register_model("conformer", spec="mlx_speech.specs.layers:ConformerSpec",
               mlx="mlx_speech.layers.conformer:build_conformer",
               torch="torch_ref.layers.conformer:build_conformer")
