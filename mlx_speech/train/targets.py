"""What ``mlx-speech train TARGET`` trains: a named target or a recipe file.

Framework-neutral (reads YAML only). ``TARGET`` is either

* a registered target (:func:`mlx_speech.registry.targets`, registered by each family's
  ``register_family(targets=...)``: ``tts``, ``mimi9``, ``hifigan``, ...); ``--config`` picks
  the recipe, else the target's default recipe shipped in the package
  (``mlx_speech/configs/``, read through :mod:`importlib.resources`, so a wheel install finds
  it); the recipe must name the target's task (``task: mimi9``), so a wrong file is caught
  before any work starts;
* or a path to a recipe YAML (any registered ``task:``).
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path


from mlx_speech.errors import SpecError
from mlx_speech.registry import targets
from mlx_speech.specs.yaml_io import read_strict


def recipe_path(name: str) -> Path:
    """The shipped recipe ``name`` (a file in ``mlx_speech/configs/``) as a path."""
    return Path(str(resources.files("mlx_speech") / "configs" / name))


@dataclasses.dataclass(frozen=True)
class Resolved:
    config: Path
    task: str | None  # the task the recipe must name (None: any)


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise SpecError(f"config file not found: {path}" + ("" if path.suffix in (".yaml", ".yml")
                        else f" (targets: {', '.join(sorted(targets()))}; or a recipe .yaml path)"))
    try:
        data = read_strict(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text YAML file") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a recipe must be a YAML mapping")
    return data


def resolve(target: str, config: Path | None) -> Resolved:
    """Turn ``train TARGET [--config PATH]`` into the recipe to run (see the module docstring)."""
    known = targets()
    if target in known:
        t = known[target]
        path = Path(config) if config is not None else recipe_path(t.recipe)
        if config is None and not path.is_file():
            raise SpecError(f"train {target}: default recipe {path} not found; pass --config PATH")
        data = _read_mapping(path)
        if data.get("task") != t.task:
            raise SpecError(f"train {target}: {path} is a recipe for task "
                            f"{data.get('task')!r}, expected task: {t.task}")
        return Resolved(path, t.task)
    if config is not None:
        raise SpecError(f"unknown train target {target!r} (targets: {', '.join(sorted(known))}); "
                        f"give either a target with --config or a recipe path")
    path = Path(target)
    _read_mapping(path)
    return Resolved(path, None)
