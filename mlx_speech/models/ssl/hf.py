"""transformers SSL checkpoints (WavLM, HuBERT, wav2vec 2.0, w2v-BERT 2.0) <-> our encoders, the
MLX ones and their torch_ref mirror (same keys; ``layout=`` picks the framework's conv layout).

A local HF directory holds ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin`` read with ``weights_only=True``), and
optionally ``preprocessor_config.json`` (its ``do_normalize`` is honoured).

The rename lists below are flat and explicit: per-layer templates (``{i}`` = layer index) from
transformers' key to ours with the parameter's layout kind. Every upstream key is either renamed
or matched by :data:`DROPPED` (with the reason); counts and shapes are asserted, and any mismatch
is a :class:`~mlx_speech.errors.CheckpointError` that names the keys. Head checkpoints
(``WavLMForCTC``, ``Wav2Vec2ForPreTraining`` ...) load too: the base model's prefix
(``wavlm.``, ``hubert.``, ``wav2vec2.``, ``wav2vec2_bert.``) is stripped and the heads dropped.

The positional convolution's weight norm (``dim=2``: one gain per kernel tap) is folded once,
``weight = v * g / ||v||`` with the norm over output and input channels, in float64 rounded once
to float32. Both spellings are read: ``conv.weight_g`` / ``conv.weight_v`` (torch's old
``weight_norm``) and ``conv.parametrizations.weight.original0`` / ``original1`` (its
parametrization, which transformers 5 saves). The reverse map writes the parametrization form
with ``g = ||weight||`` and ``v = weight``, which reproduces ``weight`` up to rounding.

This module imports numpy only (torch for ``.bin`` through the safe pickle loader, lazily), so
:mod:`torch_ref.models.ssl.load` reads it too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.weights.core import _as_numpy
from mlx_speech.weights.layout import to_mlx, to_torch
from mlx_speech.errors import CheckpointError
from mlx_speech.specs.base import Spec
from mlx_speech.models.ssl.spec import W2VBertSpec, Wav2Vec2Spec, spec_from_hf_config

# base-model prefix inside head checkpoints (XForCTC, XForPreTraining, ...)
PREFIXES = {"wavlm": "wavlm.", "hubert": "hubert.", "wav2vec2": "wav2vec2.",
            "wav2vec2-bert": "wav2vec2_bert."}

# upstream keys dropped on purpose (regex on the key after prefix stripping) -> reason
DROPPED: dict[str, str] = {
    r"masked_spec_embed": "SpecAugment mask vector (training only)",
    r"quantizer\..+": "wav2vec 2.0 pre-training quantizer (codevectors, weight_proj)",
    r"project_q\..+": "pre-training projection of quantized targets",
    r"project_hid\..+": "pre-training projection of the context network output",
    r"lm_head\..+": "CTC head",
    r"(projector|classifier|objective|tdnn)\..+": "classification / x-vector heads",
    r"feature_extractor\.(weight|bias)": "x-vector head's output Linear (not the conv stack)",
    r"layer_weights": "weighted-layer-sum head",
    r"encoder\.pos_conv_embed\.batch_norm\.num_batches_tracked": "BatchNorm step counter",
    r"adapter\..+": "w2v-BERT fine-tuning adapter after the encoder (outside hidden_states)",
    r"intermediate_ffn\..+": "w2v-BERT feed-forward before the adapter (outside hidden_states)",
}
_DROPPED = [re.compile(p + r"$") for p in DROPPED]

POS_CONV = "encoder.pos_conv_embed.conv"
_WEIGHT_NORM_SPELLINGS = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)

# --- the rename lists: upstream key -> (our key, kind) ---------------------------------------
WAV2VEC2_CONV_LAYER = {  # feature_extractor.conv_layers.{i}.
    "conv.weight": ("conv.weight", "conv1d"),
    "conv.bias": ("conv.bias", "plain"),
    "layer_norm.weight": ("norm.weight", "plain"),
    "layer_norm.bias": ("norm.bias", "plain"),
}
WAV2VEC2_TOP = {
    "feature_projection.layer_norm.weight": ("feature_projection.layer_norm.weight", "plain"),
    "feature_projection.layer_norm.bias": ("feature_projection.layer_norm.bias", "plain"),
    "feature_projection.projection.weight": ("feature_projection.projection.weight", "plain"),
    "feature_projection.projection.bias": ("feature_projection.projection.bias", "plain"),
    f"{POS_CONV}.weight": (f"{POS_CONV}.weight", "conv1d"),  # folded from g / v, see docstring
    f"{POS_CONV}.bias": (f"{POS_CONV}.bias", "plain"),
    "encoder.pos_conv_embed.batch_norm.weight":
        ("encoder.pos_conv_embed.batch_norm.weight", "plain"),
    "encoder.pos_conv_embed.batch_norm.bias":
        ("encoder.pos_conv_embed.batch_norm.bias", "plain"),
    "encoder.pos_conv_embed.batch_norm.running_mean":
        ("encoder.pos_conv_embed.batch_norm.running_mean", "plain"),
    "encoder.pos_conv_embed.batch_norm.running_var":
        ("encoder.pos_conv_embed.batch_norm.running_var", "plain"),
    "encoder.layer_norm.weight": ("encoder.layer_norm.weight", "plain"),
    "encoder.layer_norm.bias": ("encoder.layer_norm.bias", "plain"),
}
WAV2VEC2_LAYER = {  # encoder.layers.{i}.
    "attention.q_proj.weight": ("self_attn.q_proj.weight", "plain"),
    "attention.q_proj.bias": ("self_attn.q_proj.bias", "plain"),
    "attention.k_proj.weight": ("self_attn.k_proj.weight", "plain"),
    "attention.k_proj.bias": ("self_attn.k_proj.bias", "plain"),
    "attention.v_proj.weight": ("self_attn.v_proj.weight", "plain"),
    "attention.v_proj.bias": ("self_attn.v_proj.bias", "plain"),
    "attention.out_proj.weight": ("self_attn.out_proj.weight", "plain"),
    "attention.out_proj.bias": ("self_attn.out_proj.bias", "plain"),
    "layer_norm.weight": ("norm1.weight", "plain"),
    "layer_norm.bias": ("norm1.bias", "plain"),
    "feed_forward.intermediate_dense.weight": ("linear1.weight", "plain"),
    "feed_forward.intermediate_dense.bias": ("linear1.bias", "plain"),
    "feed_forward.output_dense.weight": ("linear2.weight", "plain"),
    "feed_forward.output_dense.bias": ("linear2.bias", "plain"),
    "final_layer_norm.weight": ("norm2.weight", "plain"),
    "final_layer_norm.bias": ("norm2.bias", "plain"),
}
WAVLM_LAYER = {  # encoder.layers.{i}. (on top of WAV2VEC2_LAYER)
    "attention.gru_rel_pos_const": ("self_attn.gru_rel_pos_const", "plain"),
    "attention.gru_rel_pos_linear.weight": ("self_attn.gru_rel_pos_linear.weight", "plain"),
    "attention.gru_rel_pos_linear.bias": ("self_attn.gru_rel_pos_linear.bias", "plain"),
}
WAVLM_LAYER0 = {"attention.rel_attn_embed.weight": ("self_attn.rel_attn_embed.weight", "plain")}

W2V_BERT_TOP = {
    "feature_projection.layer_norm.weight": ("feature_projection.layer_norm.weight", "plain"),
    "feature_projection.layer_norm.bias": ("feature_projection.layer_norm.bias", "plain"),
    "feature_projection.projection.weight": ("feature_projection.projection.weight", "plain"),
    "feature_projection.projection.bias": ("feature_projection.projection.bias", "plain"),
}
W2V_BERT_LAYER = {  # encoder.layers.{i}.
    "ffn1_layer_norm.weight": ("ffn1.norm.weight", "plain"),
    "ffn1_layer_norm.bias": ("ffn1.norm.bias", "plain"),
    "ffn1.intermediate_dense.weight": ("ffn1.linear1.weight", "plain"),
    "ffn1.intermediate_dense.bias": ("ffn1.linear1.bias", "plain"),
    "ffn1.output_dense.weight": ("ffn1.linear2.weight", "plain"),
    "ffn1.output_dense.bias": ("ffn1.linear2.bias", "plain"),
    "self_attn_layer_norm.weight": ("norm_attn.weight", "plain"),
    "self_attn_layer_norm.bias": ("norm_attn.bias", "plain"),
    "self_attn.linear_q.weight": ("self_attn.q_proj.weight", "plain"),
    "self_attn.linear_q.bias": ("self_attn.q_proj.bias", "plain"),
    "self_attn.linear_k.weight": ("self_attn.k_proj.weight", "plain"),
    "self_attn.linear_k.bias": ("self_attn.k_proj.bias", "plain"),
    "self_attn.linear_v.weight": ("self_attn.v_proj.weight", "plain"),
    "self_attn.linear_v.bias": ("self_attn.v_proj.bias", "plain"),
    "self_attn.linear_out.weight": ("self_attn.out_proj.weight", "plain"),
    "self_attn.linear_out.bias": ("self_attn.out_proj.bias", "plain"),
    "conv_module.layer_norm.weight": ("conv.norm_in.weight", "plain"),
    "conv_module.layer_norm.bias": ("conv.norm_in.bias", "plain"),
    "conv_module.pointwise_conv1.weight": ("conv.pointwise_in.weight", "conv1d"),
    "conv_module.depthwise_conv.weight": ("conv.depthwise.weight", "conv1d"),
    "conv_module.depthwise_layer_norm.weight": ("conv.norm.weight", "plain"),
    "conv_module.depthwise_layer_norm.bias": ("conv.norm.bias", "plain"),
    "conv_module.pointwise_conv2.weight": ("conv.pointwise_out.weight", "conv1d"),
    "ffn2_layer_norm.weight": ("ffn2.norm.weight", "plain"),
    "ffn2_layer_norm.bias": ("ffn2.norm.bias", "plain"),
    "ffn2.intermediate_dense.weight": ("ffn2.linear1.weight", "plain"),
    "ffn2.intermediate_dense.bias": ("ffn2.linear1.bias", "plain"),
    "ffn2.output_dense.weight": ("ffn2.linear2.weight", "plain"),
    "ffn2.output_dense.bias": ("ffn2.linear2.bias", "plain"),
    "final_layer_norm.weight": ("norm_out.weight", "plain"),
    "final_layer_norm.bias": ("norm_out.bias", "plain"),
}
W2V_BERT_POSITION = {  # encoder.layers.{i}., by position_embeddings_type
    "relative": {
        "self_attn.linear_pos.weight": ("self_attn.linear_pos.weight", "plain"),
        "self_attn.pos_bias_u": ("self_attn.pos_bias_u", "plain"),
        "self_attn.pos_bias_v": ("self_attn.pos_bias_v", "plain"),
    },
    "relative_key": {
        "self_attn.distance_embedding.weight": ("self_attn.distance_embedding.weight", "plain"),
    },
}


def _wav2vec2_renames(spec: Wav2Vec2Spec) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for i in range(len(spec.conv_dim)):
        normed = spec.feat_extract_norm == "layer" or i == 0
        for k, (ours, kind) in WAV2VEC2_CONV_LAYER.items():
            if k == "conv.bias" and not spec.conv_bias:
                continue
            if k.startswith("layer_norm") and not normed:
                continue
            out[f"feature_extractor.conv_layers.{i}.{k}"] = (
                f"feature_extractor.conv_layers.{i}.{ours}", kind)
    for k, v in WAV2VEC2_TOP.items():
        if k.startswith("feature_projection.layer_norm") and not spec.feat_proj_layer_norm:
            continue
        if k.startswith("encoder.pos_conv_embed.batch_norm") and not spec.conv_pos_batch_norm:
            continue
        out[k] = v
    for i in range(spec.num_hidden_layers):
        layer = dict(WAV2VEC2_LAYER)
        if spec.model_type == "wavlm":
            layer.update(WAVLM_LAYER)
            if i == 0:
                layer.update(WAVLM_LAYER0)
        for k, (ours, kind) in layer.items():
            out[f"encoder.layers.{i}.{k}"] = (f"encoder.layers.{i}.{ours}", kind)
    return out


def _w2v_bert_renames(spec: W2VBertSpec) -> dict[str, tuple[str, str]]:
    out = dict(W2V_BERT_TOP)
    for i in range(spec.num_hidden_layers):
        layer = dict(W2V_BERT_LAYER)
        layer.update(W2V_BERT_POSITION.get(spec.position_embeddings_type or "", {}))
        for k, (ours, kind) in layer.items():
            out[f"encoder.layers.{i}.{k}"] = (f"encoder.layers.{i}.{ours}", kind)
    return out


def renames(spec: Spec) -> dict[str, tuple[str, str]]:
    """Upstream key -> (our key, layout kind) for every parameter of the model ``spec`` builds."""
    if isinstance(spec, Wav2Vec2Spec):
        return _wav2vec2_renames(spec)
    if isinstance(spec, W2VBertSpec):
        return _w2v_bert_renames(spec)
    raise CheckpointError(f"no SSL rename list for {type(spec).__name__}")


def fold_weight_norm_dim2(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """torch ``weight_norm(dim=2)``: ``v * g / ||v||`` (norm over axes 0, 1), float64 inside."""
    g64, v64 = g.astype(np.float64), v.astype(np.float64)
    if g64.shape != (1, 1, v64.shape[2]):
        raise CheckpointError(f"{POS_CONV}: weight-norm gain of shape {g.shape} does not match "
                              f"a dim=2 norm of weight {v.shape} (expected (1, 1, {v.shape[2]}))")
    norm = np.sqrt(np.sum(v64 * v64, axis=(0, 1), keepdims=True))
    return (v64 * (g64 / norm)).astype(np.float32)


def _strip_prefix(state: dict[str, Any], model_type: str) -> dict[str, Any]:
    prefix = PREFIXES[model_type]
    if not any(k.startswith(prefix) for k in state):
        return dict(state)
    # a head checkpoint: the base model lives under the prefix, everything else is a head
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _fold_pos_conv(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for g_name, v_name in _WEIGHT_NORM_SPELLINGS:
        g_key, v_key = f"{POS_CONV}.{g_name}", f"{POS_CONV}.{v_name}"
        if g_key in state or v_key in state:
            if g_key not in state or v_key not in state:
                raise CheckpointError(f"positional conv weight norm needs both {g_key} and {v_key}")
            if f"{POS_CONV}.weight" in state:
                raise CheckpointError(f"both {POS_CONV}.weight and its weight-norm parts "
                                      f"{g_key} / {v_key} are present")
            state = dict(state)
            state[f"{POS_CONV}.weight"] = fold_weight_norm_dim2(state.pop(g_key), state.pop(v_key))
    return state


def _short(keys: list[str], n: int = 6) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def hf_to_state(spec: Spec, state: dict[str, Any], *, layout: str) -> dict[str, np.ndarray]:
    """An upstream state dict (torch tensors or numpy) -> our keys (float32 numpy) in the
    ``layout`` of one framework: ``"mlx"`` or ``"torch"`` (torch_ref; only the conv kinds
    differ, see :mod:`mlx_speech.weights.layout`).

    Raises :class:`CheckpointError` naming missing, unexpected or dropped-but-required keys.
    """
    if layout not in ("mlx", "torch"):
        raise ValueError(f"layout must be 'mlx' or 'torch', got {layout!r}")
    arrays = {k: _as_numpy(v) for k, v in _strip_prefix(state, spec.model_type).items()}
    arrays = _fold_pos_conv(arrays)
    table = renames(spec)
    missing = sorted(set(table) - set(arrays))
    rest = sorted(set(arrays) - set(table))
    unexpected = [k for k in rest if not any(p.match(k) for p in _DROPPED)]
    if missing or unexpected:
        raise CheckpointError(f"{spec.model_type} checkpoint does not match its config: "
                              f"missing {_short(missing)}; unexpected {_short(unexpected)}")
    out = {}
    for k, (ours, kind) in table.items():
        w = arrays[k].astype(np.float32)
        try:
            in_mlx = to_mlx(kind, w, k)  # also checks the rank the kind declares
        except ValueError as exc:
            raise CheckpointError(f"{k}: {exc}") from None
        out[ours] = in_mlx if layout == "mlx" else np.ascontiguousarray(w)
    if len(out) != len(table):
        raise CheckpointError(f"rename list maps {len(table)} keys onto {len(out)} names")
    return out


def hf_to_mlx_state(spec: Spec, state: dict[str, Any]) -> dict[str, np.ndarray]:
    """An upstream state dict -> our MLX keys and layouts (float32); see :func:`hf_to_state`."""
    return hf_to_state(spec, state, layout="mlx")


def hf_to_torch_state(spec: Spec, state: dict[str, Any]) -> dict[str, np.ndarray]:
    """An upstream state dict -> our torch_ref keys and layouts (float32); see
    :func:`hf_to_state`."""
    return hf_to_state(spec, state, layout="torch")


def state_to_hf(spec: Spec, arrays: dict[str, np.ndarray], *,
                layout: str) -> dict[str, np.ndarray]:
    """Our arrays (MLX or torch_ref ``layout``) -> a transformers base-model state dict (numpy,
    torch layouts).

    The positional conv weight is written as a ``dim=2`` weight-norm parametrization
    (``original0 = g``, ``original1 = v``) unless the model uses HuBERT's batch-norm variant.
    """
    if layout not in ("mlx", "torch"):
        raise ValueError(f"layout must be 'mlx' or 'torch', got {layout!r}")
    table = renames(spec)
    inverse = {ours: (k, kind) for k, (ours, kind) in table.items()}
    missing = sorted(set(inverse) - set(arrays))
    extra = sorted(set(arrays) - set(inverse))
    if missing or extra:
        raise CheckpointError(f"{layout} arrays do not match the {spec.model_type} spec: "
                              f"missing {_short(missing)}; unexpected {_short(extra)}")
    out = {}
    for ours, (k, kind) in inverse.items():
        w = np.asarray(arrays[ours], np.float32)
        out[k] = to_torch(kind, w, ours) if layout == "mlx" else np.ascontiguousarray(w)
    if isinstance(spec, Wav2Vec2Spec) and not spec.conv_pos_batch_norm:
        w = out.pop(f"{POS_CONV}.weight")
        g = np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=(0, 1), keepdims=True))
        out[f"{POS_CONV}.parametrizations.weight.original0"] = g.astype(np.float32)
        out[f"{POS_CONV}.parametrizations.weight.original1"] = w
    return out


def mlx_to_hf_state(spec: Spec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our MLX arrays -> a transformers base-model state dict; see :func:`state_to_hf`."""
    return state_to_hf(spec, arrays, layout="mlx")


