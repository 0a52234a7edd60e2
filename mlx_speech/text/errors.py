"""Errors of the text frontend (framework-neutral)."""

from __future__ import annotations

from mlx_speech.errors import UserError


class TextError(UserError, ValueError):
    """Text that cannot be turned into phonemes: empty, unsupported language, unknown symbols."""
