"""Framework-neutral config dataclasses: lenient ``from_dict``, strict YAML, preset registry.

This module (and the whole ``specs`` package) imports neither mlx nor torch; a subprocess test
checks that.

- ``Spec.from_dict(d)`` is lenient: unknown keys (e.g. extra fields of an upstream
  ``config.json``) are ignored, values are still type-checked.
- ``Spec.from_yaml(path_or_text)`` is strict: an unknown key is an error naming it and the valid
  keys; a wrong type is an error naming the field and the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from mlx_speech.errors import SpecError
from mlx_speech.specs.yaml_io import read_strict

S = TypeVar("S", bound="Spec")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, strict: bool) -> Any:
    """Check ``value`` against annotation ``tp``; return it (nested specs built, ints widened)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where, strict)
            except SpecError as exc:
                errors.append(exc)
        raise SpecError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise SpecError(f"{where}: expected None, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise SpecError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]", strict) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Spec):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return tp._build(value, strict=strict, where=where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool or tp is str:
        if isinstance(value, tp):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise SpecError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


@dataclasses.dataclass
class Spec:
    """Base class of every model / recipe spec."""

    _presets: ClassVar[dict[str, Callable[..., Spec]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._presets = {}

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def _build(cls: type[S], data: dict[str, Any], *, strict: bool, where: str) -> S:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = [k for k in data if k not in fields]
        if unknown and strict:
            k = unknown[0]
            close = difflib.get_close_matches(str(k), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"{where}: unknown key {k!r}{hint}; valid keys: {', '.join(fields)}")
        kwargs = {k: _coerce(v, hints[k], f"{where}.{k}", strict)
                  for k, v in data.items() if k in fields}
        try:
            spec = cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise SpecError(f"{where}: {exc}") from None
        spec.validate()
        return spec

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        """Lenient: ignores keys this spec does not know (for upstream JSON configs)."""
        if not isinstance(data, dict):
            raise SpecError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        return cls._build(data, strict=False, where=cls.__name__)

    @classmethod
    def from_yaml(cls: type[S], source: str | Path) -> S:
        """Strict: unknown keys and wrong types are errors. ``source`` is a path or YAML text."""
        where = cls.__name__
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                        and source.endswith((".yaml", ".yml"))):
            path = Path(source)
            if not path.is_file():
                raise SpecError(f"config file not found: {path}")
            text, where = path.read_text(encoding="utf-8"), str(path)
        else:
            text = str(source)
        data = read_strict(text, where)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError(f"{where}: expected a mapping at top level, got {type(data).__name__}")
        return cls._build(data, strict=True, where=where)

    def validate(self) -> None:
        """Value checks beyond types; subclasses raise SpecError naming the field."""

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Spec):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

            atomic_write_text(Path(path), text)
        return text

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed, type-checked like YAML input."""
        return type(self)._build({**self.to_dict(), **changes}, strict=True,
                                 where=type(self).__name__)

    # -- presets ---------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> Callable[[Callable[..., S]], Callable[..., S]]:
        """Decorator registering a named preset factory for this spec class."""

        def deco(fn: Callable[..., S]) -> Callable[..., S]:
            cls._presets[name] = fn
            return fn

        return deco

    @classmethod
    def from_preset(cls: type[S], name: str, **kwargs: Any) -> S:
        if name not in cls._presets:
            raise SpecError(f"unknown {cls.__name__} preset {name!r}; "
                            f"known: {', '.join(sorted(cls._presets)) or 'none'}")
        return cls._presets[name](**kwargs)

    @classmethod
    def presets(cls) -> list[str]:
        return sorted(cls._presets)


def require(cond: bool, where: str, message: str) -> None:
    """Raise SpecError(f"{where}: {message}") unless ``cond``; for ``validate`` methods."""
    if not cond:
        raise SpecError(f"{where}: {message}")
