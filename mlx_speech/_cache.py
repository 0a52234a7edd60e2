"""Where mlx-speech keeps files it builds for this machine (the BLAS copy, the kernel-flag
wrapper): ``$MLX_SPEECH_CACHE``, else ``$XDG_CACHE_HOME/mlx-speech``, else
``~/.cache/mlx-speech``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    own = os.environ.get("MLX_SPEECH_CACHE")
    if own:
        return Path(own)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlx-speech"
