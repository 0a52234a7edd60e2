"""``hifigan`` task (MLX): HiFi-GAN generator + MPD/MSD discriminator, least-squares GAN.

Mirrored in ``torch_ref.train.tasks_hifigan``. The module has ``generator``
(:class:`~mlx_speech.models.hifigan.model.HiFiGANGenerator`) and ``discriminator``
(:class:`~mlx_speech.train.discriminators.HiFiGANDiscriminator`) children, so a trainer
checkpoint's ``model.generator.*`` arrays are a generator checkpoint (see
``convert.hifigan_train.export_generator``).

Per step, with ``x`` the cropped waveform and ``m`` its log-mel (the input front end, centred
frames, the last frame dropped so the generator returns exactly ``segment_size`` samples):

* discriminator: ``LSGAN_D(D(x), D(G(m)))`` with ``G(m)`` a constant;
* generator: ``adv_weight * LSGAN_G(D(G(m))) + fm_weight * FM(D(x), D(G(m)))
  + mel_weight * L1(logmel(G(m)), logmel(x))`` (paper: 1, 2, 45);
* validation: the mel L1 alone;
* before ``disc_start`` steps: the generator's mel L1 alone; the discriminator is not run.

Real and generated audio go through the discriminator in one call (one forward for DDP).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_speech.audio.spectral import log_mel
from mlx_speech.models.hifigan.model import HiFiGANGenerator
from mlx_speech.models.vocos.model import VocosGenerator
from mlx_speech.train.discriminators import HiFiGANDiscriminator
from mlx_speech.train.hifigan_base import HiFiGANTaskBase
from mlx_speech.train.losses import (feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss,
                                     mel_l1_loss)


class HiFiGAN(nn.Module):
    def __init__(self, *, generator: HiFiGANGenerator | VocosGenerator, discriminator: HiFiGANDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def halves(x: mx.array) -> tuple[mx.array, mx.array]:
    n = x.shape[0] // 2
    return x[:n], x[n:]


class HiFiGANTask(HiFiGANTaskBase):
    def build(self) -> nn.Module:
        s = self.spec
        gen = (VocosGenerator if s.kind == "vocos" else HiFiGANGenerator)(s.generator_spec())
        if s.init is not None:
            from mlx_speech.weights.core import flatten_tree  # noqa: PLC0415
            from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

            src, _ = load_mlx_model(s.init)
            self.check_init(src, s.init)
            gen.load_weights(list(flatten_tree(src.parameters()).items()), strict=True)
        return HiFiGAN(generator=gen, discriminator=HiFiGANDiscriminator(s.discriminator))

    def features(self, inputs: dict[str, mx.array]) -> tuple[mx.array, mx.array]:
        """``(waveform (B, segment), generator input mel (B, segment / hop, n_mels))``."""
        wav = inputs["wav"]
        if "mel" in inputs:  # model.mel_dir: stored (e.g. ground-truth-aligned) mels
            return wav, mx.stop_gradient(inputs["mel"])
        m = self.spec.mel_spec()
        mel = log_mel(wav, **m.mel_kwargs(), floor=m.log_floor)[:, :-1]
        return wav, mx.stop_gradient(mel)

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        if not self.gan_on:  # warm-up: D is not run; an exact 0 that still reaches its parameters
            zero = sum((p.sum() for _, p in tree_flatten(discriminator.trainable_parameters())), mx.array(0.0)) * 0.0
            return zero, {"d_loss": zero}
        wav, mel = self.features(inputs)
        fake = mx.stop_gradient(generator(mel))
        scores, _ = discriminator(mx.concatenate([wav, fake.astype(wav.dtype)], axis=0))
        pairs = [halves(s) for s in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in pairs], [f for _, f in pairs])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        s = self.spec
        wav, mel = self.features(inputs)
        pred = generator(mel).astype(mx.float32)
        mel_l1 = mel_l1_loss(pred, wav, mel=s.loss_mel())
        if not self.gan_on:
            return s.mel_weight * mel_l1, {"mel_l1": mel_l1}
        scores, feats = discriminator(mx.concatenate([wav, pred], axis=0))
        adv, _ = lsgan_generator_loss([halves(x)[1] for x in scores])
        split = [[halves(f) for f in layers] for layers in feats]
        fm = feature_matching_loss([[r for r, _ in layers] for layers in split],
                                   [[f for _, f in layers] for layers in split])
        loss = s.adv_weight * adv + s.fm_weight * fm + s.mel_weight * mel_l1
        return loss, {"mel_l1": mel_l1, "adv": adv, "fm": fm}

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        """Validation: the generator's mel L1."""
        wav, mel = self.features(inputs)
        l1 = mel_l1_loss(model.generator(mel).astype(mx.float32), wav, mel=self.spec.loss_mel())
        return l1, {"mel_l1": l1}
