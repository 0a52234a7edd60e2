"""Official HiFi-GAN generator checkpoints (jik876/hifi-gan ``g_XXXXXXXX``) <-> our generator.

The official file is a torch pickle ``{'generator': state_dict}`` (read with
``weights_only=True``); with weight norm its keys are ``<conv>.weight_g`` / ``<conv>.weight_v``
/ ``<conv>.bias`` for ``conv_pre``, ``ups.i``, ``resblocks.n.convs1.m`` / ``convs2.m`` (type
"1") or ``resblocks.n.convs.m`` (type "2"), ``conv_post``: exactly our module names, so the
rename list is the identity; torch >= 2.1 ``parametrizations.weight.original0/1`` (g / v) are
renamed to it. Layouts change by declared kind (:mod:`convert.layout`). Every key must be
used and every parameter filled; shapes are asserted; errors name the keys.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from convert.checkpoint import load_pickle_state
from convert.core import param_kinds
from convert.layout import to_mlx
from mlx_speech.errors import CheckpointError
from mlx_speech.specs.tts import HiFiGANSpec

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


def load_official_generator(path: str | Path, spec: HiFiGANSpec | None = None, *,
                            fold_weight_norm: bool = True) -> Any:
    """MLX :class:`HiFiGANGenerator` with an official checkpoint's weights."""
    import mlx_speech  # noqa: F401,PLC0415
    import mlx.core as mx  # noqa: PLC0415

    from convert.core import flatten_tree  # noqa: PLC0415
    from mlx_speech.models.hifigan import HiFiGANGenerator  # noqa: PLC0415

    state = official_state(path)
    weight_norm = any(k.endswith(".weight_g") for k in state)
    spec = (spec or HiFiGANSpec()).replace(weight_norm=weight_norm)
    model = HiFiGANGenerator.from_spec(spec)
    kinds = param_kinds(model)
    own = {k: tuple(v.shape) for k, v in flatten_tree(model.parameters()).items()}
    extra, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    if extra or missing:
        raise CheckpointError(f"{path}: HiFi-GAN keys do not match the spec: unexpected "
                              f"{extra[:4]} missing {missing[:4]}")
    arrays = {k: to_mlx(kinds[k], v, k) for k, v in state.items()}
    bad = [f"{k} {arrays[k].shape} != {own[k]}" for k in own if tuple(arrays[k].shape) != own[k]]
    if bad:
        raise CheckpointError(f"{path}: HiFi-GAN shape mismatch: {'; '.join(bad[:4])}")
    model.load_weights([(k, mx.array(v)) for k, v in arrays.items()], strict=True)
    if fold_weight_norm:
        model.remove_weight_norm()
    model.eval()
    return model


def save_official_generator(path: str | Path, torch_generator: Any) -> None:
    """Write a torch_ref generator as ``{'generator': state_dict}`` (the official layout)."""
    import torch  # noqa: PLC0415

    torch.save({"generator": {k: v.detach().clone() for k, v in torch_generator.state_dict().items()}},
               str(path))
