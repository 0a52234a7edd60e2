"""The tiny tasks shipped with the trainer (torch mirror of ``mlx_speech/train/tiny.py``).

Same classes, parameter names and losses (see that file). Tensors are ``(B, F, n_mels)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlx_speech.specs.train import MelDenoiserSpec
from mlx_speech.train.task_base import MelDenoiseBase, MelDenoiseGANBase
from torch_ref.audio.spectral import log_mel
from torch_ref.layers.transformer import Transformer


class MelDenoiser(nn.Module):
    """``(B, F, n_mels)`` noisy log-mel -> ``(B, F, n_mels)`` estimate of the clean one."""

    def __init__(self, *, n_mels: int, dim: int, num_layers: int, num_heads: int,
                 ffn_dim: int, activation: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.in_proj = nn.Linear(n_mels, dim)
        self.transformer = Transformer(num_layers=num_layers, dim=dim, num_heads=num_heads,
                                       ffn_dim=ffn_dim, causal=False, rope=True, final_norm=True,
                                       activation=activation, dropout=dropout)
        self.out_proj = nn.Linear(dim, n_mels)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.transformer(self.in_proj(feats), mask=mask)
        return feats + self.out_proj(h).float()


class FrameDiscriminator(nn.Module):
    """``(B, F, n_mels)`` -> ``(B, F)`` real/fake score per frame."""

    def __init__(self, *, n_mels: int, dim: int) -> None:
        super().__init__()
        self.proj1 = nn.Linear(n_mels, dim)
        self.proj2 = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.proj1(feats), 0.2)
        h = F.leaky_relu(self.proj2(h), 0.2)
        return self.out(h)[..., 0].float()


class MelDenoiseGAN(nn.Module):
    def __init__(self, *, generator: MelDenoiser, discriminator: FrameDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def build_denoiser(spec: MelDenoiserSpec) -> MelDenoiser:
    return MelDenoiser(n_mels=spec.mel.n_mels, dim=spec.dim, num_layers=spec.num_layers,
                       num_heads=spec.num_heads, ffn_dim=spec.ffn_dim, activation=spec.activation,
                       dropout=spec.dropout)


def _frame_mask(frames: torch.Tensor, n: int) -> torch.Tensor:
    return torch.arange(n, device=frames.device)[None, :] < frames[:, None]


def _row_mean(x: torch.Tensor, valid: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    per_row = (x * valid).sum(dim=1) / frames.clamp(min=1).float()
    return per_row.mean()


class MelDenoiseTask(MelDenoiseBase):
    """Masked L1 between the denoiser's output and the clean log-mel."""

    def build(self) -> nn.Module:
        return build_denoiser(self.denoiser)

    def features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.denoiser.mel
        kw = {**m.mel_kwargs(), "floor": m.log_floor}
        # The front end stays in float32 under autocast (log of small mel values).
        with torch.autocast(device_type=inputs["clean"].device.type, enabled=False):
            clean = log_mel(inputs["clean"].float(), **kw)
            noisy = log_mel(inputs["noisy"].float(), **kw)
        noisy = noisy * inputs["time_keep"][:, :, None] * inputs["freq_keep"][:, None, :]
        return noisy, clean, _frame_mask(inputs["frames"], clean.shape[1])

    def recon(self, generator: nn.Module, noisy: torch.Tensor, clean: torch.Tensor,
              valid: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred = generator(noisy, mask=valid).float()
        return pred, _row_mean((pred - clean).abs().mean(dim=-1), valid, frames)

    def loss(self, model: nn.Module,
             inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
                           inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, clean, valid = self.features(inputs)
        with torch.no_grad():
            fake = generator(noisy, mask=valid).float()
        frames = inputs["frames"]
        B = clean.shape[0]
        scores = discriminator(torch.cat([clean, fake], dim=0))  # one call: DDP counts one forward
        real_term = _row_mean((scores[:B] - 1.0).square(), valid, frames)
        fake_term = _row_mean(scores[B:].square(), valid, frames)
        loss = real_term + fake_term
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, clean, valid = self.features(inputs)
        frames = inputs["frames"]
        pred, l1 = self.recon(generator, noisy, clean, valid, frames)
        adv = _row_mean((discriminator(pred) - 1.0).square(), valid, frames)
        loss = self.spec.recon_weight * l1 + self.spec.adv_weight * adv
        return loss, {"l1": l1, "adv": adv}

    def loss(self, model: nn.Module,
             inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, clean, valid = self.features(inputs)
        _, l1 = self.recon(model.generator, noisy, clean, valid, inputs["frames"])
        return l1, {"l1": l1}
