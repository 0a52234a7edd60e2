"""vector-quantize-pytorch ``VectorQuantize`` / ``ResidualVQ`` state dicts -> our quantizers.

A flat, explicit rename list; every upstream key is either renamed or listed as deliberately
dropped, counts and shapes are asserted, and a mismatch is a :class:`CheckpointError` naming the
keys. The result is a state dict for ``VectorQuantizer`` / ``ResidualVQ`` with identical keys in
torch_ref and MLX (all parameters here are "plain": Linear ``(out, in)`` and codebook arrays).

The codebook fold. Upstream quantizes with ``_codebook.embed (1, K, d)`` and keeps the EMA
statistics ``cluster_size (1, K)`` and ``embed_avg (1, K, d)`` separately; its ``embed`` equals
``embed_avg / smoothed(cluster_size)`` only right after an EMA step. We store one pair,
``embedding_sum`` and ``cluster_usage``, with codebook ``embedding_sum / clamp(cluster_usage,
eps)``, so we keep upstream's usage and set ``embedding_sum = embed * clamp(cluster_size, eps)``
(float64 product, rounded once). The rebuilt codebook equals ``embed`` to within one float32
rounding (exactly where the usage is 1, e.g. a never-trained upstream codebook); the upstream
parity test checks that the codes are identical. ``embed_avg`` is dropped.

Only the single-head Euclidean / cosine-similarity codebooks are supported (no multi-head,
affine, learnable or rotation-specific state): anything else is an unknown key and an error.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mlx_speech.weights.core import _as_numpy
from mlx_speech.errors import CheckpointError
from mlx_speech.specs.quantize import EMACodebookSpec, RVQSpec, VQSpec

# upstream key (inside one VectorQuantize) -> our key (inside one VectorQuantizer)
VQ_RENAMES: dict[str, str] = {
    "project_in.weight": "in_proj.weight",
    "project_in.bias": "in_proj.bias",
    "project_out.weight": "out_proj.weight",
    "project_out.bias": "out_proj.bias",
    "_codebook.embed": "codebook.embedding_sum",  # folded with cluster_size, see docstring
    "_codebook.cluster_size": "codebook.cluster_usage",
    "_codebook.initted": "codebook.initialized",
}
# upstream keys we drop on purpose, with the reason
VQ_DROPPED: dict[str, str] = {
    "_codebook.embed_avg": "EMA sum; the codebook is rebuilt from embed and cluster_size",
}
# ResidualVQ's shared projections (when codebook_dim != dim) -> our ResidualVQ in/out_proj
RVQ_RENAMES: dict[str, str] = {
    "project_in.weight": "in_proj.weight",
    "project_in.bias": "in_proj.bias",
    "project_out.weight": "out_proj.weight",
    "project_out.bias": "out_proj.bias",
}
_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_REQUIRED = ("_codebook.embed", "_codebook.cluster_size", "_codebook.initted")


def _unknown(keys: list[str], what: str) -> CheckpointError:
    more = f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""
    return CheckpointError(f"{what}: unsupported upstream keys {', '.join(keys[:6])}{more}")


def _leaf(key: str) -> str:
    m = _LAYER.match(key)
    return m.group(2) if m else key


def _check_count(src: dict[str, np.ndarray], out: dict[str, np.ndarray], where: str) -> None:
    # every upstream key is renamed one-to-one except the deliberately dropped ones
    dropped = sum(1 for k in src if _leaf(k) in VQ_DROPPED)
    if len(out) != len(src) - dropped:
        raise CheckpointError(f"{where}: {len(src)} upstream keys ({dropped} dropped) gave "
                              f"{len(out)} keys")


def _convert_vq(state: dict[str, np.ndarray], *, epsilon: float, where: str) -> dict[str, np.ndarray]:
    unknown = sorted(k for k in state if k not in VQ_RENAMES and k not in VQ_DROPPED)
    if unknown:
        raise _unknown(unknown, where)
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{where}: missing upstream keys {', '.join(missing)}")
    embed = state["_codebook.embed"]
    usage = state["_codebook.cluster_size"]
    if embed.ndim != 3 or embed.shape[0] != 1:
        raise CheckpointError(f"{where}: _codebook.embed must be (1, K, d) (single head), got {embed.shape}")
    k, d = embed.shape[1:]
    if usage.shape != (1, k):
        raise CheckpointError(f"{where}: _codebook.cluster_size must be (1, {k}), got {usage.shape}")
    if "_codebook.embed_avg" in state and state["_codebook.embed_avg"].shape != (1, k, d):
        raise CheckpointError(f"{where}: _codebook.embed_avg must be (1, {k}, {d})")
    has_in, has_out = "project_in.weight" in state, "project_out.weight" in state
    if has_in != has_out:
        raise CheckpointError(f"{where}: project_in and project_out must come together")
    if has_in and (state["project_in.weight"].shape[0] != d or state["project_out.weight"].shape[1] != d):
        raise CheckpointError(f"{where}: projections do not match the codebook width {d}")
    u = usage[0].astype(np.float64)
    if not np.all(np.isfinite(u)) or u.sum() <= 0:
        u = np.ones_like(u)  # no usable statistics: keep the codes exactly
    u = np.maximum(u, epsilon)
    out: dict[str, np.ndarray] = {
        "codebook.embedding_sum": (embed[0].astype(np.float64) * u[:, None]).astype(np.float32),
        "codebook.cluster_usage": u.astype(np.float32),
        "codebook.initialized": np.asarray(state["_codebook.initted"], dtype=np.float32).reshape(1),
    }
    for up, ours in VQ_RENAMES.items():
        if up in state and not up.startswith("_codebook."):
            out[ours] = state[up].astype(np.float32)
    return out


def convert_vector_quantize(state: dict[str, Any], *, epsilon: float = 1e-5) -> dict[str, np.ndarray]:
    """Upstream ``VectorQuantize.state_dict()`` -> ``VectorQuantizer`` state (numpy float32)."""
    arrays = {k: _as_numpy(v) for k, v in state.items()}
    out = _convert_vq(arrays, epsilon=epsilon, where="VectorQuantize")
    _check_count(arrays, out, "VectorQuantize")
    return out


def convert_residual_vq(state: dict[str, Any], *, epsilon: float = 1e-5) -> dict[str, np.ndarray]:
    """Upstream ``ResidualVQ.state_dict()`` -> ``ResidualVQ`` state (numpy float32)."""
    arrays = {k: _as_numpy(v) for k, v in state.items()}
    per_layer: dict[int, dict[str, np.ndarray]] = {}
    out: dict[str, np.ndarray] = {}
    unknown = []
    for key, v in arrays.items():
        m = _LAYER.match(key)
        if m:
            per_layer.setdefault(int(m.group(1)), {})[m.group(2)] = v
        elif key in RVQ_RENAMES:
            out[RVQ_RENAMES[key]] = v.astype(np.float32)
        else:
            unknown.append(key)
    if unknown:
        raise _unknown(sorted(unknown), "ResidualVQ")
    if not per_layer or sorted(per_layer) != list(range(len(per_layer))):
        raise CheckpointError(f"ResidualVQ: layers must be numbered 0..n-1, got {sorted(per_layer)}")
    if ("in_proj.weight" in out) != ("out_proj.weight" in out):
        raise CheckpointError("ResidualVQ: project_in and project_out must come together")
    for i, layer in sorted(per_layer.items()):
        for k, v in _convert_vq(layer, epsilon=epsilon, where=f"ResidualVQ layer {i}").items():
            out[f"levels.{i}.{k}"] = v
    _check_count(arrays, out, "ResidualVQ")
    return out


def vq_spec_from_state(state: dict[str, Any], *, l2_normalize: bool = False,
                       ema: EMACodebookSpec | None = None) -> VQSpec:
    """Our ``VQSpec`` for an upstream ``VectorQuantize`` state (cosine vs Euclidean is not in
    the state: pass ``l2_normalize=True`` for ``use_cosine_sim=True``)."""
    embed = _as_numpy(state["_codebook.embed"])
    k, d = embed.shape[1:]
    dim = _as_numpy(state["project_in.weight"]).shape[1] if "project_in.weight" in state else d
    return VQSpec(dim=int(dim), codebook_size=int(k), codebook_dim=int(d),
                  l2_normalize=l2_normalize, proj_bias="project_in.bias" in state or dim == d,
                  ema=ema or EMACodebookSpec())


def rvq_spec_from_state(state: dict[str, Any], *, l2_normalize: bool = False,
                        ema: EMACodebookSpec | None = None) -> RVQSpec:
    """Our ``RVQSpec`` for an upstream ``ResidualVQ`` state (shared projections have bias)."""
    sizes, width = [], None
    i = 0
    while f"layers.{i}._codebook.embed" in state:
        embed = _as_numpy(state[f"layers.{i}._codebook.embed"])
        sizes.append(int(embed.shape[1]))
        width = int(embed.shape[2])
        i += 1
    if not sizes:
        raise CheckpointError("ResidualVQ: no layers.<i>._codebook.embed keys found")
    projected = "project_in.weight" in state
    dim = int(_as_numpy(state["project_in.weight"]).shape[1]) if projected else width
    return RVQSpec(dim=dim, codebook_sizes=sizes, rvq_dim=width, force_projection=projected,
                   proj_bias="project_in.bias" in state, l2_normalize=l2_normalize,
                   ema=ema or EMACodebookSpec())
