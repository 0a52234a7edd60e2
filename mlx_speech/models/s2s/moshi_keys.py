"""moshi's LM state dict -> our :class:`~mlx_speech.models.s2s.lm.MoshiLM` state (torch_ref names
and layouts; MLX takes it through ``mlx_speech.weights.mlx``). numpy only.

:func:`moshi_key_map` is the one rename list: every upstream key a spec's ``LMModel`` saves is
listed once, with its shape, and cut into one or more of our tensors (:class:`Piece`: a block
of rows, then a reshape); keys deliberately ignored would be listed in ``dropped`` with the
reason (the supported configs have none). What moshi saves, per module::

    text_emb.weight, emb.{i}.weight                  (vocab + 1, dim): row vocab = initial token
    {text_emb,emb.{i},depformer_*emb*}.norm.{weight,bias}        with norm_emb (a LayerNorm)
    transformer.layers.{l}.self_attn.in_proj_weight  (q; k; v) rows, one block per weight set
    transformer.layers.{l}.self_attn.out_proj.weight (one (dim, dim) block per weight set)
    transformer.layers.{l}.norm{1,2}.alpha           RMSNorm gain (1, 1, dim) -> weight (dim,)
    transformer.layers.{l}.norm{1,2}.{weight,bias}   LayerNorm
    transformer.layers.{l}.gating.linear_in.weight   (2 h, dim) = gate rows; up rows
    transformer.layers.{l}.gating.linear_out.weight  -> down_proj
    transformer.layers.{l}.linear{1,2}.weight        gating "none" (GELU MLP)
    transformer.layers.{l}.layer_scale_{1,2}.scale   with layer_scale
    out_norm.*, text_linear.{weight,bias}, depformer_in.{i}.weight, depformer_emb.{i}.weight,
    depformer_text_emb.weight, depformer_norms.{i}.*, linears.{i}.{weight,bias},
    extra_heads.{i}.weight
    depformer.layers.{l}.*                           as the temporal layers, but per weight set
                                                     s: gating.{s}.linear_{in,out}, and
                                                     in_proj / out_proj stacked over s

The released checkpoints spell the attention projections ``in_proj_weight`` /
``out_proj.weight`` (stacked over weight sets, what this map lists); moshi 0.2.13 saves
``in_projs.{s}.weight`` / ``out_projs.{s}.weight``, one per set, which
:func:`stack_attention` turns into the released spelling first. Shapes are asserted and any
missing, unexpected or mis-shaped key is one :class:`CheckpointError` naming them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError
from mlx_speech.models.s2s.lm_spec import NORMS, MoshiLMSpec
from mlx_speech.weights.core import _as_numpy
from mlx_speech.weights.strict import short


@dataclasses.dataclass(frozen=True)
class Piece:
    """One of our tensors cut from an upstream one: rows ``rows`` (None: all), then ``shape``."""

    ours: str
    shape: tuple[int, ...]
    rows: tuple[int, int] | None = None


@dataclasses.dataclass
class MoshiKeyMap:
    """``renames``: upstream key -> (its shape, the pieces it becomes); ``dropped``: upstream
    key -> why it is not loaded."""

    renames: dict[str, tuple[tuple[int, ...], tuple[Piece, ...]]] = dataclasses.field(
        default_factory=dict)
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, key: str, shape: tuple[int, ...], *pieces: Piece) -> None:
        if key in self.renames or key in self.dropped:
            raise AssertionError(f"moshi key map lists {key} twice")
        self.renames[key] = (tuple(shape), pieces)

    def ours(self) -> dict[str, tuple[int, ...]]:
        """Our keys with their shapes (each made exactly once)."""
        out: dict[str, tuple[int, ...]] = {}
        for _, pieces in self.renames.values():
            for p in pieces:
                if p.ours in out:
                    raise AssertionError(f"moshi key map makes {p.ours} twice")
                out[p.ours] = p.shape
        return out


def _norm(km: MoshiKeyMap, up: str, ours: str, kind: str, dim: int) -> None:
    """A norm: moshi's RMSNorm ``alpha (1, 1, D)``, or a LayerNorm's weight and bias."""
    if NORMS[kind][0] == "rms":
        km.add(f"{up}.alpha", (1, 1, dim), Piece(f"{ours}.weight", (dim,)))
    else:
        km.add(f"{up}.weight", (dim,), Piece(f"{ours}.weight", (dim,)))
        km.add(f"{up}.bias", (dim,), Piece(f"{ours}.bias", (dim,)))


def _embedding(km: MoshiKeyMap, name: str, rows: int, dim: int, norm: bool) -> None:
    km.add(f"{name}.weight", (rows, dim), Piece(f"{name}.weight", (rows, dim)))
    if norm:  # ScaledEmbedding(norm=True): a LayerNorm after the lookup
        _norm(km, f"{name}.norm", f"{name}.norm", "layer_norm", dim)


def _linear(km: MoshiKeyMap, name: str, out_dim: int, in_dim: int, bias: bool) -> None:
    km.add(f"{name}.weight", (out_dim, in_dim), Piece(f"{name}.weight", (out_dim, in_dim)))
    if bias:
        km.add(f"{name}.bias", (out_dim,), Piece(f"{name}.bias", (out_dim,)))


def _layer(km: MoshiKeyMap, up: str, ours: str, *, dim: int, heads: int, kv_repeat: int,
           norm: str, gating: str, hiddens: list[int], layer_scale: bool, lists: bool,
           per_step: bool) -> None:
    """One transformer layer with ``len(hiddens)`` weight sets. ``lists``: our attention and
    FFN are lists, ``self_attn.{s}`` / ``ffn.{s}`` (the depformer), else the shared layer's
    names; ``per_step``: moshi's gating is a list (``gating.{s}``, weights per step)."""
    kv = (dim // heads) * (heads // kv_repeat)
    block = dim + 2 * kv
    n = len(hiddens)
    attn = [f"{ours}.self_attn.{s}" if lists else f"{ours}.self_attn" for s in range(n)]
    ffn = [f"{ours}.ffn.{s}" if lists else ours for s in range(n)]
    km.add(f"{up}.self_attn.in_proj_weight", (n * block, dim), *(
        Piece(f"{attn[s]}.{p}_proj.weight", (rows, dim), (s * block + lo, s * block + lo + rows))
        for s in range(n)
        for p, lo, rows in (("q", 0, dim), ("k", dim, kv), ("v", dim + kv, kv))))
    km.add(f"{up}.self_attn.out_proj.weight", (n * dim, dim), *(
        Piece(f"{attn[s]}.out_proj.weight", (dim, dim), (s * dim, (s + 1) * dim))
        for s in range(n)))
    _norm(km, f"{up}.norm1", f"{ours}.norm1", norm, dim)
    _norm(km, f"{up}.norm2", f"{ours}.norm2", norm, dim)
    for s, h in enumerate(hiddens):
        if gating == "none":
            km.add(f"{up}.linear1.weight", (h, dim), Piece(f"{ffn[s]}.linear1.weight", (h, dim)))
            km.add(f"{up}.linear2.weight", (dim, h), Piece(f"{ffn[s]}.linear2.weight", (dim, h)))
            continue
        g = f"{up}.gating.{s}" if per_step else f"{up}.gating"
        km.add(f"{g}.linear_in.weight", (2 * h, dim),
               Piece(f"{ffn[s]}.gate_proj.weight", (h, dim), (0, h)),
               Piece(f"{ffn[s]}.up_proj.weight", (h, dim), (h, 2 * h)))
        km.add(f"{g}.linear_out.weight", (dim, h), Piece(f"{ffn[s]}.down_proj.weight", (dim, h)))
    if layer_scale:
        for i in (1, 2):
            km.add(f"{up}.layer_scale_{i}.scale", (dim,),
                   Piece(f"{ours}.layer_scale_{i}.scale", (dim,)))


def moshi_key_map(spec: MoshiLMSpec) -> MoshiKeyMap:
    """Every key of the state dict moshi's ``LMModel(**spec.to_moshi_config())`` saves (released
    spelling), mapped onto our names."""
    km = MoshiKeyMap()
    s = spec
    _embedding(km, "text_emb", s.text_card + 1, s.dim, s.norm_emb)
    for i in range(s.n_q):
        _embedding(km, f"emb.{i}", s.card + 1, s.dim, s.norm_emb)
    for layer in range(s.num_layers):
        _layer(km, f"transformer.layers.{layer}", f"transformer.layers.{layer}", dim=s.dim,
               heads=s.num_heads, kv_repeat=s.kv_repeat, norm=s.norm, gating=s.gating,
               hiddens=[s.main_ffn_hidden], layer_scale=s.layer_scale is not None,
               lists=False, per_step=False)
    _norm(km, "out_norm", "out_norm", s.norm, s.dim)
    _linear(km, "text_linear", s.text_vocab_out, s.dim, s.bias_proj)
    for i in range(s.depformer_num_in):
        _linear(km, f"depformer_in.{i}", s.depformer_dim, s.dim, False)
    for i in range(s.dep_q - 1):
        _embedding(km, f"depformer_emb.{i}", s.card + 1, s.depformer_dim, s.norm_emb)
    _embedding(km, "depformer_text_emb", s.text_card + 1, s.depformer_dim, s.norm_emb)
    if s.depformer_norm is not None:
        for i in range(s.dep_q):
            _norm(km, f"depformer_norms.{i}", f"depformer_norms.{i}", s.depformer_norm,
                  s.depformer_dim)
    for layer in range(s.depformer_num_layers):
        _layer(km, f"depformer.layers.{layer}", f"depformer.layers.{layer}",
               dim=s.depformer_dim, heads=s.depformer_num_heads, kv_repeat=s.depformer_kv_repeat,
               norm=s.norm, gating=s.depformer_gating, hiddens=s.depformer_ffn_hiddens,
               layer_scale=s.depformer_layer_scale is not None, lists=True,
               per_step=s.depformer_weights_per_step)
    for i in range(s.dep_q):
        _linear(km, f"linears.{i}", s.card, s.depformer_dim, s.bias_proj)
    for i in range(s.extra_heads_num_heads):
        _linear(km, f"extra_heads.{i}", s.extra_heads_dim, s.dim, False)
    return km


_PER_SET = re.compile(r"^(.*\.self_attn)\.(in_projs|out_projs)\.(\d+)\.weight$")
_ALIASES = {".self_attn.in_proj.weight": ".self_attn.in_proj_weight"}


def stack_attention(state: dict[str, Any], where: str) -> dict[str, Any]:
    """moshi 0.2.13's per-set ``in_projs.{s}.weight`` / ``out_projs.{s}.weight`` (and the
    ``in_proj.weight`` alias) -> the released, stacked ``in_proj_weight`` / ``out_proj.weight``."""
    out: dict[str, Any] = {}
    groups: dict[str, dict[int, Any]] = {}
    for key, value in state.items():
        m = _PER_SET.match(key)
        if m:
            name = m.group(1) + (".in_proj_weight" if m.group(2) == "in_projs"
                                 else ".out_proj.weight")
            groups.setdefault(name, {})[int(m.group(3))] = value
            continue
        for alias, canonical in _ALIASES.items():
            if key.endswith(alias):
                key = key[: -len(alias)] + canonical
        if key in out:
            raise CheckpointError(f"{where}: two spellings of {key} are present")
        out[key] = value
    for name, sets in groups.items():
        if name in out:
            raise CheckpointError(f"{where}: two spellings of {name} are present")
        if sorted(sets) != list(range(len(sets))):
            raise CheckpointError(f"{where}: {name}: weight sets {sorted(sets)} are not 0..N-1")
        arrays = [_as_numpy(sets[i]) for i in range(len(sets))]
        out[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return out


def convert_moshi_lm_state(state: dict[str, Any], spec: MoshiLMSpec, *,
                           where: str = "moshi LM checkpoint") -> dict[str, np.ndarray]:
    """A moshi LM state dict (either attention spelling; numpy arrays or tensors, any float
    dtype) -> our torch_ref state dict (float32 numpy), checked key by key and shape by shape."""
    km = moshi_key_map(spec)
    state = stack_attention(state, where)
    expected = set(km.renames) | set(km.dropped)
    unknown = sorted(set(state) - expected)
    missing = sorted(set(km.renames) - set(state))
    if unknown or missing:
        raise CheckpointError(f"{where}: keys do not match a moshi LM of this config: "
                              f"missing {short(missing)}; unexpected {short(unknown)}")
    arrays = {k: _as_numpy(state[k]) for k in km.renames}
    bad = [f"{k} {tuple(arrays[k].shape)} != {shape}" for k, (shape, _) in km.renames.items()
           if tuple(arrays[k].shape) != shape]
    if bad:
        raise CheckpointError(f"{where}: shape mismatch with its config: {'; '.join(bad[:4])}"
                              + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""))
    out: dict[str, np.ndarray] = {}
    for key, (_, pieces) in km.renames.items():
        w = arrays[key]
        if not np.issubdtype(w.dtype, np.floating):
            raise CheckpointError(f"{where}: {key} holds {w.dtype}, not floating-point weights")
        w = np.asarray(w, dtype=np.float32)
        for p in pieces:
            part = w if p.rows is None else w[p.rows[0]: p.rows[1]]
            out[p.ours] = np.ascontiguousarray(part.reshape(p.shape))
    if len(out) != len(km.ours()):
        raise AssertionError(f"moshi key map produced {len(out)} tensors, "
                             f"expected {len(km.ours())}")
    return out


def is_moshi_lm_state(keys: Any) -> bool:
    """Whether state-dict keys look like a moshi LM (a text embedding, a temporal transformer
    and a text head; never decided by shapes)."""
    keys = set(keys)
    return ("text_emb.weight" in keys and "text_linear.weight" in keys
            and any(k.startswith("transformer.layers.") for k in keys))
