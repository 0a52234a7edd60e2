"""A TTS voice folder (``voice.json`` + ``acoustic.safetensors``, the layout of the bundled
voice and of ``mlx-speech train tts`` output) as a format of :func:`mlx_speech.load`: it loads
the acoustic model; :class:`mlx_speech.pipelines.synth.Synthesizer` adds the frontend and
vocoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ACOUSTIC = "acoustic.safetensors"


def recognise(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "voice.json").is_file() and (p / ACOUSTIC).is_file()


def load_voice(path: str | Path) -> Any:
    """The voice's FastSpeech2 acoustic model in MLX (eval mode)."""
    from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

    model, _ = load_mlx_model(Path(path) / ACOUSTIC)
    model.eval()
    return model
