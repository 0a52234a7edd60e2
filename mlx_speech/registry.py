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
    spread: bool = False  # call builder(**spec.to_dict()) instead of builder(spec)

    def spec_class(self) -> type[Spec]:
        return _resolve(self.spec)

    def build_spec(self, data: dict[str, Any] | Spec | None = None) -> Spec:
        cls = self.spec_class()
        if isinstance(data, cls):
            return data
        return cls.from_dict(data or {})

    def build_mlx(self, spec: dict[str, Any] | Spec | None = None) -> Any:
        return self._call(self.mlx, self.build_spec(spec))

    def build_torch(self, spec: dict[str, Any] | Spec | None = None) -> Any:
        return self._call(self.torch, self.build_spec(spec))

    def _call(self, target: str, spec: Spec) -> Any:
        builder = _resolve(target)
        return builder(**spec.to_dict()) if self.spread else builder(spec)


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, spec: str, mlx: str, torch: str, spread: bool = False) -> None:
    _MODELS[name] = ModelEntry(name=name, spec=spec, mlx=mlx, torch=torch, spread=spread)


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
               mlx="mlx_speech.layers.transformer:Transformer",
               torch="torch_ref.layers.transformer:Transformer", spread=True)
register_model("conformer", spec="mlx_speech.specs.layers:ConformerSpec",
               mlx="mlx_speech.layers.conformer:Conformer",
               torch="torch_ref.layers.conformer:Conformer", spread=True)
register_model("vector_quantizer", spec="mlx_speech.specs.quantize:VQSpec",
               mlx="mlx_speech.quantize.vq:build_vector_quantizer",
               torch="torch_ref.quantize.vq:build_vector_quantizer")
register_model("residual_vq", spec="mlx_speech.specs.quantize:RVQSpec",
               mlx="mlx_speech.quantize.rvq:build_residual_vq",
               torch="torch_ref.quantize.rvq:build_residual_vq")
register_model("split_residual_vq", spec="mlx_speech.specs.quantize:SplitRVQSpec",
               mlx="mlx_speech.quantize.rvq:build_split_residual_vq",
               torch="torch_ref.quantize.rvq:build_split_residual_vq")
register_model("bsq", spec="mlx_speech.specs.quantize:BSQSpec",
               mlx="mlx_speech.quantize.bsq:build_bsq",
               torch="torch_ref.quantize.bsq:build_bsq")
register_model("bridge_quantizer", spec="mlx_speech.specs.quantize:BridgeSpec",
               mlx="mlx_speech.quantize.bridge:build_bridge",
               torch="torch_ref.quantize.bridge:build_bridge")
register_model("mimi", spec="mlx_speech.specs.mimi:MimiSpec", mlx="mlx_speech.models.mimi:build_mimi", torch="torch_ref.models.mimi:build_mimi")
register_model("mimi9", spec="mlx_speech.specs.mimi9:Mimi9Spec", mlx="mlx_speech.models.mimi9:build_mimi9", torch="torch_ref.models.mimi9:build_mimi9")
register_model("fastspeech2", spec="mlx_speech.specs.tts:FastSpeechSpec", mlx="mlx_speech.models.fastspeech:build_fastspeech", torch="torch_ref.models.fastspeech:build_fastspeech")
register_model("hifigan", spec="mlx_speech.specs.tts:HiFiGANSpec", mlx="mlx_speech.models.hifigan:build_hifigan", torch="torch_ref.models.hifigan:build_hifigan")
