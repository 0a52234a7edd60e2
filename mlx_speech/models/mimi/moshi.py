"""moshi's Mimi checkpoint format -> our Mimi (torch_ref state dict; MLX via ``mlx_speech.weights.core``).

moshi (``moshi.models.loaders.get_mimi`` / ``tokenizer-e351c8d8-checkpoint125.safetensors``)
names its SEANet layers by ``nn.Sequential`` position and wraps every convolution twice::

    encoder.model.{n}.conv.conv.{weight,bias}          decoder.model.{n}.convtr.convtr.{...}
    encoder.model.{n}.block.{1,3}.conv.conv.{...}      (residual unit: ELU, conv, ELU, conv)
    {encoder,decoder}_transformer.transformer.layers.{l}.self_attn.in_proj_weight   (q; k; v)
    ... .self_attn.out_proj.weight, norm1, norm2, linear1, linear2, layer_scale_{1,2}.scale
    downsample.conv.conv.conv.weight                   upsample.convtr.convtr.convtr.weight
    quantizer.rvq_{first,rest}.{input,output}_proj.weight         (1x1 convs)
    quantizer.rvq_{first,rest}.vq.layers.{i}._codebook.{embedding_sum,cluster_usage,_initialized}

moshi 0.2.13 saves the attention projections as ``self_attn.in_projs.0.weight`` /
``out_projs.0.weight``; both spellings are accepted (one per file). Weights are stored as
trained; the EMA codebook keeps moshi's ``embedding_sum`` and ``cluster_usage`` unchanged (our
codebook is ``embedding_sum / clamp(cluster_usage, eps)``, moshi's formula).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mlx_speech.models.mimi.keys import KeyMap, apply_key_map, seanet_indices
from mlx_speech.errors import CheckpointError
from mlx_speech.models.mimi.spec import MimiSpec, mimi_202407

# moshi 0.2.13 spelling -> the released checkpoint's spelling (the one the key map uses)
ATTENTION_ALIASES = {
    "self_attn.in_projs.0.weight": "self_attn.in_proj_weight",
    "self_attn.out_projs.0.weight": "self_attn.out_proj.weight",
}
# moshi's ProjectedTransformer wraps the stack: {side}_transformer.transformer.layers...
TRANSFORMER_PREFIX = "{side}_transformer.transformer.layers.{layer}."
LAYER_COPIES = {
    "self_attn.out_proj.weight": "self_attn.out_proj.weight",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "linear1.weight": "linear1.weight",
    "linear2.weight": "linear2.weight",
    "layer_scale_1.scale": "layer_scale_1.scale",
    "layer_scale_2.scale": "layer_scale_2.scale",
}
CODEBOOK_COPIES = {
    "_codebook.embedding_sum": "codebook.embedding_sum",
    "_codebook.cluster_usage": "codebook.cluster_usage",
    "_codebook._initialized": "codebook.initialized",
}
_WRAP = {"conv": "conv.conv", "convtr": "convtr.convtr"}


def moshi_key_map(spec: MimiSpec) -> KeyMap:
    """Every key of a moshi Mimi state dict of this spec, mapped to our names."""
    km = KeyMap()
    enc, dec = seanet_indices(spec.ratios, spec.n_residual_layers)
    for side, layers in (("encoder", enc), ("decoder", dec)):
        for idx, kind, ours in layers:
            for leaf in ("weight", "bias"):
                if kind == "residual":
                    for sub, conv in (("1", "conv1"), ("3", "conv2")):
                        km.copy[f"{side}.model.{idx}.block.{sub}.conv.conv.{leaf}"] = \
                            f"{ours}.{conv}.{leaf}"
                else:
                    km.copy[f"{side}.model.{idx}.{_WRAP[kind]}.{leaf}"] = f"{ours}.{leaf}"
    for side in ("encoder", "decoder"):
        for layer in range(spec.num_layers):
            up = TRANSFORMER_PREFIX.format(side=side, layer=layer)
            ours = f"{side}_transformer.layers.{layer}."
            km.split[up + "self_attn.in_proj_weight"] = tuple(
                f"{ours}self_attn.{p}_proj.weight" for p in ("q", "k", "v"))
            for src, dst in LAYER_COPIES.items():
                km.copy[up + src] = ours + dst
    km.copy["downsample.conv.conv.conv.weight"] = "downsample.weight"
    km.copy["upsample.convtr.convtr.convtr.weight"] = "upsample.weight"
    for group, count in (("rvq_first", spec.num_semantic), ("rvq_rest", spec.num_acoustic)):
        up = f"quantizer.{group}."
        km.squeeze[up + "input_proj.weight"] = f"quantizer.{group}.in_proj.weight"
        km.squeeze[up + "output_proj.weight"] = f"quantizer.{group}.out_proj.weight"
        for i in range(count):
            for src, dst in CODEBOOK_COPIES.items():
                km.copy[f"{up}vq.layers.{i}.{src}"] = f"quantizer.{group}.levels.{i}.{dst}"
    return km


def normalize_attention_names(state: dict[str, Any], where: str) -> dict[str, Any]:
    """Rename moshi 0.2.13's ``in_projs.0`` / ``out_projs.0`` to the released spelling."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for alias, canonical in ATTENTION_ALIASES.items():
            if key.endswith(alias):
                new = key[: -len(alias)] + canonical
        if new in out:
            raise CheckpointError(f"{where}: both spellings of {new} are present")
        out[new] = value
    return out


_LEVEL = re.compile(r"^quantizer\.(rvq_first|rvq_rest)\.vq\.layers\.(\d+)\._codebook\.")


def spec_from_moshi_state(state: dict[str, Any], *, num_codebooks: int | None = None,
                          base: MimiSpec | None = None) -> MimiSpec:
    """The spec of a moshi state dict: ``base`` (default ``mimi_202407``) with the codebook
    counts read from the keys; ``num_codebooks`` (default ``min(8, total)``) is clamped-checked."""
    levels = {"rvq_first": set(), "rvq_rest": set()}
    for key in state:
        m = _LEVEL.match(key)
        if m:
            levels[m.group(1)].add(int(m.group(2)))
    first, rest = len(levels["rvq_first"]), len(levels["rvq_rest"])
    if not first or not rest:
        raise CheckpointError("moshi Mimi checkpoint: no quantizer codebooks "
                              "(quantizer.rvq_first / rvq_rest .vq.layers.N._codebook.*) found")
    base = base or mimi_202407()
    total = first + rest
    k = num_codebooks if num_codebooks is not None else min(base.num_codebooks, total)
    return base.replace(num_semantic=first, total_codebooks=total, num_codebooks=k)


def convert_moshi_state(state: dict[str, Any], spec: MimiSpec, *,
                        where: str = "moshi Mimi checkpoint") -> dict[str, np.ndarray]:
    """A moshi Mimi state dict (either attention spelling) -> our torch_ref state dict."""
    return apply_key_map(normalize_attention_names(state, where), moshi_key_map(spec),
                         where=where)


def is_moshi_state(keys: Any) -> bool:
    return any(k.startswith("encoder.model.") for k in keys)
