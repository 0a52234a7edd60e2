"""Specs of the self-supervised speech encoders: WavLM / HuBERT / wav2vec 2.0 and w2v-BERT 2.0.

Field names are those of the transformers ``config.json`` of each family, so
``spec_from_hf_config(json.load(...))`` reads an upstream config directly (``from_dict`` is
lenient: the many training-only keys of those files are ignored). A few upstream options we do
not implement are still read so that :meth:`validate` can refuse them by name instead of
silently computing something else (``add_adapter`` on the wav2vec 2.0 family, per-layer
``adapter_attn_dim``).

``do_normalize`` is not a model config key: it comes from ``preprocessor_config.json`` (the
wav2vec 2.0 feature extractor's per-utterance zero-mean / unit-variance normalisation of the
waveform, on for the large LibriLight checkpoints, off for the base ones).

Imports neither mlx nor torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_speech.errors import SpecError
from mlx_speech.specs.base import Spec, require

# transformers activation names -> ours (mlx_speech.layers.activations)
ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu", "swish": "silu", "silu": "silu"}
SAMPLE_RATE = 16000
WAV2VEC2_TYPES = ("wavlm", "hubert", "wav2vec2")
W2V_BERT_TYPES = ("wav2vec2-bert",)
POSITION_TYPES = ("relative_key", "relative", "rotary")


@dataclasses.dataclass
class Wav2Vec2Spec(Spec):
    """WavLM, HuBERT and wav2vec 2.0: conv feature encoder + positional conv + transformer.

    ``model_type`` picks the attention: ``"wavlm"`` has the gated relative position bias
    (``num_buckets``, ``max_bucket_distance``), the other two plain multi-head attention.
    ``do_stable_layer_norm`` picks pre-norm layers with a final encoder norm (large
    checkpoints) instead of post-norm layers with the norm after the positional conv (base).
    """

    model_type: str = "wavlm"
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: list[int] = dataclasses.field(default_factory=lambda: [512] * 7)
    conv_stride: list[int] = dataclasses.field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    conv_kernel: list[int] = dataclasses.field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    conv_pos_batch_norm: bool = False
    do_stable_layer_norm: bool = False
    feat_proj_layer_norm: bool = True
    num_buckets: int = 320
    max_bucket_distance: int = 800
    add_adapter: bool = False
    adapter_attn_dim: int | None = None
    do_normalize: bool = False

    def validate(self) -> None:
        w = type(self).__name__
        require(self.model_type in WAV2VEC2_TYPES, w,
                f"model_type must be one of {', '.join(WAV2VEC2_TYPES)}, got {self.model_type!r}")
        require(self.hidden_size > 0 and self.num_hidden_layers > 0 and self.intermediate_size > 0,
                w, "hidden_size, num_hidden_layers and intermediate_size must be positive")
        require(self.num_attention_heads > 0 and self.hidden_size % self.num_attention_heads == 0,
                w, f"hidden_size {self.hidden_size} must be divisible by num_attention_heads "
                   f"{self.num_attention_heads}")
        for name in ("hidden_act", "feat_extract_activation"):
            require(getattr(self, name) in ACTIVATIONS, w,
                    f"{name} {getattr(self, name)!r} is not supported; "
                    f"known: {', '.join(ACTIVATIONS)}")
        require(self.feat_extract_norm in ("group", "layer"), w,
                f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")
        n = len(self.conv_dim)
        require(n > 0 and len(self.conv_stride) == n and len(self.conv_kernel) == n, w,
                f"conv_dim, conv_stride and conv_kernel need the same non-zero length, got "
                f"{len(self.conv_dim)}, {len(self.conv_stride)}, {len(self.conv_kernel)}")
        require(all(v > 0 for v in [*self.conv_dim, *self.conv_stride, *self.conv_kernel]), w,
                "conv_dim, conv_stride and conv_kernel entries must be positive")
        require(self.num_conv_pos_embeddings > 0 and self.num_conv_pos_embedding_groups > 0
                and self.hidden_size % self.num_conv_pos_embedding_groups == 0, w,
                f"hidden_size {self.hidden_size} must be divisible by "
                f"num_conv_pos_embedding_groups {self.num_conv_pos_embedding_groups}")
        require(self.model_type == "hubert" or not self.conv_pos_batch_norm, w,
                "conv_pos_batch_norm exists only in HuBERT")
        require(self.model_type == "hubert" or self.feat_proj_layer_norm, w,
                "feat_proj_layer_norm=False exists only in HuBERT")
        require(not self.add_adapter, w,
                "add_adapter=True (the fine-tuning adapter after the encoder) is not supported")
        require(self.adapter_attn_dim is None, w,
                "adapter_attn_dim (MMS per-layer adapters) is not supported")
        if self.model_type == "wavlm":
            require(self.num_buckets >= 4 and self.max_bucket_distance > self.num_buckets // 4, w,
                    "num_buckets must be >= 4 and max_bucket_distance > num_buckets / 4")

    @property
    def downsample(self) -> int:
        """Samples per output frame (320 for the standard extractor: 50 Hz at 16 kHz)."""
        out = 1
        for s in self.conv_stride:
            out *= s
        return out

    @property
    def receptive_field(self) -> int:
        """Input samples one output frame of the convolution stack sees (400 for the standard
        extractor)."""
        r = 1
        for k, s in reversed(list(zip(self.conv_kernel, self.conv_stride))):
            r = (r - 1) * s + k
        return r

    def num_frames(self, num_samples: int) -> int:
        """Frames the convolution stack gives for ``num_samples`` input samples (0 if shorter
        than the receptive field). Framework-free, so data pipelines can count frames too."""
        n = num_samples
        for k, s in zip(self.conv_kernel, self.conv_stride):
            n = (n - k) // s + 1
            if n <= 0:
                return 0
        return n


@dataclasses.dataclass
class W2VBertSpec(Spec):
    """w2v-BERT 2.0: 80-bin Kaldi fbank (stacked to 160-d) -> projection -> Conformer layers.

    ``position_embeddings_type``: ``"relative_key"`` (Shaw et al.; the released checkpoint),
    ``"relative"`` (Transformer-XL with ``pos_bias_u/v``), ``"rotary"`` or None.
    """

    model_type: str = "wav2vec2-bert"
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    feature_projection_input_dim: int = 160
    hidden_act: str = "swish"
    layer_norm_eps: float = 1e-5
    position_embeddings_type: str | None = "relative_key"
    rotary_embedding_base: int = 10000
    max_source_positions: int = 5000
    left_max_position_embeddings: int = 64
    right_max_position_embeddings: int = 8
    conv_depthwise_kernel_size: int = 31
    add_adapter: bool = False
    use_intermediate_ffn_before_adapter: bool = False
    num_mel_bins: int = 80
    stride: int = 2

    def validate(self) -> None:
        w = type(self).__name__
        require(self.model_type in W2V_BERT_TYPES, w,
                f"model_type must be 'wav2vec2-bert', got {self.model_type!r}")
        require(self.hidden_size > 0 and self.num_hidden_layers > 0 and self.intermediate_size > 0,
                w, "hidden_size, num_hidden_layers and intermediate_size must be positive")
        require(self.num_attention_heads > 0 and self.hidden_size % self.num_attention_heads == 0,
                w, f"hidden_size {self.hidden_size} must be divisible by num_attention_heads "
                   f"{self.num_attention_heads}")
        require(ACTIVATIONS.get(self.hidden_act) == "silu", w,
                f"hidden_act must be 'swish' (the Conformer convolution module's activation is "
                f"fixed to SiLU here), got {self.hidden_act!r}")
        require(self.position_embeddings_type is None
                or self.position_embeddings_type in POSITION_TYPES, w,
                f"position_embeddings_type must be one of {', '.join(POSITION_TYPES)} or null, "
                f"got {self.position_embeddings_type!r}")
        require(self.conv_depthwise_kernel_size > 0, w,
                "conv_depthwise_kernel_size must be positive")
        require(self.left_max_position_embeddings >= 0 and self.right_max_position_embeddings >= 0,
                w, "left/right_max_position_embeddings must be >= 0")
        require(self.num_mel_bins * self.stride == self.feature_projection_input_dim, w,
                f"num_mel_bins * stride ({self.num_mel_bins} * {self.stride}) must equal "
                f"feature_projection_input_dim ({self.feature_projection_input_dim})")
        if self.position_embeddings_type == "rotary":
            require((self.hidden_size // self.num_attention_heads) % 2 == 0, w,
                    "rotary position embeddings need an even head size")


def spec_from_hf_config(config: dict[str, Any], *, do_normalize: bool | None = None) -> Spec:
    """The spec for a transformers ``config.json`` (dict), by its ``model_type``."""
    if not isinstance(config, dict):
        raise SpecError(f"config.json must hold a mapping, got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type in WAV2VEC2_TYPES:
        data = dict(config)
        if do_normalize is not None:
            data["do_normalize"] = bool(do_normalize)
        return Wav2Vec2Spec.from_dict(data)
    if model_type in W2V_BERT_TYPES:
        return W2VBertSpec.from_dict(config)
    raise SpecError(f"config.json: model_type {model_type!r} is not an SSL encoder we load; "
                    f"expected one of {', '.join(WAV2VEC2_TYPES + W2V_BERT_TYPES)}")


# --- presets: the published architectures (weights come from a local HF directory) -------------
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
              intermediate_size=4096)


@Wav2Vec2Spec.preset("wavlm_base")
def wavlm_base() -> Wav2Vec2Spec:
    """microsoft/wavlm-base and wavlm-base-plus (same architecture): 12 x 768, post-norm."""
    return Wav2Vec2Spec(model_type="wavlm")


@Wav2Vec2Spec.preset("wavlm_large")
def wavlm_large() -> Wav2Vec2Spec:
    """microsoft/wavlm-large: 24 x 1024, pre-norm, layer-norm conv extractor with bias."""
    return Wav2Vec2Spec(model_type="wavlm", **_LARGE, feat_extract_norm="layer", conv_bias=True,
                        do_stable_layer_norm=True, do_normalize=True)


@Wav2Vec2Spec.preset("hubert_base")
def hubert_base() -> Wav2Vec2Spec:
    """facebook/hubert-base-ls960: 12 x 768, post-norm."""
    return Wav2Vec2Spec(model_type="hubert")


@Wav2Vec2Spec.preset("hubert_large")
def hubert_large() -> Wav2Vec2Spec:
    """facebook/hubert-large-ll60k: 24 x 1024, pre-norm, layer-norm conv extractor with bias."""
    return Wav2Vec2Spec(model_type="hubert", **_LARGE, feat_extract_norm="layer", conv_bias=True,
                        do_stable_layer_norm=True, do_normalize=True)


@Wav2Vec2Spec.preset("wav2vec2_base")
def wav2vec2_base() -> Wav2Vec2Spec:
    """facebook/wav2vec2-base: 12 x 768, post-norm."""
    return Wav2Vec2Spec(model_type="wav2vec2")


@Wav2Vec2Spec.preset("wav2vec2_large_lv60")
def wav2vec2_large_lv60() -> Wav2Vec2Spec:
    """facebook/wav2vec2-large-lv60: 24 x 1024, pre-norm, layer-norm conv extractor with bias."""
    return Wav2Vec2Spec(model_type="wav2vec2", **_LARGE, feat_extract_norm="layer",
                        conv_bias=True, do_stable_layer_norm=True, do_normalize=True)


@W2VBertSpec.preset("w2v_bert_2_0")
def w2v_bert_2_0() -> W2VBertSpec:
    """facebook/w2v-bert-2.0 (600M): 24 Conformer layers x 1024, Shaw relative keys.

    It is the only published size, so it serves as both the base and the large preset.
    """
    return W2VBertSpec()


@W2VBertSpec.preset("w2v_bert_base")
def w2v_bert_base() -> W2VBertSpec:
    """A 12 x 768 w2v-BERT layout (no published weights; for training from scratch)."""
    return W2VBertSpec(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072)


# CLI / user-facing encoder names -> the config ``model_type`` values they accept
ENCODERS = {"wavlm": ("wavlm",), "hubert": ("hubert",), "wav2vec2": ("wav2vec2",),
            "w2v-bert": ("wav2vec2-bert",)}


def recognise(path: Any) -> bool:
    """True for a local transformers folder of a supported encoder (``config.json`` with one
    of the :data:`ENCODERS` model types); used by :func:`mlx_speech.load`."""
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        kind = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
    return any(kind in types for types in ENCODERS.values())
