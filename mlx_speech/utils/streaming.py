"""One streaming protocol for both frameworks (moshi's ``StreamingModule`` is the model).

A module that keeps state between ``step`` calls (a causal conv's input buffer, a transposed
conv's overlap tail, a codec's KV caches and sample counter) derives from :class:`Streaming`
and clears *its own* state in :meth:`Streaming._reset_own_state`. ``reset_state()`` on any
module that derives from it clears its own state and that of every :class:`Streaming` module
inside it, found by walking the module tree (``.modules()``, which MLX and torch modules both
have). A stateful layer added to a model is therefore reset with it; nothing is listed by hand.

Framework-free: the mixin imports neither mlx nor torch, so both frameworks' layers share it.
"""

from __future__ import annotations

from typing import Any


class Streaming:
    """Mixin for modules with streaming state (put it before the framework's ``Module``)."""

    def _reset_own_state(self) -> None:
        """Clear this module's own state (not its children's); the default has none."""

    def reset_state(self) -> None:
        """Start a new stream: reset this module and every streaming module inside it."""
        for module in streaming_modules(self):
            module._reset_own_state()


def streaming_modules(root: Any) -> list[Streaming]:
    """Every :class:`Streaming` module in ``root``'s tree, ``root`` included, each once."""
    seen: set[int] = set()
    out = []
    for module in root.modules():
        if isinstance(module, Streaming) and id(module) not in seen:
            seen.add(id(module))
            out.append(module)
    return out
