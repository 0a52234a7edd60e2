"""Encoder-decoder speech-to-speech model over codec codes (model A): spec and presets.

One dataclass feeds both implementations (``mlx_speech.models.s2s.encdec`` and
``torch_ref.models.s2s.encdec``). Framework-free.

Shapes, for input codes ``(B, K_in, T)`` and output codes ``(B, K_out, F)`` of one codec
(``codec``, whose weights ``codec_weights`` the training task encodes audio with and the
conversion pipeline decodes with):

* input embedding: one table per input codebook (``codebook_size`` rows); ``embed: sum`` adds
  the ``K_in`` rows of a frame, ``embed: concat`` concatenates them and projects ``K_in * dim
  -> dim`` (``enc_in_proj``);
* encoder: ``encoder_layers`` non-causal Conformer blocks (``mlx_speech.layers.conformer``) with
  RoPE and a depthwise kernel of ``conv_kernel`` frames: the whole input utterance is known
  before the first output frame;
* decoder input: one table per output codebook with ``codebook_size + 1`` rows, the last being
  the special BOS / pad id (:attr:`S2SSpec.special`), combined as the input embedding
  (``dec_in_proj`` for concat), plus the condition embeddings (below);
* decoder: ``decoder_layers`` pre-norm blocks (causal self-attention with RoPE, cross-attention
  to the encoder output with RoPE between output steps and input frames when ``cross_rope``,
  GELU MLP), a final LayerNorm;
* heads: ``K_out`` linear heads ``dim -> codebook_size`` (``heads.k``), logits
  ``(B, K_out, S, codebook_size)``.

Codebook pattern (``pattern``): ``parallel`` predicts every codebook of frame ``t`` at step
``t`` (``S = F``); ``delay`` (MusicGen / moshi) shifts codebook ``k`` by ``k`` steps, so step
``s`` predicts codebook ``k`` of frame ``s - k`` after seeing the lower codebooks of that frame
(``S = F + K_out - 1``; positions outside a codebook's window hold the special id and are
forced, never sampled). :mod:`mlx_speech.models.s2s.encdec_pattern` holds the maths.

Conditions (``num_speakers``, ``num_emotions``, ``num_languages``; 0 = none): one embedding
each, added to the *decoder* input at every step. They describe the output, and keeping the
encoder free of them means one encoding of an utterance (and its cross-attention keys) serves
every target speaker, emotion or language. An absent condition (id -1 or None) adds nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class S2SSpec(Spec):
    """Hyper-parameters of :class:`~mlx_speech.models.s2s.encdec.S2SModel` (module docstring).

    ``ffn_dim`` None means ``4 * dim``. ``max_period``: RoPE's longest period.
    """

    codec: str = "mimi"
    codec_weights: str | None = None
    in_codebooks: int = 8
    out_codebooks: int = 8
    codebook_size: int = 2048
    embed: Literal["sum", "concat"] = "sum"
    dim: int = 512
    num_heads: int = 8
    ffn_dim: int | None = None
    encoder_layers: int = 4
    decoder_layers: int = 4
    conv_kernel: int = 15
    cross_rope: bool = True
    max_period: float = 10000.0
    dropout: float = 0.0
    num_speakers: int = 0
    num_emotions: int = 0
    num_languages: int = 0
    pattern: Literal["parallel", "delay"] = "delay"

    def validate(self) -> None:
        w = type(self).__name__
        require(bool(self.codec), w, "codec must name a registered codec family")
        require(self.in_codebooks >= 1 and self.out_codebooks >= 1, w,
                "in_codebooks and out_codebooks must be >= 1")
        require(self.codebook_size >= 2, w, f"codebook_size must be >= 2, got {self.codebook_size}")
        require(self.dim >= 2 and self.num_heads >= 1 and self.dim % self.num_heads == 0
                and (self.dim // self.num_heads) % 2 == 0, w,
                f"dim {self.dim} / num_heads {self.num_heads} must give an even head size (RoPE)")
        require(self.ffn_dim is None or self.ffn_dim >= 1, w, "ffn_dim must be >= 1 or null")
        require(self.encoder_layers >= 1 and self.decoder_layers >= 1, w,
                "encoder_layers and decoder_layers must be >= 1")
        require(self.conv_kernel >= 1 and self.conv_kernel % 2 == 1, w,
                f"conv_kernel must be odd (a non-causal depthwise kernel), got {self.conv_kernel}")
        require(self.max_period > 0, w, "max_period must be > 0")
        require(0.0 <= self.dropout < 1.0, w, "dropout must be in [0, 1)")
        require(min(self.num_speakers, self.num_emotions, self.num_languages) >= 0, w,
                "num_speakers, num_emotions and num_languages must be >= 0")

    @property
    def hidden_dim(self) -> int:
        return self.ffn_dim or 4 * self.dim

    @property
    def special(self) -> int:
        """The BOS / pad id of the decoder input (one past the last code)."""
        return self.codebook_size

    @property
    def delay(self) -> int:
        """Extra decoder steps of the pattern: ``K_out - 1`` for ``delay``, else 0."""
        return self.out_codebooks - 1 if self.pattern == "delay" else 0

    def steps(self, frames: int) -> int:
        """Decoder steps that produce ``frames`` output frames."""
        return int(frames) + self.delay

    def conditions(self) -> dict[str, int]:
        """``{name: count}`` of the condition embeddings, in a fixed order."""
        return {"speaker": self.num_speakers, "emotion": self.num_emotions,
                "language": self.num_languages}


def _preset(**kw: Any) -> S2SSpec:
    spec = S2SSpec(**kw)
    spec.validate()
    return spec


@S2SSpec.preset("s2s_base")
def s2s_base() -> S2SSpec:
    """Mimi codes (8 x 2048 in and out), 512-d, 3 Conformer + 3 decoder blocks, FFN 1536,
    delay pattern: 51M parameters (25M of them the code embeddings and heads)."""
    return _preset(dim=512, num_heads=8, ffn_dim=1536, encoder_layers=3, decoder_layers=3)


@S2SSpec.preset("s2s_tiny")
def s2s_tiny() -> S2SSpec:
    """Test size: 2 codebooks of 16 codes in and out, 32-d, 1 + 1 blocks."""
    return _preset(in_codebooks=2, out_codebooks=2, codebook_size=16, dim=32, num_heads=2,
                   ffn_dim=64, encoder_layers=1, decoder_layers=1, conv_kernel=3)


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """Sampling options (:mod:`mlx_speech.models.s2s.sampling`): ``temperature >= 0`` (0 is
    greedy), ``top_k >= 0`` (0: no limit), ``0 < top_p <= 1``; one-line SpecError otherwise."""
    from mlx_speech.errors import SpecError  # noqa: PLC0415

    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise SpecError(f"sampling: temperature must be a number >= 0 (0: greedy), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise SpecError(f"sampling: top_k must be an int >= 0 (0: no limit), got {top_k!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise SpecError(f"sampling: top_p must be in (0, 1], got {top_p!r}")
