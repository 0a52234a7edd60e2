"""A pretrained SSL backbone from a local transformers folder into a Miipher-2 model.

No Miipher-2 weights are published, so a model starts from a backbone checkpoint (w2v-BERT 2.0,
HuBERT, WavLM: ``config.json`` + weights) and trains its adapters and vocoder; our tagged files
(``save_mlx_model`` / ``save_torch_model`` with ``model="miipher2"``) then hold the whole model,
backbone included, and :func:`mlx_speech.load` / ``torch_ref.load`` read them by their tag.

:func:`read_backbone` is framework-free (both loaders use it): the folder's config must be the
spec's backbone (every architecture field equal; the folder may have more layers than
``layer``, which are dropped) and its state is renamed to our keys in either layout;
``mlx_speech.models.miipher2.model.with_backbone`` (MLX) and ``torch_ref.models.miipher2.model.with_backbone``
copy it in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlx_speech.errors import CheckpointError
from mlx_speech.models.miipher2.spec import Miipher2Spec, backbone_spec_from

_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.")


def backbone_config_for(path: str | Path) -> dict[str, Any]:
    """The ``backbone`` mapping of a Miipher2Spec for the transformers folder ``path``."""
    from mlx_speech.models.ssl.hf import read_hf_dir  # noqa: PLC0415

    spec, _ = read_hf_dir(Path(path).expanduser())
    return spec.to_dict()


def read_backbone(path: str | Path, spec: Miipher2Spec, *,
                  layout: Literal["mlx", "torch"] = "mlx") -> dict[str, np.ndarray]:
    """The backbone weights (our names, without the ``backbone.`` prefix, float32) of the
    transformers folder ``path`` for a model of ``spec``; a CheckpointError names what does
    not match."""
    from mlx_speech.models.ssl.hf import hf_to_mlx_state, read_hf_dir, renames  # noqa: PLC0415
    from mlx_speech.weights.layout import to_torch  # noqa: PLC0415

    p = Path(path).expanduser()
    found, state = read_hf_dir(p)
    want = backbone_spec_from(spec.backbone)
    mine, theirs = want.to_dict(), found.to_dict()
    diff = [k for k in mine if k != "num_hidden_layers" and mine[k] != theirs.get(k)]
    if diff:
        k = diff[0]
        raise CheckpointError(f"{p}: backbone {k} is {theirs.get(k)!r} in config.json but "
                              f"{mine[k]!r} in the Miipher-2 spec ({len(diff)} field(s) differ)")
    if found.num_hidden_layers < spec.layer:
        raise CheckpointError(f"{p}: the backbone has {found.num_hidden_layers} layers; the "
                              f"model needs {spec.layer}")
    arrays = hf_to_mlx_state(found, state)
    if layout == "torch":
        kinds = dict(renames(found).values())
        arrays = {k: to_torch(kinds[k], v, k) for k, v in arrays.items()}
    keep = {}
    for k, v in arrays.items():
        m = _LAYER.match(k)
        if m is None or int(m.group(1)) < spec.layer:
            keep[k] = v
    return keep
