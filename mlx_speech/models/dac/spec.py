"""DAC-style codec spec: Snake CNN encoder / decoder, factorised RVQ, optional transformers.

One flat dataclass feeds both implementations (``mlx_speech.models.dac.model`` and
``torch_ref.models.dac.model``) and the upstream readers (``official.py``, ``hf.py``). Field
names follow Descript's ``DAC(**kwargs)`` where they exist, so an official checkpoint's
``metadata["kwargs"]`` is read with :meth:`DACSpec.from_dict` (``n_codebooks`` and
``codebook_size`` there become ``codebook_sizes``, see :func:`spec_from_dac_kwargs`).

Shapes: ``wav (B, T)`` at ``sample_rate`` -> encoder (strides ``encoder_rates``, width doubling
from ``encoder_dim``) -> latents ``(B, F, latent_dim)`` at ``frame_rate = sample_rate / hop`` ->
[``transformer_layers`` RoPE layers] -> RVQ (level ``i``: ``codebook_sizes[i]`` codes of
``codebook_dim``, chosen by cosine) -> [transformer] -> decoder (strides ``decoder_rates``, width
halving from ``decoder_dim``) -> ``(B, F * hop)``.

``causal=False`` is Descript's model (symmetric "same" padding, torch's integer paddings on the
strided layers), but for the output padding of odd decoder strides (``cnn.py``). ``causal=True`` pads every convolution on the left (moshi's causal padding) so
``encode_step`` / ``decode_step`` stream frame by frame with the batch call's result; the
transformers are then causal with a sliding ``transformer_context``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class DACSpec(Spec):
    """DAC-style codec hyper-parameters (see the module docstring).

    ``num_codebooks`` is how many levels ``encode`` uses by default (``decode`` takes any
    prefix); ``quantizer_dropout`` the probability that a training item keeps only a random
    prefix of the levels. ``dilations`` of the three residual units per block, ``residual_kernel``
    their kernel. ``weight_norm`` reparametrises every convolution (Descript's training form;
    :meth:`~mlx_speech.models.dac.model.DACModel.remove_weight_norm` folds it for inference).
    """

    sample_rate: int = 44100
    encoder_dim: int = 64
    encoder_rates: list[int] = dataclasses.field(default_factory=lambda: [2, 4, 8, 8])
    latent_dim: int | None = None
    decoder_dim: int = 1536
    decoder_rates: list[int] = dataclasses.field(default_factory=lambda: [8, 8, 4, 2])
    codebook_sizes: list[int] = dataclasses.field(default_factory=lambda: [1024] * 9)
    codebook_dim: int = 8
    num_codebooks: int | None = None
    quantizer_dropout: float = 0.0
    dilations: list[int] = dataclasses.field(default_factory=lambda: [1, 3, 9])
    residual_kernel: int = 7
    causal: bool = False
    weight_norm: bool = True
    transformer_layers: int = 0
    transformer_heads: int = 8
    transformer_ffn_dim: int | None = None
    transformer_context: int | None = None
    transformer_layer_scale: float | None = 0.01

    def __post_init__(self) -> None:
        if self.latent_dim is None:
            self.latent_dim = self.encoder_dim * 2 ** len(self.encoder_rates)
        if self.num_codebooks is None:
            self.num_codebooks = len(self.codebook_sizes)

    def validate(self) -> None:
        w = type(self).__name__
        require(8000 <= self.sample_rate <= 192000, w,
                f"sample_rate {self.sample_rate} outside 8000..192000")
        for name in ("encoder_rates", "decoder_rates", "codebook_sizes", "dilations"):
            v = getattr(self, name)
            require(len(v) >= 1 and all(isinstance(r, int) and r >= 1 for r in v), w,
                    f"{name} must be a non-empty list of positive ints, got {v}")
        require(math.prod(self.encoder_rates) == math.prod(self.decoder_rates), w,
                f"encoder_rates {self.encoder_rates} and decoder_rates {self.decoder_rates} must "
                f"have the same product (the hop length)")
        require(all(s >= 2 for s in self.codebook_sizes), w,
                f"every codebook size must be >= 2, got {self.codebook_sizes}")
        for name in ("encoder_dim", "latent_dim", "decoder_dim", "codebook_dim", "residual_kernel"):
            require(getattr(self, name) >= 1, w, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.decoder_dim % 2 ** len(self.decoder_rates) == 0, w,
                f"decoder_dim {self.decoder_dim} must be divisible by 2**{len(self.decoder_rates)}")
        require(self.residual_kernel % 2 == 1, w,
                f"residual_kernel must be odd, got {self.residual_kernel}")
        require(1 <= self.num_codebooks <= len(self.codebook_sizes), w,
                f"num_codebooks must be in 1..{len(self.codebook_sizes)}, got {self.num_codebooks}")
        require(0.0 <= self.quantizer_dropout <= 1.0, w, "quantizer_dropout must be in [0, 1]")
        require(self.transformer_layers >= 0, w, "transformer_layers must be >= 0")
        if self.transformer_layers:
            require(self.transformer_heads >= 1 and self.latent_dim % self.transformer_heads == 0
                    and (self.latent_dim // self.transformer_heads) % 2 == 0, w,
                    f"latent_dim {self.latent_dim} / transformer_heads {self.transformer_heads} "
                    f"must be an even head size")
            require(self.transformer_context is None or self.transformer_context >= 1, w,
                    "transformer_context must be >= 1 or null")

    # -- derived sizes -----------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per codec frame: the product of the encoder strides."""
        return math.prod(self.encoder_rates)

    @property
    def frame_size(self) -> int:
        return self.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def total_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def bitrate(self) -> float:
        """Bits per second with ``num_codebooks`` levels."""
        bits = sum(math.log2(s) for s in self.codebook_sizes[:self.num_codebooks])
        return bits * self.frame_rate

    def num_frames(self, num_samples: int) -> int:
        """Frames ``encode`` returns for ``num_samples`` samples (the tail is zero-padded)."""
        return -(-int(num_samples) // self.hop_length)

    def transformer_args(self) -> dict[str, Any]:
        """Constructor arguments of the encoder / decoder transformers (both frameworks)."""
        return dict(num_layers=self.transformer_layers, dim=self.latent_dim,
                    num_heads=self.transformer_heads,
                    ffn_dim=self.transformer_ffn_dim or 4 * self.latent_dim,
                    causal=self.causal, context=self.transformer_context, rope=True,
                    rope_interleaved=True, max_period=10000.0, norm="layer", norm_eps=1e-5,
                    ffn_type="mlp", activation="gelu", attn_bias=False, ffn_bias=False,
                    layer_scale=self.transformer_layer_scale)


def spec_from_dac_kwargs(kwargs: dict[str, Any]) -> DACSpec:
    """The spec of an official checkpoint's ``metadata["kwargs"]`` (Descript's ``DAC`` args)."""
    data = dict(kwargs)
    n = int(data.pop("n_codebooks", 9))
    size = int(data.pop("codebook_size", 1024))
    dropout = data.pop("quantizer_dropout", 0.0)
    data["quantizer_dropout"] = float(dropout) if not isinstance(dropout, bool) else (
        1.0 if dropout else 0.0)
    data.setdefault("codebook_sizes", [size] * n)
    return DACSpec.from_dict(data)


def _preset(**kw: Any) -> DACSpec:
    spec = DACSpec(**kw)
    spec.validate()
    return spec


SPEECH_SIZES = [2048] + [1024] * 7


@DACSpec.preset("dac_44khz")
def dac_44khz() -> DACSpec:
    """Descript DAC 44.1 kHz: hop 512 (86.1 Hz), 9 x 1024 codes, 8-d."""
    return _preset(sample_rate=44100, encoder_rates=[2, 4, 8, 8], decoder_rates=[8, 8, 4, 2],
                   codebook_sizes=[1024] * 9)


@DACSpec.preset("dac_24khz")
def dac_24khz() -> DACSpec:
    """Descript DAC 24 kHz: hop 320 (75 Hz), 32 x 1024 codes."""
    return _preset(sample_rate=24000, encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2],
                   codebook_sizes=[1024] * 32)


