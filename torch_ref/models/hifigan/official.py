"""Write a torch_ref HiFi-GAN generator in the official checkpoint layout (tests, and users
handing a generator back to the original code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_official_generator(path: str | Path, torch_generator: Any) -> None:
    """Write a torch_ref generator as ``{'generator': state_dict}`` (the official layout)."""
    import torch  # noqa: PLC0415

    torch.save({"generator": {k: v.detach().clone() for k, v in torch_generator.state_dict().items()}},
               str(path))


def load_official(path: str | Path) -> Any:
    """An official generator (``config.json`` beside it) as a torch_ref generator, weight norm
    folded (the twin of :func:`mlx_speech.models.hifigan.load.load_official`)."""
    from mlx_speech.models.hifigan.official import (config_beside, official_state,  # noqa: PLC0415
                                                    spec_from_config)
    from torch_ref.models.hifigan.model import HiFiGANGenerator  # noqa: PLC0415
    from torch_ref.weights import load_torch_state  # noqa: PLC0415

    state = official_state(path)
    spec = spec_from_config(config_beside(path)).replace(
        weight_norm=any(k.endswith(".weight_g") for k in state))
    model = load_torch_state(HiFiGANGenerator(spec), state, where=str(path))
    model.remove_weight_norm()
    model.eval()
    return model
