"""The one registry: model families, their models, formats, codec facts and training tasks.

Framework-free and lazy: everything is named by ``"module:attribute"`` strings, resolved only
when used, so this module imports neither mlx nor torch (nor torch_ref).

A family lives in ``mlx_speech/models/<family>/`` (and ``torch_ref/models/<family>/``); its
``__init__.py`` makes the one :func:`register_family` call. :func:`families` imports every
sub-package of :mod:`mlx_speech.models` once, so a new folder is found without editing any
list. What a family registers:

- ``models``: ``name -> ModelEntry``; the name is the ``model`` tag of our checkpoint files.
  Each model is built as ``Class(spec)`` in both frameworks (``builder(spec)`` for the shared
  layers below, which predate families).
- ``formats``: upstream / folder layouts :func:`mlx_speech.load` recognises (``detect(path)``
  returns True for its files, framework-free; ``mlx`` / ``torch`` load them).
- ``codec``: sample rate, frame rate and codebook range, for ``mlx-speech codec``.
- ``tasks``: training tasks (a recipe's ``task:``), ``targets``: ``mlx-speech train NAME``
  with its default recipe, ``evals``: ``mlx-speech eval NAME`` commands.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.specs.base import Spec


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    spec: str  # "module:SpecClass"
    mlx: str  # "module:Class" (or builder), called with the spec
    torch: str
    spread: bool = False  # call builder(**spec.to_dict()) instead of builder(spec)
    family: str | None = None

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


@dataclasses.dataclass(frozen=True)
class Format:
    """An on-disk layout a family's loader recognises (framework-free ``detect``)."""

    name: str
    detect: str  # "module:function" path -> bool; never raises for a foreign path
    mlx: str  # "module:function" (path, **options) -> MLX model
    torch: str | None = None  # the same for torch_ref (None: no torch_ref twin)


@dataclasses.dataclass(frozen=True)
class CodecInfo:
    sample_rate: int
    frame_rate: float
    max_codebooks: int  # codes use 1..max_codebooks codebooks
    default_codebooks: int


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    mlx: str  # "module:Class"
    torch: str


@dataclasses.dataclass(frozen=True)
class Target:
    """``mlx-speech train NAME``: the task a recipe must name and the default recipe file."""

    name: str
    task: str
    recipe: str  # file name in the shipped recipes


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    summary: str
    models: tuple[str, ...]
    formats: tuple[Format, ...] = ()
    codec: CodecInfo | None = None
    tasks: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    evals: tuple[str, ...] = ()


_MODELS: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, Family] = {}
_TASKS: dict[str, TaskEntry] = {}
_TARGETS: dict[str, Target] = {}
_EVALS: dict[str, str] = {}
_DISCOVERED = False


def register_model(name: str, *, spec: str, mlx: str, torch: str, spread: bool = False,
                   family: str | None = None) -> None:
    _MODELS[name] = ModelEntry(name=name, spec=spec, mlx=mlx, torch=torch, spread=spread,
                               family=family)


def register_task(name: str, *, mlx: str, torch: str) -> None:
    """Register ``"module:Class"`` targets of a training task for both frameworks."""
    _TASKS[name] = TaskEntry(mlx=mlx, torch=torch)


def register_family(name: str, *, summary: str, models: dict[str, dict[str, str]],
                    formats: tuple[Format, ...] = (), codec: CodecInfo | None = None,
                    tasks: dict[str, dict[str, str]] | None = None,
                    targets: dict[str, tuple[str, str]] | None = None,
                    evals: dict[str, str] | None = None) -> None:
    """The one call a model family makes, from its package ``__init__``.

    ``models``: ``{model name: {"spec": ..., "mlx": ..., "torch": ...}}``; ``tasks``:
    ``{task: {"mlx": ..., "torch": ...}}``; ``targets``: ``{name: (task, recipe file)}``;
    ``evals``: ``{name: "module:command"}``, a click command for ``mlx-speech eval NAME``.
    """
    for model, entry in models.items():
        register_model(model, family=name, **entry)
    for task, entry in (tasks or {}).items():
        register_task(task, **entry)
    for target, (task, recipe) in (targets or {}).items():
        _TARGETS[target] = Target(name=target, task=task, recipe=recipe)
    _EVALS.update(evals or {})
    _FAMILIES[name] = Family(name=name, summary=summary, models=tuple(models), formats=formats,
                             codec=codec, tasks=tuple(tasks or ()), targets=tuple(targets or ()),
                             evals=tuple(evals or ()))


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    pkg = importlib.import_module("mlx_speech.models")  # the family folders, found by name

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.ispkg:
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def families() -> dict[str, Family]:
    _discover()
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    fams = families()
    if name not in fams:
        raise CheckpointError(f"unknown model family {name!r}; registered: {', '.join(sorted(fams))}")
    return fams[name]


def codec_names() -> list[str]:
    return sorted(n for n, f in families().items() if f.codec is not None)


def get_codec(name: str) -> CodecInfo:
    fam = families().get(name)
    if fam is None or fam.codec is None:
        raise SpecError(f"unknown codec {name!r}; available: {', '.join(codec_names())}")
    return fam.codec


def get_model(name: str) -> ModelEntry:
    _discover()
    if name not in _MODELS:
        raise CheckpointError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS)) or 'none'}")
    return _MODELS[name]


def model_names() -> list[str]:
    _discover()
    return sorted(_MODELS)


def task_names() -> list[str]:
    _discover()
    return sorted(_TASKS)


def get_task(name: str, backend: str) -> Any:
    """The task class of ``name`` for ``backend`` ("mlx" | "torch")."""
    _discover()
    if name not in _TASKS:
        raise SpecError(f"unknown task {name!r}; registered: {', '.join(task_names())}")
    return _resolve(getattr(_TASKS[name], backend))


def targets() -> dict[str, Target]:
    _discover()
    return dict(_TARGETS)


def evals() -> dict[str, str]:
    """``mlx-speech eval NAME`` -> the ``"module:command"`` of its click command."""
    _discover()
    return dict(_EVALS)


def resolve(target: str) -> Any:
    """A ``"module:attribute"`` string's object (for loaders named in a :class:`Format`)."""
    return _resolve(target)


# --- shared layers and quantizers (not families): buildable, convertible, taggable ---------
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

# --- training tasks that belong to no model family (the tiny mel denoisers) ----------------
register_task("mel_denoise", mlx="mlx_speech.train.tiny:MelDenoiseTask",
              torch="torch_ref.train.tiny:MelDenoiseTask")
register_task("mel_denoise_gan", mlx="mlx_speech.train.tiny:MelDenoiseGANTask",
              torch="torch_ref.train.tiny:MelDenoiseGANTask")
