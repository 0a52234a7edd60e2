"""Spec of the Moshi-style speech-text LM (issue 23, model B): temporal + depth transformer.

Field names are moshi's ``LMModel`` keyword arguments (``lm_kwargs``, the ``config.json`` of a
released moshi folder), so a config is read as it is (:meth:`MoshiLMSpec.from_moshi_config`) and
written back for moshi (:meth:`MoshiLMSpec.to_moshi_config`). Framework-free.

Streams: ``n_q`` audio codebooks of ``card`` codes plus one text stream of ``text_card``
tokens; the first ``dep_q`` audio codebooks are the model's own voice (predicted by the
depformer), the remaining ``n_q - dep_q`` are the user's (only ever input). ``delays`` has one
entry per stream (text first): stream ``k`` is read ``delays[k]`` frames late (the acoustic
delay). Token ids ``card`` / ``text_card`` are the initial tokens; ``-1`` (moshi's
``zero_token_id``) embeds as zeros.

The temporal transformer is ``num_layers`` pre-norm layers of width ``dim`` with ``num_heads``
heads (``kv_repeat`` query heads per key head), RoPE (``positional_embedding``) of
``max_period``, a causal window of ``context`` frames, a feed-forward of
``int(hidden_scale * dim)`` (``gating``: an activation-gated FFN, or ``"none"``: GELU MLP) and
``norm``. The depformer takes the same keys with a ``depformer_`` prefix; like moshi, where a
config leaves one out the temporal transformer's value is used (:meth:`from_moshi_config`),
its attention is never windowed (moshi sets the depformer's context to None whatever
``depformer_context`` says), and with ``depformer_weights_per_step`` each of the ``dep_q``
steps has its own attention projections and FFN (``depformer_weights_per_step_schedule`` maps
steps to shared weight sets).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_speech.errors import SpecError
from mlx_speech.specs.base import Spec, require

# moshi norm name -> (our norm kind, epsilon)  (moshi.modules.transformer.create_norm_fn)
NORMS = {"layer_norm": ("layer", 1e-5), "layer_norm_f32": ("layer", 1e-8),
         "rms_norm": ("rms", 1e-5), "rms_norm_f32": ("rms", 1e-8)}
# gated FFN activations both frameworks implement ("none": moshi's GELU MLP without gating)
GATINGS = ("none", "silu", "gelu", "relu", "elu", "identity")
POS_EMBS = ("none", "rope", "sin", "sin_rope", "rope_concat")
# keys the depformer takes from the temporal transformer unless the config gives depformer_*
INHERITED = ("num_layers", "layer_scale", "max_period", "gating", "kv_repeat",
             "positional_scale")
# moshi LMModel features we refuse (value = moshi's default, i.e. "not used")
UNSUPPORTED = {"conditioners": None, "fuser": None, "cross_attention": False, "lora": False,
               "quantize": False, "demux_second_text_stream": False,
               "demux_second_stream": False, "depformer_low_rank_embeddings": None,
               "skip_self_attn": False}
# moshi's own defaults (LMModel / StreamingTransformer), for keys a config.json leaves out
MOSHI_DEFAULTS: dict[str, Any] = {
    "delays": [0], "n_q": 8, "dep_q": 8, "card": 1024, "text_card": 32000, "dim": 128,
    "num_heads": 8, "hidden_scale": 4.0, "norm": "layer_norm", "norm_emb": False,
    "bias_proj": False, "depformer_dim": 256, "depformer_dim_feedforward": None,
    "depformer_multi_linear": False, "depformer_weights_per_step": False,
    "depformer_weights_per_step_schedule": None, "depformer_pos_emb": "sin",
    "depformer_norm": None, "existing_text_padding_id": 3, "existing_text_end_padding_id": 0,
    "extra_heads_num_heads": 0, "extra_heads_dim": 6, "context": None, "causal": True,
    "num_layers": 8, "layer_scale": None, "max_period": 10000.0, "gating": "none",
    "positional_embedding": "sin", "kv_repeat": 1, "positional_scale": 1.0,
    "text_card_out": None,
}


@dataclasses.dataclass
class MoshiLMSpec(Spec):
    """Hyper-parameters of :class:`~mlx_speech.models.s2s.lm.MoshiLM` (moshi's names; the
    defaults are the released ``moshiko`` model, see the module docstring for their meaning)."""

    dim: int = 4096
    text_card: int = 32000
    text_card_out: int | None = None
    existing_text_padding_id: int = 3
    existing_text_end_padding_id: int = 0
    n_q: int = 16
    dep_q: int = 8
    card: int = 2048
    num_heads: int = 32
    num_layers: int = 32
    hidden_scale: float = 4.125
    causal: bool = True
    layer_scale: float | None = None
    context: int | None = 3000
    max_period: float = 10000.0
    gating: str = "silu"
    norm: str = "rms_norm_f32"
    positional_embedding: str = "rope"
    positional_scale: float = 1.0
    kv_repeat: int = 1
    norm_emb: bool = False
    bias_proj: bool = False
    extra_heads_num_heads: int = 0
    extra_heads_dim: int = 6
    depformer_dim: int = 1024
    depformer_dim_feedforward: int | list[int] | None = 4224
    depformer_num_heads: int = 16
    depformer_num_layers: int = 6
    depformer_layer_scale: float | None = None
    depformer_multi_linear: bool = True
    depformer_context: int | None = 8
    depformer_max_period: float = 10000.0
    depformer_gating: str = "silu"
    depformer_pos_emb: str = "none"
    depformer_positional_scale: float = 1.0
    depformer_kv_repeat: int = 1
    depformer_weights_per_step: bool = True
    depformer_weights_per_step_schedule: list[int] | None = None
    depformer_norm: str | None = None
    delays: list[int] = dataclasses.field(
        default_factory=lambda: [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1])

    # -- upstream config ---------------------------------------------------------------------
    @classmethod
    def from_moshi_config(cls, config: dict[str, Any]) -> MoshiLMSpec:
        """The spec of a moshi ``config.json`` (``lm_kwargs`` at the top level or under
        ``"lm_kwargs"``): absent keys take moshi's constructor defaults, ``depformer_*`` keys
        absent take the temporal transformer's value (as ``LMModel`` does); features we do not
        implement (conditioning, LoRA, quantized files, demuxed text) are a SpecError."""
        if not isinstance(config, dict):
            raise SpecError(f"moshi config: expected a mapping, got {type(config).__name__}")
        data = dict(config.get("lm_kwargs", config))
        for key, unused in UNSUPPORTED.items():
            if data.get(key, unused) not in (unused, {}, [], 0):
                raise SpecError(f"moshi config: {key}={data[key]!r} is not supported "
                                "(plain speech-text LMs only)")
        data.pop("depformer_causal", None)  # deprecated by moshi, ignored there too
        for key in INHERITED:
            if f"depformer_{key}" not in data:
                data[f"depformer_{key}"] = data.get(key, MOSHI_DEFAULTS[key])
        if "depformer_num_heads" not in data:
            raise SpecError("moshi config: depformer_num_heads is required (moshi has no default)")
        full = {**MOSHI_DEFAULTS, **data}
        full["depformer_context"] = data.get("depformer_context")
        return cls.from_dict(full)

    def to_moshi_config(self) -> dict[str, Any]:
        """moshi ``lm_kwargs`` for this spec (``LMModel(**kwargs)`` / a ``config.json``)."""
        return self.to_dict()

    # -- checks ------------------------------------------------------------------------------
    def validate(self) -> None:
        w = type(self).__name__
        for name in ("dim", "text_card", "n_q", "card", "num_heads", "num_layers",
                     "depformer_dim", "depformer_num_heads", "depformer_num_layers",
                     "kv_repeat", "depformer_kv_repeat"):
            require(getattr(self, name) >= 1, w, f"{name} must be >= 1, got {getattr(self, name)}")
        require(1 <= self.dep_q <= self.n_q, w,
                f"dep_q must be in 1..n_q={self.n_q}, got {self.dep_q}")
        require(self.causal, w, "only causal LMs stream (causal=False is not supported)")
        require(len(self.delays) == self.n_q + 1, w,
                f"delays needs n_q + 1 = {self.n_q + 1} entries (text first), got {len(self.delays)}")
        require(all(d >= 0 for d in self.delays), w, f"delays must be >= 0, got {self.delays}")
        require(self.norm in NORMS, w, f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        require(self.depformer_norm is None or self.depformer_norm in NORMS, w,
                f"depformer_norm must be None or one of {', '.join(NORMS)}")
        for side, gating, pos in (("", self.gating, self.positional_embedding),
                                  ("depformer_", self.depformer_gating, self.depformer_pos_emb)):
            require(gating in GATINGS, w,
                    f"{side}gating must be one of {', '.join(GATINGS)}, got {gating!r}")
            require(pos in POS_EMBS, w, f"{side}positional embedding must be one of "
                    f"{', '.join(POS_EMBS)}, got {pos!r}")
        for side, dim, heads, rep in (("", self.dim, self.num_heads, self.kv_repeat),
                                      ("depformer_", self.depformer_dim,
                                       self.depformer_num_heads, self.depformer_kv_repeat)):
            require(dim % heads == 0 and (dim // heads) % 2 == 0, w,
                    f"{side}dim {dim} / {side}num_heads {heads} must be an even head size")
            require(heads % rep == 0, w, f"{side}num_heads {heads} must be a multiple of "
                    f"{side}kv_repeat {rep}")
        require(self.context is None or self.context >= 1, w, "context must be >= 1 or None")
        require(not (self.depformer_weights_per_step and self.depformer_gating == "none"), w,
                "depformer_weights_per_step needs a gated FFN (moshi has no per-step MLP)")
        sched = self.depformer_weights_per_step_schedule
        if sched is not None:
            require(len(sched) == self.dep_q and all(0 <= s < self.dep_q for s in sched), w,
                    f"depformer_weights_per_step_schedule needs dep_q={self.dep_q} indices "
                    f"in 0..{self.dep_q - 1}, got {sched}")
        ff = self.depformer_dim_feedforward
        if isinstance(ff, list):
            require(self.depformer_weights_per_step and len(ff) == self.depformer_num_weights,
                    w, f"a list depformer_dim_feedforward needs weights per step and "
                    f"{self.depformer_num_weights} entries, got {ff}")
        require(self.extra_heads_num_heads >= 0 and self.extra_heads_dim >= 1, w,
                "extra_heads_num_heads must be >= 0 and extra_heads_dim >= 1")

    # -- derived sizes -----------------------------------------------------------------------
    @property
    def num_codebooks(self) -> int:
        """Streams per frame: text + ``n_q`` audio codebooks."""
        return self.n_q + 1

    @property
    def user_codebooks(self) -> int:
        """Audio codebooks of the user's stream, the input of a generation step."""
        return self.n_q - self.dep_q

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    @property
    def text_vocab_out(self) -> int:
        return self.text_card if self.text_card_out is None else self.text_card_out

    @property
    def depformer_num_weights(self) -> int:
        """Weight sets of each depformer layer (1 without weights per step)."""
        if not self.depformer_weights_per_step:
            return 1
        sched = self.depformer_weights_per_step_schedule
        return self.dep_q if sched is None else max(sched) + 1

    @property
    def depformer_num_in(self) -> int:
        """Input projections from the temporal transformer into the depformer."""
        if not self.depformer_multi_linear:
            return 1
        sched = self.depformer_weights_per_step_schedule
        return self.dep_q if sched is None else max(sched) + 1

    def depformer_in_index(self, step: int) -> int:
        if not self.depformer_multi_linear:
            return 0
        sched = self.depformer_weights_per_step_schedule
        return step if sched is None else sched[step]

    def depformer_weight_index(self, step: int) -> int:
        if not self.depformer_weights_per_step:
            return 0
        sched = self.depformer_weights_per_step_schedule
        return step if sched is None else sched[step]

    def ffn_hidden(self, dim: int, dim_feedforward: int, gating: str) -> int:
        """Hidden width of one FFN (moshi's ``ActivationGating`` rounds a gated one)."""
        if gating == "none":
            return dim_feedforward
        return (21 * dim) // 8 if dim_feedforward == 4 * dim else (2 * dim_feedforward) // 3

    @property
    def main_ffn_hidden(self) -> int:
        return self.ffn_hidden(self.dim, int(self.hidden_scale * self.dim), self.gating)

    @property
    def depformer_ffn_hiddens(self) -> list[int]:
        """Hidden width of each depformer weight set's FFN."""
        ff = self.depformer_dim_feedforward
        if ff is None:
            ff = int(self.hidden_scale * self.depformer_dim)
        dims = ff if isinstance(ff, list) else [ff] * self.depformer_num_weights
        return [self.ffn_hidden(self.depformer_dim, d, self.depformer_gating) for d in dims]


@MoshiLMSpec.preset("moshiko")
def moshiko() -> MoshiLMSpec:
    """The released Moshi 7B (``kyutai/moshiko-pytorch-bf16``; moshi ``loaders._lm_kwargs``)."""
    spec = MoshiLMSpec()
    spec.validate()
    return spec


@MoshiLMSpec.preset("tiny")
def tiny() -> MoshiLMSpec:
    """A few-kilobyte LM of moshiko's structure for tests: 2 + 2 layers, a window of 8 frames
    (shorter than a test's stream), 3 own + 3 user codebooks with moshiko's delay pattern, and
    temporal widths that 4- and 8-bit group quantization (groups of 64) divides."""
    spec = MoshiLMSpec(
        dim=64, text_card=48, n_q=6, dep_q=3, card=40, num_heads=4, num_layers=2,
        hidden_scale=4.5, context=8, depformer_dim=32, depformer_dim_feedforward=96,
        depformer_num_heads=2, depformer_num_layers=2, delays=[0, 0, 1, 1, 0, 1, 1])
    spec.validate()
    return spec
