"""Official HiFi-GAN generator checkpoints (jik876/hifi-gan ``g_XXXXXXXX``) <-> our generator.

The official file is a torch pickle ``{'generator': state_dict}`` (read with
``weights_only=True``); with weight norm its keys are ``<conv>.weight_g`` / ``<conv>.weight_v``
/ ``<conv>.bias`` for ``conv_pre``, ``ups.i``, ``resblocks.n.convs1.m`` / ``convs2.m`` (type
"1") or ``resblocks.n.convs.m`` (type "2"), ``conv_post``: exactly our module names, so the
rename list is the identity; torch >= 2.1 ``parametrizations.weight.original0/1`` (g / v) are
renamed to it. Layouts change by declared kind (:mod:`mlx_speech.weights.layout`). Every key must be
used and every parameter filled; shapes are asserted; errors name the keys.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mlx_speech.weights.checkpoint import load_pickle_state
from mlx_speech.errors import CheckpointError
from mlx_speech.models.hifigan.spec import HiFiGANSpec

_PARAMETRIZED = re.compile(r"^(.*)\.parametrizations\.weight\.original([01])$")
_UPSTREAM_CONFIG_KEYS = {"num_mels": "n_mels"}


def rename_official(key: str) -> str:
    """Official / parametrized key -> our key (identity for the classic weight-norm layout)."""
    m = _PARAMETRIZED.match(key)
    if m:
        return f"{m.group(1)}.weight_{'g' if m.group(2) == '0' else 'v'}"
    return key


def spec_from_config(path: str | Path | None) -> HiFiGANSpec:
    """The spec from an upstream ``config.json`` (unknown keys ignored); V1 without a file."""
    if path is None:
        return HiFiGANSpec()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    data = {_UPSTREAM_CONFIG_KEYS.get(k, k): v for k, v in data.items()}
    if "resblock" in data:
        data["resblock"] = str(data["resblock"])
    return HiFiGANSpec.from_dict(data)


def official_state(path: str | Path) -> dict[str, np.ndarray]:
    """The generator state dict of an official checkpoint, as numpy, keys renamed."""
    obj = load_pickle_state(path)
    state = obj.get("generator", obj) if isinstance(obj, dict) else None
    if (not isinstance(state, dict) or not state
            or not all(hasattr(v, "shape") for v in state.values())):
        raise CheckpointError(f"{path}: expected {{'generator': state_dict}} (HiFi-GAN layout)")
    out = {}
    for k, v in state.items():
        arr = v.detach().cpu().float().numpy() if hasattr(v, "detach") else np.asarray(v, np.float32)
        out[rename_official(k)] = arr
    return out


def recognise(path: str | Path) -> bool:
    """True for an official generator checkpoint: a pickle (no ``.safetensors``) with the
    upstream ``config.json`` (it has ``upsample_rates``) beside it."""
    p = Path(path)
    cfg = p.parent / "config.json"
    if not p.is_file() or p.suffix == ".safetensors" or not cfg.is_file():
        return False
    try:
        return "upsample_rates" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def config_beside(path: str | Path) -> Path | None:
    cfg = Path(path).parent / "config.json"
    return cfg if cfg.is_file() else None
