"""An official HiFi-GAN generator checkpoint (``g_XXXXXXXX`` + ``config.json``) as an MLX
generator; the key map and config reading are in :mod:`.official` (framework-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.models.hifigan.official import config_beside, official_state, spec_from_config
from mlx_speech.models.hifigan.spec import HiFiGANSpec
from mlx_speech.weights.mlx import load_torch_state_into_mlx


def load_official_generator(path: str | Path, spec: HiFiGANSpec | None = None, *,
                            fold_weight_norm: bool = True) -> Any:
    """MLX :class:`HiFiGANGenerator` with an official checkpoint's weights."""
    from mlx_speech.models.hifigan.model import HiFiGANGenerator  # noqa: PLC0415

    state = official_state(path)
    weight_norm = any(k.endswith(".weight_g") for k in state)
    spec = (spec or HiFiGANSpec()).replace(weight_norm=weight_norm)
    model = load_torch_state_into_mlx(HiFiGANGenerator(spec), state, where=str(path))
    if fold_weight_norm:
        model.remove_weight_norm()
    model.eval()
    return model


def load_official(path: str | Path) -> Any:
    """An official generator (``config.json`` beside it) as an MLX generator, weight norm folded."""
    return load_official_generator(path, spec_from_config(config_beside(path)))
