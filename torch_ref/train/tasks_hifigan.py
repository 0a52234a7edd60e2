"""``hifigan`` task (PyTorch mirror of :mod:`mlx_speech.train.tasks_hifigan`; same losses).

The generator and discriminator passed to the losses may be DDP wrappers: they are only
called. Front ends run in float32 with autocast off.
"""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.train.hifigan_base import HiFiGANTaskBase
from torch_ref.audio.spectral import log_mel
from torch_ref.models.hifigan.model import HiFiGANGenerator
from torch_ref.models.vocos.model import VocosGenerator
from torch_ref.train.discriminators import HiFiGANDiscriminator
from torch_ref.train.losses import (feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss,
                                    mel_l1_loss)


class HiFiGAN(nn.Module):
    def __init__(self, *, generator: HiFiGANGenerator | VocosGenerator, discriminator: HiFiGANDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[0] // 2
    return x[:n], x[n:]


class HiFiGANTask(HiFiGANTaskBase):
    def build(self) -> nn.Module:
        s = self.spec
        gen = (VocosGenerator if s.kind == "vocos" else HiFiGANGenerator)(s.generator_spec())
        if s.init is not None:
            import torch_ref  # noqa: PLC0415

            src = torch_ref.load(s.init)
            self.check_init(src, s.init)
            gen.load_state_dict(src.state_dict(), strict=True)
        return HiFiGAN(generator=gen, discriminator=HiFiGANDiscriminator(s.discriminator))

    def features(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(waveform (B, segment), generator input mel (B, segment / hop, n_mels))``."""
        wav = inputs["wav"].float()
        if "mel" in inputs:  # model.mel_dir: stored (e.g. ground-truth-aligned) mels
            return wav, inputs["mel"].float()
        m = self.spec.mel_spec()
        with torch.no_grad(), torch.autocast(device_type=wav.device.type, enabled=False):
            mel = log_mel(wav, **m.mel_kwargs(), floor=m.log_floor)[:, :-1]
        return wav, mel

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.gan_on:  # warm-up: D is not run; an exact 0 that still reaches its parameters
            zero = sum(p.sum() for p in discriminator.parameters()) * 0.0
            return zero, {"d_loss": zero.detach()}
        wav, mel = self.features(inputs)
        with torch.no_grad():
            fake = generator(mel).float()
        scores, _ = discriminator(torch.cat([wav, fake], dim=0))
        pairs = [halves(s) for s in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in pairs], [f for _, f in pairs])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.spec
        wav, mel = self.features(inputs)
        pred = generator(mel).float()
        mel_l1 = mel_l1_loss(pred, wav, mel=s.loss_mel())
        if not self.gan_on:
            return s.mel_weight * mel_l1, {"mel_l1": mel_l1}
        scores, feats = discriminator(torch.cat([wav, pred], dim=0))
        adv, _ = lsgan_generator_loss([halves(x)[1] for x in scores])
        split = [[halves(f) for f in layers] for layers in feats]
        fm = feature_matching_loss([[r for r, _ in layers] for layers in split],
                                   [[f for _, f in layers] for layers in split])
        loss = s.adv_weight * adv + s.fm_weight * fm + s.mel_weight * mel_l1
        return loss, {"mel_l1": mel_l1, "adv": adv, "fm": fm}

    def loss(self, model: nn.Module,
             inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Validation: the generator's mel L1."""
        wav, mel = self.features(inputs)
        l1 = mel_l1_loss(model.generator(mel).float(), wav, mel=self.spec.loss_mel())
        return l1, {"mel_l1": l1}
