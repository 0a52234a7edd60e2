"""The tiny tasks shipped with the trainer (MLX): a log-mel denoiser and its GAN variant.

Stand-in workloads for the training infrastructure (tests, ``bench/train.py``, smoke runs),
not product models. Mirrored in ``torch_ref/train/tiny.py`` with the same parameter names:

* ``MelDenoiser``: ``in_proj`` (Linear n_mels -> dim), ``transformer`` (the shared
  :class:`~mlx_speech.layers.transformer.Transformer`, non-causal, RoPE), ``out_proj``
  (Linear dim -> n_mels); predicts a residual on the noisy log-mel ``(B, F, n_mels)``.
* ``FrameDiscriminator``: ``proj1``, ``proj2``, ``out`` (per-frame MLP, leaky ReLU 0.2).
* ``MelDenoiseGAN``: ``generator`` + ``discriminator``.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.audio.spectral import log_mel
from mlx_speech.layers.transformer import Transformer
from mlx_speech.specs.train import MelDenoiserSpec
from mlx_speech.train.task_base import MelDenoiseBase, MelDenoiseGANBase


class MelDenoiser(nn.Module):
    """``(B, F, n_mels)`` noisy log-mel -> ``(B, F, n_mels)`` estimate of the clean one.

    Computes in the dtype of its weights (bf16 in mixed precision); returns float32.
    """

    def __init__(self, *, n_mels: int, dim: int, num_layers: int, num_heads: int,
                 ffn_dim: int, activation: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.in_proj = nn.Linear(n_mels, dim)
        self.transformer = Transformer(num_layers=num_layers, dim=dim, num_heads=num_heads,
                                       ffn_dim=ffn_dim, causal=False, rope=True, final_norm=True,
                                       activation=activation, dropout=dropout)
        self.out_proj = nn.Linear(dim, n_mels)

    def __call__(self, feats: mx.array, mask: mx.array | None = None) -> mx.array:
        h = self.in_proj(feats.astype(self.in_proj.weight.dtype))
        h = self.transformer(h, mask=mask)
        return feats + self.out_proj(h).astype(mx.float32)


class FrameDiscriminator(nn.Module):
    """``(B, F, n_mels)`` -> ``(B, F)`` real/fake score per frame."""

    def __init__(self, *, n_mels: int, dim: int) -> None:
        super().__init__()
        self.proj1 = nn.Linear(n_mels, dim)
        self.proj2 = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, 1)

    def __call__(self, feats: mx.array) -> mx.array:
        h = nn.leaky_relu(self.proj1(feats.astype(self.proj1.weight.dtype)), 0.2)
        h = nn.leaky_relu(self.proj2(h), 0.2)
        return self.out(h)[..., 0].astype(mx.float32)


class MelDenoiseGAN(nn.Module):
    def __init__(self, *, generator: MelDenoiser, discriminator: FrameDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def build_denoiser(spec: MelDenoiserSpec) -> MelDenoiser:
    return MelDenoiser(n_mels=spec.mel.n_mels, dim=spec.dim, num_layers=spec.num_layers,
                       num_heads=spec.num_heads, ffn_dim=spec.ffn_dim, activation=spec.activation,
                       dropout=spec.dropout)


def _frame_mask(frames: mx.array, F: int) -> mx.array:
    return mx.arange(F)[None, :] < frames[:, None]


def _row_mean(x: mx.array, valid: mx.array, frames: mx.array) -> mx.array:
    """Per-row mean of ``x (B, F)`` over valid frames, then the mean over rows."""
    per_row = (x * valid).sum(axis=1) / mx.maximum(frames, 1).astype(mx.float32)
    return per_row.mean()


class MelDenoiseTask(MelDenoiseBase):
    """Masked L1 between the denoiser's output and the clean log-mel."""

    def build(self) -> nn.Module:
        return build_denoiser(self.denoiser)

    def features(self, inputs: dict[str, mx.array]) -> tuple[mx.array, mx.array, mx.array]:
        """``(noisy features with SpecAugment, clean features, valid-frame mask)``."""
        m = self.denoiser.mel
        kw = {**m.mel_kwargs(), "floor": m.log_floor}
        clean = log_mel(inputs["clean"], **kw)
        noisy = log_mel(inputs["noisy"], **kw)
        noisy = noisy * inputs["time_keep"][:, :, None] * inputs["freq_keep"][:, None, :]
        # Inputs, not functions of the weights: keep the FFTs out of the backward pass.
        return mx.stop_gradient(noisy), mx.stop_gradient(clean), _frame_mask(inputs["frames"], clean.shape[1])

    def recon(self, generator: nn.Module, noisy: mx.array, clean: mx.array, valid: mx.array,
              frames: mx.array) -> tuple[mx.array, mx.array]:
        pred = generator(noisy, mask=valid)
        return pred, _row_mean(mx.abs(pred - clean).mean(axis=-1), valid, frames)

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        noisy, clean, valid = self.features(inputs)
        _, l1 = self.recon(model, noisy, clean, valid, inputs["frames"])
        return l1, {"l1": l1}


class MelDenoiseGANTask(MelDenoiseGANBase, MelDenoiseTask):
    """Least-squares GAN on log-mel frames plus the L1 reconstruction."""

    def build(self) -> nn.Module:
        s = self.spec
        return MelDenoiseGAN(generator=build_denoiser(s.generator),
                             discriminator=FrameDiscriminator(n_mels=s.generator.mel.n_mels, dim=s.disc_dim))

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        noisy, clean, valid = self.features(inputs)
        fake = mx.stop_gradient(generator(noisy, mask=valid))
        frames = inputs["frames"]
        B = clean.shape[0]
        scores = discriminator(mx.concatenate([clean, fake], axis=0))  # one call (DDP-friendly)
        real_term = _row_mean(mx.square(scores[:B] - 1.0), valid, frames)
        fake_term = _row_mean(mx.square(scores[B:]), valid, frames)
        loss = real_term + fake_term
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        noisy, clean, valid = self.features(inputs)
        frames = inputs["frames"]
        pred, l1 = self.recon(generator, noisy, clean, valid, frames)
        adv = _row_mean(mx.square(discriminator(pred) - 1.0), valid, frames)
        loss = self.spec.recon_weight * l1 + self.spec.adv_weight * adv
        return loss, {"l1": l1, "adv": adv}

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        """Validation loss: the generator's L1."""
        noisy, clean, valid = self.features(inputs)
        _, l1 = self.recon(model.generator, noisy, clean, valid, inputs["frames"])
        return l1, {"l1": l1}
