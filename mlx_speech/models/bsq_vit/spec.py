"""BSQ-ViT audio tokenizer spec: mel patches -> ViT (+ conformer conv) -> BSQ -> ViT -> mel.

One dataclass feeds both implementations (``mlx_speech.models.bsq_vit.model`` and
``torch_ref.models.bsq_vit.model``). The design adapts BSQ-ViT (Zhao, Xiong, Kraehenbuehl 2024)
from image patches to log-mel patches.

Shapes, for ``wav (B, S)`` at ``mel.sample_rate``:

* front end: ``S`` is zero-padded to whole codec frames (``frame_size = patch_time *
  hop_length`` samples), the centred magnitude mel is taken and its last frame dropped, so a
  frame of codes covers exactly ``patch_time`` mel frames. ``db = 20 log10(max(mel, 1e-10)) -
  ref_db`` clipped to ``[-top_db, 0]`` and scaled to ``x = db / (top_db / 2) + 1`` in [-1, 1]:
  ``x (B, T, n_mels)``, ``T = patch_time * F``;
* patches: ``(patch_time, patch_freq)`` tiles; ``n_mels / patch_freq`` bands per frame, tokens
  ordered frame-major ``(t, band)``; ``patch_freq == n_mels`` is the time-only option (one token
  per frame, so ``causal`` is possible);
* encoder: linear patch embedding, positions (``rope``: RoPE over the token index -- injective in
  (frame, band) offsets -- plus a learnt band embedding; ``learned``: learnt frame + band
  embeddings up to ``max_frames``), ``encoder_layers`` pre-norm blocks: attention, [conformer
  convolution along time, per band], feed-forward; a final LayerNorm;
* quantizer: BSQ with ``in_proj`` dim -> bits and ``out_proj`` bits -> dim; ``bits`` (18 or 36)
  per token, entropy groups of ``group_size`` bits, ``code_bits`` bits per int32 code;
* codes ``(B, K, F)``, ``K = bands * bits / code_bits``: code ``band * (bits / code_bits) + j``
  holds bits ``j * code_bits ..`` of that band's token (the first bit most significant);
* decoder: the same block stack, a final LayerNorm and a linear head back to the patch's
  ``patch_time * patch_freq`` values, un-patched to ``(B, T, n_mels)`` in the [-1, 1] scale.

Windows: the tokenizer sees ``context_frames`` codec frames at a time (what it trains on);
longer input is cut on a fixed grid from its first sample and each window is coded on its own:
``encode`` takes a window's features from its own samples (a shorter last window's mel is
padded with silence, -1, and its codes cropped) and the decoder decodes each window of codes (a
shorter last one as it is). So batch and streamed results are identical and attention cost
stays linear in the input's length (``windows.py``).

Vocoder (``vocoder``): mel back to audio, ``griffin_lim`` (no weights) or ``hifigan`` (a
HiFi-GAN generator stored under ``vocoder.*`` in the same file, trained on the same
:class:`~mlx_speech.specs.audio.MelSpec`). The mel is vocoded window by window, each with
``margin`` mel frames of its neighbours on both sides, cropped and cross-faded over
``crossfade`` frames; a HiFi-GAN whose receptive field is within the margin gives the
whole-utterance result.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mlx_speech.specs.audio import MelSpec, mel_bsq_16k
from mlx_speech.specs.base import Spec, require


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass
class BSQVocoderSpec(Spec):
    """How decoded mel becomes audio (see the module docstring).

    ``kind``: ``griffin_lim`` (``gl_iters`` iterations after ``nnls_iters`` NNLS refinements of
    the linear magnitude) or ``hifigan`` (``hifigan``: HiFiGANSpec fields; its ``n_mels`` and hop
    must equal the tokenizer's mel). ``margin`` / ``crossfade``: mel frames of context on each
    side of a window, and of the linear cross-fade between neighbouring windows.
    """

    kind: Literal["griffin_lim", "hifigan"] = "griffin_lim"
    gl_iters: int = 32
    nnls_iters: int = 16
    hifigan: dict[str, Any] | None = None
    margin: int = 16
    crossfade: int = 8

    def validate(self) -> None:
        w = type(self).__name__
        require(self.gl_iters >= 0 and self.nnls_iters >= 0, w, "gl_iters and nnls_iters must be >= 0")
        require(self.margin >= 0 and 0 <= self.crossfade <= self.margin, w,
                f"need 0 <= crossfade <= margin, got crossfade={self.crossfade}, margin={self.margin}")
        require((self.kind == "hifigan") == (self.hifigan is not None), w,
                "kind 'hifigan' needs the generator's fields in 'hifigan' (and only it has them)")
        if self.hifigan is not None:
            self.hifigan_spec()

    def hifigan_spec(self) -> Any:
        from mlx_speech.models.hifigan.spec import HiFiGANSpec  # noqa: PLC0415

        return HiFiGANSpec._build(dict(self.hifigan or {}), strict=True,
                                  where=f"{type(self).__name__}.hifigan")


@dataclasses.dataclass
class BSQViTSpec(Spec):
    """BSQ-ViT audio tokenizer hyper-parameters (see the module docstring).

    ``ffn_dim`` None means ``4 * dim``. ``conv_kernel``: the depthwise kernel of the conformer
    convolution, in frames along time; ``conv_norm``: ``batch`` (the conformer paper's
    BatchNorm; running statistics are buffers) or ``layer``. ``causal`` (time-only patches
    only): causal attention and a left-padded depthwise convolution. ``layer_scale``: initial
    LayerScale of each residual branch (None: none). ``checkpoint``: recompute the attention and
    feed-forward sub-blocks in the backward pass (MLX ``mx.checkpoint``; memory for compute).
    """

    mel: MelSpec = _field(mel_bsq_16k)
    ref_db: float = 20.0
    top_db: float = 80.0
    patch_time: int = 16
    patch_freq: int = 16
    dim: int = 384
    encoder_layers: int = 6
    decoder_layers: int = 6
    num_heads: int = 6
    ffn_dim: int | None = None
    positions: Literal["rope", "learned"] = "rope"
    max_frames: int = 64
    conformer_conv: bool = True
    conv_kernel: int = 5
    conv_norm: Literal["batch", "layer"] = "batch"
    causal: bool = False
    layer_scale: float | None = None
    dropout: float = 0.0
    checkpoint: bool = False
    bits: int = 18
    group_size: int = 9
    code_bits: int = 9
    inv_temperature: float = 1.0
    gamma0: float = 1.0
    gamma: float = 1.0
    zeta: float = 1.0
    commitment_weight: float = 0.25
    context_frames: int = 16
    vocoder: BSQVocoderSpec = _field(BSQVocoderSpec)

    def validate(self) -> None:
        w = type(self).__name__
        m = self.mel
        require(m.power == 1.0, w, "mel.power must be 1.0 (the dB scale is of magnitudes)")
        require(self.top_db > 0, w, f"top_db must be > 0, got {self.top_db}")
        require(self.patch_time >= 1 and self.patch_freq >= 1, w, "patch sizes must be >= 1")
        require(m.n_mels % self.patch_freq == 0, w,
                f"patch_freq {self.patch_freq} must divide mel.n_mels {m.n_mels}")
        require(self.dim >= 2 and self.num_heads >= 1 and self.dim % self.num_heads == 0
                and (self.dim // self.num_heads) % 2 == 0, w,
                f"dim {self.dim} / num_heads {self.num_heads} must give an even head size")
        require(self.encoder_layers >= 1 and self.decoder_layers >= 1, w,
                "encoder_layers and decoder_layers must be >= 1")
        require(self.ffn_dim is None or self.ffn_dim >= 1, w, "ffn_dim must be >= 1 or null")
        require(self.max_frames >= 1, w, "max_frames must be >= 1")
        require(self.conv_kernel >= 1 and (self.causal or self.conv_kernel % 2 == 1), w,
                f"a non-causal conv_kernel must be odd, got {self.conv_kernel}")
        require(not self.causal or self.patch_freq == m.n_mels, w,
                "causal needs time-only patches (patch_freq == mel.n_mels)")
        require(0.0 <= self.dropout < 1.0, w, "dropout must be in [0, 1)")
        require(self.bits >= 1 and 1 <= self.group_size <= 16 and self.bits % self.group_size == 0,
                w, f"group_size {self.group_size} must divide bits {self.bits} (and be <= 16)")
        require(1 <= self.code_bits <= 31 and self.bits % self.code_bits == 0, w,
                f"code_bits {self.code_bits} must divide bits {self.bits} and be <= 31")
        require(self.inv_temperature > 0, w, "inv_temperature must be > 0")
        require(self.context_frames >= 1, w, "context_frames must be >= 1")
        require(self.frame_size > m.n_fft // 2, w,
                f"a codec frame ({self.frame_size} samples) must be longer than half the FFT "
                f"({m.n_fft // 2}): the front end reflects the signal at its edges")
        require(self.vocoder.crossfade <= self.context_frames * self.patch_time, w,
                f"vocoder.crossfade {self.vocoder.crossfade} is longer than a window "
                f"({self.context_frames * self.patch_time} mel frames)")
        require(self.positions != "learned" or self.context_frames <= self.max_frames, w,
                f"learned positions cover max_frames={self.max_frames} frames, fewer than "
                f"context_frames={self.context_frames}")
        if self.vocoder.kind == "hifigan":
            g = self.vocoder.hifigan_spec()
            require(g.n_mels == m.n_mels and g.hop_length == m.hop_length, w,
                    f"the HiFi-GAN vocoder takes {g.n_mels} mels at hop {g.hop_length}; the "
                    f"tokenizer makes {m.n_mels} at hop {m.hop_length}")

    # -- derived sizes ---------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @property
    def bands(self) -> int:
        """Tokens per codec frame (frequency patches)."""
        return self.mel.n_mels // self.patch_freq

    @property
    def patch_dim(self) -> int:
        return self.patch_time * self.patch_freq

    @property
    def frame_size(self) -> int:
        """Samples per codec frame."""
        return self.patch_time * self.mel.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_size

    @property
    def codes_per_token(self) -> int:
        return self.bits // self.code_bits

    @property
    def total_codebooks(self) -> int:
        return self.bands * self.codes_per_token

    @property
    def num_codebooks(self) -> int:
        """Every code is needed to decode (the bits of one token), so always all of them."""
        return self.total_codebooks

    @property
    def codebook_size(self) -> int:
        return 2 ** self.code_bits

    @property
    def bitrate(self) -> float:
        """Bits per second: ``bands * bits * frame_rate``."""
        return self.bands * self.bits * self.frame_rate

    @property
    def hidden_dim(self) -> int:
        return self.ffn_dim or 4 * self.dim

    @property
    def window_samples(self) -> int:
        return self.context_frames * self.frame_size

    def num_frames(self, num_samples: int) -> int:
        """Codec frames ``encode`` returns for ``num_samples`` samples (zero-padded tail)."""
        return -(-int(num_samples) // self.frame_size)

    def replace(self, **changes: Any) -> BSQViTSpec:
        # ``num_codebooks`` is not a field: every code is needed, so only "all" is accepted
        k = changes.pop("num_codebooks", None)
        if k is not None and k != self.total_codebooks:
            from mlx_speech.errors import SpecError  # noqa: PLC0415

            raise SpecError(f"BSQ-ViT decodes only with all {self.total_codebooks} codes per "
                            f"frame (each is part of a token's bits), got {k}")
        return super().replace(**changes) if changes else self


def _preset(**kw: Any) -> BSQViTSpec:
    spec = BSQViTSpec(**kw)
    spec.validate()
    return spec


@BSQViTSpec.preset("bsq_vit_b18")
def bsq_vit_b18() -> BSQViTSpec:
    """16 kHz, 128 mels, 16 x 16 patches (8 tokens per 160 ms), 18 bits: 900 bit/s."""
    return _preset(bits=18)


@BSQViTSpec.preset("bsq_vit_b36")
def bsq_vit_b36() -> BSQViTSpec:
    """As b18 with 36 bits per token: 1800 bit/s."""
    return _preset(bits=36)


@BSQViTSpec.preset("bsq_vit_small_b18")
def bsq_vit_small_b18() -> BSQViTSpec:
    """A CPU-sized b18 tokenizer (192-d, 4 + 4 layers): 900 bit/s."""
    return _preset(dim=192, encoder_layers=4, decoder_layers=4, num_heads=4, bits=18)


@BSQViTSpec.preset("bsq_vit_tiny")
def bsq_vit_tiny() -> BSQViTSpec:
    """Test size: 32 mels at hop 160 (n_fft 256), 4 x 8 patches, 32-d, 1 + 1 layers."""
    mel = MelSpec(sample_rate=16000, n_fft=256, hop_length=160, win_length=256, n_mels=32,
                  f_max=None, log_floor=1e-3)
    return _preset(mel=mel, patch_time=4, patch_freq=8, dim=32, encoder_layers=1,
                   decoder_layers=1, num_heads=2, context_frames=4, conv_kernel=3,
                   vocoder=BSQVocoderSpec(gl_iters=4, nnls_iters=2, margin=4, crossfade=2))
