"""Strict YAML reading for our own files (specs, recipes, ``--set`` values).

PyYAML's ``safe_load`` keeps the last of two equal keys in a mapping without a word, so a
recipe that sets ``steps:`` twice silently trains with the second value. :func:`load_strict`
reads like ``safe_load`` but raises a ``yaml.constructor.ConstructorError`` (a
``yaml.YAMLError``, with ``problem_mark`` on the repeated key) for a duplicate key, so the
callers' usual "invalid YAML at line N" handling reports it.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

__all__ = ["StrictSafeLoader", "load_strict", "read_strict"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:  # `<<: *base` may be overridden by explicit keys
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it
                if first is not None:
                    raise ConstructorError(None, None,
                                           f"duplicate key {key!r} (first given at line {first + 1})",
                                           key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_strict(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate mapping keys (see the module docstring)."""
    return yaml.load(text, Loader=StrictSafeLoader)  # a SafeLoader subclass: safe


def read_strict(text: str, where: str) -> Any:
    """:func:`load_strict`, with a YAML error as one :class:`~mlx_speech.errors.SpecError` line:
    ``{where}: invalid YAML at line L, column C: {problem}``."""
    from mlx_speech.errors import SpecError  # noqa: PLC0415

    try:
        return load_strict(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(f"{where}: invalid YAML{pos}: {problem}") from None
