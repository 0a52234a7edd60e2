"""Self-supervised speech encoders in MLX: WavLM, HuBERT, wav2vec 2.0 and w2v-BERT 2.0.

Typical use (weights from a local transformers directory; no hub access)::

    from mlx_speech.models.ssl.load import load_ssl
    model = load_ssl("~/models/wavlm-base-plus")          # frozen, inference mode
    feats = model.features(wav, layers=[6, 12], sample_rate=24000)  # [(B, F, 768), ...]

``features`` accepts ``(T,)`` or ``(B, T)`` audio at any supported rate (resampled to 16 kHz)
and returns hidden states ``(B, F, D)``: index 0 is the input of the first layer, ``i`` the
output of layer ``i`` (transformers' ``output_hidden_states`` order). ``hidden_states(...,
adapters=[...])`` runs callables in parallel to the layers (``h_{i+1} = layer_i(h_i) +
adapters[i](h_i)``). :mod:`torch_ref.models.ssl.load` is the torch twin with the same API and
keys; both read transformers folders through :mod:`mlx_speech.models.ssl.hf` (maps in both
directions). The family registers the folder format only, no tagged model (see
:mod:`mlx_speech.models.ssl`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.models.ssl.fbank import KaldiFbank
from mlx_speech.models.ssl.w2v_bert import W2VBertModel
from mlx_speech.models.ssl.wav2vec2 import Wav2Vec2Model
from mlx_speech.specs.base import Spec
from mlx_speech.models.ssl.spec import W2VBertSpec, Wav2Vec2Spec

__all__ = ["KaldiFbank", "W2VBertModel", "Wav2Vec2Model", "build_ssl_model", "load_ssl",
           "load_hf_state", "to_hf_state", "FAMILIES"]

from mlx_speech.models.ssl.spec import ENCODERS as FAMILIES  # noqa: E402  (CLI names -> model_types)

SSLModel = Wav2Vec2Model | W2VBertModel


def build_ssl_model(spec: Spec) -> SSLModel:
    """A randomly initialised encoder for a :class:`Wav2Vec2Spec` or :class:`W2VBertSpec`."""
    if isinstance(spec, Wav2Vec2Spec):
        return Wav2Vec2Model(spec)
    if isinstance(spec, W2VBertSpec):
        return W2VBertModel(spec)
    raise TypeError(f"build_ssl_model: expected an SSL spec, got {type(spec).__name__}")


def load_hf_state(model: SSLModel, state: dict[str, Any]) -> SSLModel:
    """Load an upstream (transformers) state dict into ``model`` in place, strictly."""
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.models.ssl.hf import hf_to_mlx_state  # noqa: PLC0415
    from mlx_speech.weights.core import flatten_tree  # noqa: PLC0415
    from mlx_speech.weights.mlx import load_arrays  # noqa: PLC0415
    from mlx_speech.weights.strict import check_state  # noqa: PLC0415

    arrays = hf_to_mlx_state(model.spec, state)
    check_state(arrays, flatten_tree(model.parameters()), where=model.spec.model_type,
                what="the SSL module tree")
    load_arrays(model, arrays)
    mx.eval(model.parameters())
    return model


def to_hf_state(model: SSLModel) -> dict[str, Any]:
    """The model's weights as a transformers state dict (numpy, torch layouts)."""
    from mlx_speech.weights.mlx import mlx_to_numpy  # noqa: PLC0415
    from mlx_speech.models.ssl.hf import mlx_to_hf_state  # noqa: PLC0415

    return mlx_to_hf_state(model.spec, mlx_to_numpy(model))


def load_ssl(path: str | Path, *, family: str | None = None, freeze: bool = True) -> SSLModel:
    """Build and load an encoder from a local transformers directory.

    ``family`` (``"wavlm"``, ``"hubert"``, ``"wav2vec2"``, ``"w2v-bert"``) checks the config's
    ``model_type``; ``freeze`` (default) freezes every parameter (the encoder is a teacher /
    frozen backbone: it is left out of ``trainable_parameters()``).
    """
    from mlx_speech.models.ssl.hf import read_hf_dir  # noqa: PLC0415

    if family is not None and family not in FAMILIES:
        raise CheckpointError(f"unknown SSL family {family!r}; expected one of "
                              f"{', '.join(FAMILIES)}")
    spec, state = read_hf_dir(Path(path).expanduser())
    if family is not None and spec.model_type not in FAMILIES[family]:
        raise CheckpointError(f"{path}: config.json is a {spec.model_type!r} model, not {family!r}")
    model = load_hf_state(build_ssl_model(spec), state)
    model.eval()
    if freeze:
        model.freeze()
    return model
