"""Load a training recipe (YAML + ``--set`` overrides) and build the trainer for a backend.

Framework-neutral until :func:`make_trainer` imports the chosen framework's trainer.
Relative paths in a recipe (data sources, ``out_dir``) are relative to the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlx_speech.errors import SpecError
from mlx_speech.registry import resolve
from mlx_speech.specs.train import TrainSpec
from mlx_speech.specs.yaml_io import load_strict

BACKENDS = ("mlx", "torch")


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``dotted.key=value`` (value parsed as YAML) to a nested recipe mapping."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set expects key=value, got {assignment!r}")
    try:
        value = load_strict(raw)
    except yaml.YAMLError:
        raise SpecError(f"--set {key}: value {raw!r} is not valid YAML") from None
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise SpecError(f"--set {key}: {p!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainSpec:
    """Read a recipe strictly, then apply ``key=value`` overrides (also strictly checked)."""
    spec = TrainSpec.from_yaml(Path(path))
    if not overrides:
        return spec
    data = spec.to_dict()
    for o in overrides:
        apply_override(data, o)
    return TrainSpec._build(data, strict=True, where=str(path))


def make_trainer(spec: TrainSpec, backend: str = "mlx", **kwargs: Any) -> Any:
    """The MLX or torch trainer for ``spec`` (``kwargs`` as :class:`~mlx_speech.train.loop.TrainLoop`)."""
    if backend not in BACKENDS:
        raise SpecError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    # by name: mlx_speech never depends on torch_ref, and neither framework loads unless chosen
    trainer = resolve({"mlx": "mlx_speech.train.trainer:Trainer",
                       "torch": "torch_ref.train.trainer:Trainer"}[backend])
    return trainer(spec, **kwargs)
