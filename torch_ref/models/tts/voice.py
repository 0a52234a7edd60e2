"""A TTS voice folder's acoustic model in torch_ref (twin of :mod:`mlx_speech.models.tts.voice`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ACOUSTIC = "acoustic.safetensors"  # as in mlx_speech.models.tts.voice


def load_voice_torch(path: str | Path) -> Any:
    """The voice's FastSpeech2 acoustic model in torch_ref (eval mode)."""
    from torch_ref.weights import load_torch_model  # noqa: PLC0415

    model, _ = load_torch_model(Path(path) / ACOUSTIC)
    model.eval()
    return model
