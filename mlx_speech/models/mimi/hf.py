"""transformers' Mimi format (``MimiModel``: ``config.json`` + ``model.safetensors``) -> our Mimi.

The released ``kyutai/mimi`` files (and ``MimiModel.save_pretrained``) use a flat layout::

    encoder.layers.{n}.conv.{weight,bias}              decoder.layers.{n}.conv.{...} (also convtr)
    encoder.layers.{n}.block.{1,3}.conv.{...}          (residual unit)
    {encoder,decoder}_transformer.layers.{l}.self_attn.{q,k,v,o}_proj.weight
    ... .input_layernorm, post_attention_layernorm, mlp.fc1, mlp.fc2,
    ... .self_attn_layer_scale.scale, mlp_layer_scale.scale
    downsample.conv.weight                             upsample.conv.weight
    quantizer.{semantic,acoustic}_residual_vector_quantizer.{input,output}_proj.weight
    quantizer.{...}.layers.{i}.codebook.{embed_sum,cluster_usage,initialized}

transformers >= 5 nests them in memory (``encoder.encoder_seanet.layers``, ``encoder.
encoder_transformer``, ``encoder.downsample``, ``decoder.upsample``, ...); those prefixes are
accepted too (:data:`NESTED_PREFIXES`).

RoPE: HF rotates halves (feature ``j`` pairs with ``j + Dh/2``) where moshi rotates
interleaved pairs (``2i``, ``2i+1``). Its conversion script reorders the rows of ``q_proj`` and
``k_proj`` inside every head to match; we undo that permutation (``permute``), otherwise the
model still runs but attends with wrong positions - silently wrong audio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.models.mimi.keys import KeyMap, apply_key_map, seanet_indices
from mlx_speech.errors import CheckpointError
from mlx_speech.models.mimi.spec import MimiSpec

# transformers >= 5 in-memory names -> the flat file names (checked in this order)
NESTED_PREFIXES = (
    ("encoder.encoder_seanet.layers.", "encoder.layers."),
    ("encoder.encoder_transformer.", "encoder_transformer."),
    ("encoder.downsample.", "downsample."),
    ("decoder.upsample.", "upsample."),
    ("decoder.decoder_transformer.", "decoder_transformer."),
    ("decoder.decoder_seanet.layers.", "decoder.layers."),
)
LAYER_COPIES = {
    "self_attn.v_proj.weight": "self_attn.v_proj.weight",
    "self_attn.o_proj.weight": "self_attn.out_proj.weight",
    "input_layernorm.weight": "norm1.weight",
    "input_layernorm.bias": "norm1.bias",
    "post_attention_layernorm.weight": "norm2.weight",
    "post_attention_layernorm.bias": "norm2.bias",
    "mlp.fc1.weight": "linear1.weight",
    "mlp.fc2.weight": "linear2.weight",
    "self_attn_layer_scale.scale": "layer_scale_1.scale",
    "mlp_layer_scale.scale": "layer_scale_2.scale",
}
LAYER_PERMUTED = {
    "self_attn.q_proj.weight": "self_attn.q_proj.weight",
    "self_attn.k_proj.weight": "self_attn.k_proj.weight",
}
CODEBOOK_COPIES = {
    "codebook.embed_sum": "codebook.embedding_sum",
    "codebook.cluster_usage": "codebook.cluster_usage",
    "codebook.initialized": "codebook.initialized",
}
GROUPS = (("semantic_residual_vector_quantizer", "rvq_first"),
          ("acoustic_residual_vector_quantizer", "rvq_rest"))


def hf_key_map(spec: MimiSpec) -> KeyMap:
    """Every key of a transformers ``MimiModel`` file of this spec, mapped to our names."""
    km = KeyMap(num_heads=spec.num_heads)
    enc, dec = seanet_indices(spec.ratios, spec.n_residual_layers)
    for side, layers in (("encoder", enc), ("decoder", dec)):
        for idx, kind, ours in layers:
            for leaf in ("weight", "bias"):
                if kind == "residual":
                    for sub, conv in (("1", "conv1"), ("3", "conv2")):
                        km.copy[f"{side}.layers.{idx}.block.{sub}.conv.{leaf}"] = \
                            f"{ours}.{conv}.{leaf}"
                else:
                    km.copy[f"{side}.layers.{idx}.conv.{leaf}"] = f"{ours}.{leaf}"
    for side in ("encoder", "decoder"):
        for layer in range(spec.num_layers):
            up = f"{side}_transformer.layers.{layer}."
            ours = f"{side}_transformer.layers.{layer}."
            for src, dst in LAYER_COPIES.items():
                km.copy[up + src] = ours + dst
            for src, dst in LAYER_PERMUTED.items():
                km.permute[up + src] = ours + dst
    km.copy["downsample.conv.weight"] = "downsample.weight"
    km.copy["upsample.conv.weight"] = "upsample.weight"
    for (hf, group), count in zip(GROUPS, (spec.num_semantic, spec.num_acoustic)):
        up = f"quantizer.{hf}."
        km.squeeze[up + "input_proj.weight"] = f"quantizer.{group}.in_proj.weight"
        km.squeeze[up + "output_proj.weight"] = f"quantizer.{group}.out_proj.weight"
        for i in range(count):
            for src, dst in CODEBOOK_COPIES.items():
                km.copy[f"{up}layers.{i}.{src}"] = f"quantizer.{group}.levels.{i}.{dst}"
    return km


def flatten_nested_names(state: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for nested, flat in NESTED_PREFIXES:
            if key.startswith(nested):
                new = flat + key[len(nested):]
                break
        if new in out:
            raise CheckpointError(f"{where}: both the nested and the flat name of {new} are present")
        out[new] = value
    return out


def spec_from_hf_config(config: dict[str, Any], *, num_codebooks: int | None = None) -> MimiSpec:
    """Our spec from a transformers ``MimiConfig`` dict (``config.json``); unsupported
    variants (conv shortcut, non-causal convs, other upsampling groups) are errors."""
    def get(key: str, default: Any) -> Any:
        return config.get(key, default) if config.get(key) is not None else default

    if config.get("model_type", "mimi") != "mimi":
        raise CheckpointError(f"config.json: model_type {config.get('model_type')!r} is not mimi")
    unsupported = []
    if get("use_conv_shortcut", False):
        unsupported.append("use_conv_shortcut=true")
    if not get("use_causal_conv", True):
        unsupported.append("use_causal_conv=false")
    if get("trim_right_ratio", 1.0) != 1.0:
        unsupported.append("trim_right_ratio != 1")
    hidden = get("hidden_size", 512)
    if get("upsample_groups", hidden) != hidden:
        unsupported.append("upsample_groups != hidden_size")
    heads = get("num_attention_heads", 8)
    if get("num_key_value_heads", heads) != heads or get("head_dim", hidden // heads) != hidden // heads:
        unsupported.append("grouped-query or custom head_dim attention")
    if get("attention_bias", False):
        unsupported.append("attention_bias=true")
    if get("hidden_act", "gelu") != "gelu":
        unsupported.append(f"hidden_act={config.get('hidden_act')!r}")
    if unsupported:
        raise CheckpointError(f"config.json: unsupported Mimi variant: {', '.join(unsupported)}")
    rope = get("rope_parameters", {}) or {}
    theta = rope.get("rope_theta", get("rope_theta", 10000.0))
    total = int(get("num_quantizers", 32))
    ratios = list(get("upsampling_ratios", [8, 6, 5, 4]))
    sr = int(get("sampling_rate", 24000))
    frame_rate = config.get("frame_rate") or config.get("_frame_rate") or \
        sr / (int(np.prod(ratios)) * 2)
    data = {
        "sample_rate": sr, "channels": int(get("audio_channels", 1)),
        "frame_rate": float(frame_rate), "dimension": hidden,
        "n_filters": int(get("num_filters", 64)), "ratios": ratios,
        "kernel_size": int(get("kernel_size", 7)),
        "last_kernel_size": int(get("last_kernel_size", 3)),
        "residual_kernel_size": int(get("residual_kernel_size", 3)),
        "n_residual_layers": int(get("num_residual_layers", 1)),
        "dilation_base": int(get("dilation_growth_rate", 2)),
        "compress": int(get("compress", 2)), "pad_mode": get("pad_mode", "constant"),
        "num_layers": int(get("num_hidden_layers", 8)), "num_heads": heads,
        "ffn_dim": int(get("intermediate_size", 2048)),
        "context": int(get("sliding_window", 250)),
        "layer_scale": float(get("layer_scale_initial_scale", 0.01)),
        "max_period": float(theta), "norm_eps": float(get("norm_eps", 1e-5)),
        "rvq_dim": int(get("vector_quantization_hidden_dimension", 256)),
        "codebook_size": int(get("codebook_size", 2048)),
        "num_semantic": int(get("num_semantic_quantizers", 1)), "total_codebooks": total,
        "num_codebooks": num_codebooks if num_codebooks is not None else min(8, total),
    }
    if get("codebook_dim", data["rvq_dim"]) != data["rvq_dim"]:
        raise CheckpointError("config.json: codebook_dim must equal "
                              "vector_quantization_hidden_dimension")
    return MimiSpec.from_dict(data)


def read_hf_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"transformers Mimi checkpoint: {p} not found") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: unreadable config.json ({exc})") from None


def convert_hf_state(state: dict[str, Any], spec: MimiSpec, *,
                     where: str = "transformers Mimi checkpoint") -> dict[str, np.ndarray]:
    """A transformers ``MimiModel`` state dict (flat or nested names) -> our torch_ref state."""
    return apply_key_map(flatten_nested_names(state, where), hf_key_map(spec), where=where)


def is_hf_state(keys: Any) -> bool:
    return any(k.startswith(("encoder.layers.", "encoder.encoder_seanet.")) for k in keys)
