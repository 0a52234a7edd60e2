"""SSL encoders from local transformers folders into torch_ref (mirror of
``mlx_speech/models/ssl/load.py``)::

    from torch_ref.models.ssl.load import load_ssl
    model = load_ssl("~/models/wavlm-base-plus")          # frozen, eval mode
    feats = model.features(wav, layers=[6, 12], sample_rate=24000)  # [(B, F, 768), ...]

``torch_ref.load(folder)`` reaches :func:`load_ssl` through the ``ssl`` family's registration.
The upstream key map and folder reader are the framework-free :mod:`mlx_speech.models.ssl.hf`
that the MLX loader uses, so both frameworks accept and refuse the same checkpoints; every load
ends in the strict key / shape check of :func:`torch_ref.weights.load_torch_state`. Never
imports mlx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.models.ssl.spec import ENCODERS as FAMILIES  # CLI names -> model_types
from mlx_speech.models.ssl.spec import W2VBertSpec, Wav2Vec2Spec
from mlx_speech.specs.base import Spec
from torch_ref.models.ssl.fbank import KaldiFbank
from torch_ref.models.ssl.w2v_bert import W2VBertModel
from torch_ref.models.ssl.wav2vec2 import Wav2Vec2Model

__all__ = ["FAMILIES", "KaldiFbank", "W2VBertModel", "Wav2Vec2Model", "build_ssl_model",
           "load_hf_state", "load_ssl", "to_hf_state"]

SSLModel = Wav2Vec2Model | W2VBertModel


def build_ssl_model(spec: Spec) -> SSLModel:
    """A randomly initialised encoder for a :class:`Wav2Vec2Spec` or :class:`W2VBertSpec`."""
    if isinstance(spec, Wav2Vec2Spec):
        return Wav2Vec2Model(spec)
    if isinstance(spec, W2VBertSpec):
        return W2VBertModel(spec)
    raise TypeError(f"build_ssl_model: expected an SSL spec, got {type(spec).__name__}")


def load_hf_state(model: SSLModel, state: dict[str, Any], *,
                  where: str | None = None) -> SSLModel:
    """Load an upstream (transformers) state dict into ``model`` in place, strictly.

    Upstream keys are renamed (and the positional conv's weight norm folded) by
    :func:`mlx_speech.models.ssl.hf.hf_to_torch_state`; the result must then have exactly the
    model's state-dict keys and shapes, or a :class:`CheckpointError` names the difference.
    """
    from mlx_speech.models.ssl.hf import hf_to_torch_state  # noqa: PLC0415
    from torch_ref.weights import load_torch_state  # noqa: PLC0415

    arrays = hf_to_torch_state(model.spec, state)
    return load_torch_state(model, arrays, where=where or model.spec.model_type)


def to_hf_state(model: SSLModel) -> dict[str, Any]:
    """The model's weights as a transformers base-model state dict (numpy, torch layouts)."""
    from mlx_speech.models.ssl.hf import torch_to_hf_state  # noqa: PLC0415

    arrays = {k: v.detach().to("cpu").float().numpy() for k, v in model.state_dict().items()}
    return torch_to_hf_state(model.spec, arrays)


def load_ssl(path: str | Path, *, family: str | None = None, freeze: bool = True) -> SSLModel:
    """Build and load an encoder from a local transformers directory (eval mode).

    ``family`` (``"wavlm"``, ``"hubert"``, ``"wav2vec2"``, ``"w2v-bert"``) checks the config's
    ``model_type``; ``freeze`` (default) turns ``requires_grad`` off on every parameter (a
    teacher or frozen backbone: an optimiser built from ``model.parameters()`` then skips it,
    while gradients still reach the input waveform and any adapters).
    """
    from mlx_speech.models.ssl.hf import read_hf_dir  # noqa: PLC0415

    if family is not None and family not in FAMILIES:
        raise CheckpointError(f"unknown SSL family {family!r}; expected one of "
                              f"{', '.join(FAMILIES)}")
    spec, state = read_hf_dir(Path(path).expanduser())
    if family is not None and spec.model_type not in FAMILIES[family]:
        raise CheckpointError(f"{path}: config.json is a {spec.model_type!r} model, not {family!r}")
    model = load_hf_state(build_ssl_model(spec), state, where=str(path))
    model.eval()
    if freeze:
        model.requires_grad_(False)
    return model