def torch_to_hf_state(spec: Spec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our torch_ref arrays -> a transformers base-model state dict; see :func:`state_to_hf`."""
    return state_to_hf(spec, arrays, layout="torch")


# --- reading a local HF directory --------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise CheckpointError(f"{path}: unreadable JSON ({reason})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def read_hf_state(directory: str | Path) -> dict[str, Any]:
    """The weights of a local HF directory (safetensors, sharded safetensors or a .bin)."""
    from mlx_speech.weights.checkpoint import load_pickle_state, read_safetensors  # noqa: PLC0415

    d = Path(directory)
    single = d / "model.safetensors"
    if single.is_file():
        return read_safetensors(single)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map", {})
        state: dict[str, Any] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(read_safetensors(d / shard))
        return state
    pickle = d / "pytorch_model.bin"
    if pickle.is_file():
        return load_pickle_state(pickle)
    raise CheckpointError(f"{d}: no model.safetensors, model.safetensors.index.json or "
                          f"pytorch_model.bin")


def read_hf_dir(directory: str | Path) -> tuple[Spec, dict[str, Any]]:
    """``(spec, upstream state dict)`` from a local transformers directory."""
    d = Path(directory)
    if not d.exists():
        raise CheckpointError(f"SSL weights directory not found: {d}")
    if not d.is_dir():
        raise CheckpointError(f"{d} is a file; pass the HF model directory (config.json + weights)")
    if not (d / "config.json").is_file():
        raise CheckpointError(f"{d}: no config.json (expected a transformers model directory)")
    config = _read_json(d / "config.json")
    pre = d / "preprocessor_config.json"
    do_normalize = _read_json(pre).get("do_normalize") if pre.is_file() else None
    spec = spec_from_hf_config(config, do_normalize=do_normalize)
    return spec, read_hf_state(d)
