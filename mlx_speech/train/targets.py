"""What ``mlx-speech train TARGET`` trains: a named target or a recipe file.

Framework-neutral (reads YAML only). ``TARGET`` is either

* a registered name (:data:`TARGETS`): ``tts`` (a TTS voice, ``configs/tts_*.yaml``, trained
  by :func:`mlx_speech.train.tasks_tts.train_voice`), ``mimi9`` (9-codebook Mimi distillation)
  or ``hifigan`` (HiFi-GAN vocoder, GAN); ``--config`` picks the recipe, else the target's
  default recipe in the repository's ``configs/``; a generic recipe must name the target's
  task (``task: mimi9``), so a wrong file is caught before any work starts;
* or a path to a recipe YAML: a generic trainer recipe (it has a ``task:`` key) or a TTS
  recipe (no ``task:`` key), told apart by that key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from mlx_speech.errors import SpecError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "tts" (own loop) or "recipe" (the generic trainer)
    default_config: str  # file name in configs/
    task: str | None = None  # the recipe's task for kind "recipe"


TARGETS: dict[str, Target] = {
    "tts": Target("tts", "tts", "tts_slt_tiny.yaml"),
    "mimi9": Target("mimi9", "recipe", "mimi9_distill.yaml", task="mimi9"),
    "hifigan": Target("hifigan", "recipe", "hifigan_v1.yaml", task="hifigan"),
}


@dataclasses.dataclass(frozen=True)
class Resolved:
    kind: str  # "tts" or "recipe"
    config: Path
    task: str | None  # required task name of a generic recipe (None: any)


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise SpecError(f"config file not found: {path}" + ("" if path.suffix in (".yaml", ".yml")
                        else f" (targets: {', '.join(TARGETS)}; or a recipe .yaml path)"))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = f": {exc.problem}" if getattr(exc, "problem", None) else ""
        raise SpecError(f"{path}: invalid YAML{where}{problem}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text YAML file") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a recipe must be a YAML mapping")
    return data


def resolve(target: str, config: Path | None) -> Resolved:
    """Turn ``train TARGET [--config PATH]`` into the recipe to run (see the module docstring)."""
    if target in TARGETS:
        t = TARGETS[target]
        path = Path(config) if config is not None else CONFIGS / t.default_config
        if config is None and not path.is_file():
            raise SpecError(f"train {target}: default recipe {path} not found; pass --config PATH")
        data = _read_mapping(path)
        if t.kind == "tts":
            if "task" in data:
                raise SpecError(f"train tts: {path} is a trainer recipe (task: {data['task']}), "
                                f"not a TTS recipe (configs/tts_*.yaml)")
            return Resolved("tts", path, None)
        if data.get("task") != t.task:
            raise SpecError(f"train {target}: {path} is a recipe for task "
                            f"{data.get('task')!r}, expected task: {t.task}")
        return Resolved("recipe", path, t.task)
    if config is not None:
        raise SpecError(f"unknown train target {target!r} (targets: {', '.join(TARGETS)}); "
                        f"give either a target with --config or a recipe path")
    path = Path(target)
    data = _read_mapping(path)
    return Resolved("recipe" if "task" in data else "tts", path, None)