@DACSpec.preset("dac_16khz")
def dac_16khz() -> DACSpec:
    """Descript DAC 16 kHz: hop 320 (50 Hz), 12 x 1024 codes."""
    return _preset(sample_rate=16000, encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2],
                   codebook_sizes=[1024] * 12)


_SPEECH = dict(encoder_dim=32, decoder_dim=768, codebook_sizes=SPEECH_SIZES, causal=True,
               quantizer_dropout=0.5)


@DACSpec.preset("dac_speech_200hz")
def dac_speech_200hz() -> DACSpec:
    """Ours: causal 16 kHz speech codec, hop 80 (200 Hz), [2048, 1024 x 7], 512-d latents."""
    return _preset(sample_rate=16000, encoder_rates=[2, 2, 4, 5], decoder_rates=[5, 4, 2, 2],
                   **_SPEECH)


@DACSpec.preset("dac_speech_50hz")
def dac_speech_50hz() -> DACSpec:
    """Ours: causal 16 kHz speech codec, hop 320 (50 Hz), [2048, 1024 x 7], 512-d latents."""
    return _preset(sample_rate=16000, encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2],
                   **_SPEECH)


@DACSpec.preset("dac_speech_12hz")
def dac_speech_12hz() -> DACSpec:
    """Ours: causal 24 kHz speech codec, hop 1920 (12.5 Hz, as Mimi), 512-d latents."""
    return _preset(sample_rate=24000, encoder_rates=[2, 4, 5, 6, 8],
                   decoder_rates=[8, 6, 5, 4, 2], latent_dim=512,
                   **{**_SPEECH, "decoder_dim": 1024})


@DACSpec.preset("hybrid_200hz")
def hybrid_200hz() -> DACSpec:
    """``dac_speech_200hz`` + 2 causal RoPE transformer layers each side of the quantizer
    (context 250 frames = 1.25 s)."""
    return dac_speech_200hz().replace(transformer_layers=2, transformer_context=250)


@DACSpec.preset("hybrid_50hz")
def hybrid_50hz() -> DACSpec:
    """``dac_speech_50hz`` + 4 causal RoPE transformer layers each side (context 5 s)."""
    return dac_speech_50hz().replace(transformer_layers=4, transformer_context=250)


@DACSpec.preset("hybrid_12hz")
def hybrid_12hz() -> DACSpec:
    """``dac_speech_12hz`` + 8 causal RoPE transformer layers each side (context 250 frames =
    20 s; Mimi's depth and width)."""
    return dac_speech_12hz().replace(transformer_layers=8, transformer_context=250)


@DACSpec.preset("dac_tiny")
def dac_tiny(causal: bool = False, transformer_layers: int = 0) -> DACSpec:
    """A small random-init model for tests: 16 kHz, hop 40, 4 levels [64, 32 x 3]."""
    return _preset(sample_rate=16000, encoder_dim=4, encoder_rates=[2, 4, 5],
                   decoder_dim=32, decoder_rates=[5, 4, 2], codebook_sizes=[64, 32, 32, 32],
                   codebook_dim=4, causal=causal, transformer_layers=transformer_layers,
                   transformer_heads=2, transformer_context=16 if transformer_layers else None)
