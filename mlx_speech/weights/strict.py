"""The one strict key check: a state must have exactly the model's keys, with its shapes.

Every loader (our tagged files, upstream formats of every family, MLX and torch_ref, the
trainers' resume) calls :func:`check_state` before it copies a tensor, so a mismatch is always
one :class:`~mlx_speech.errors.CheckpointError` naming the missing, unexpected and mis-shaped
keys, never a half-loaded model or a framework's own traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlx_speech.errors import CheckpointError


def short(names: Iterable[str], n: int = 6) -> str:
    """``a, b, c (+4 more)``: a bounded list of names for a one-line error."""
    names = list(names)
    if not names:
        return "none"
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (v if isinstance(v, tuple) else v.shape))


def check_state(got: Mapping[str, Any], want: Mapping[str, Any], *, where: str = "checkpoint",
                what: str = "the model", shapes: bool = True) -> None:
    """Raise :class:`CheckpointError` unless ``got`` has exactly ``want``'s keys and shapes.

    Values are arrays / tensors (anything with ``.shape``) or shape tuples. ``want`` is the
    model's own state; ``got`` is what was read (already renamed and laid out for the model).
    """
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise CheckpointError(f"{where}: state does not match {what}: missing {short(missing)}; "
                              f"unexpected {short(extra)}")
    if not shapes:
        return
    bad = [f"{k} {_shape(got[k])} != {_shape(want[k])}" for k in want
           if _shape(got[k]) != _shape(want[k])]
    if bad:
        raise CheckpointError(f"{where}: shape mismatch: {'; '.join(bad[:4])}"
                              + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""))
