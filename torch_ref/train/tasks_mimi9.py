"""The ``mimi9`` task (torch mirror of ``mlx_speech/train/tasks_mimi9.py``).

Same inputs (the shared neutral ``prepare`` and teacher cache), loss terms, weights and
metrics; empty codebooks are k-means-initialised, the codebooks of ``ema_heads`` learn by
their EMA update (registered buffers) and the others are kept fixed the same way (EMA decay 1,
no smoothing, no restarts).

GAN variant (``model.loss.adversarial > 0``): the same :class:`Mimi9GAN` wrapper and losses as
the MLX twin. Both trainers discard the codebook-buffer updates of the discriminator pass's
generator forward (torch_ref.train.trainer restores the buffers before the generator pass);
that forward still runs in training mode, so the quantizers' numpy generators and step
counters advance in both.
"""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.errors import CheckpointError
from mlx_speech.train.mimi9_data import Mimi9Base, fix_codebooks, weights_file
from torch_ref.quantize.codebook import EMACodebook
from torch_ref.train.discriminators import HiFiGANDiscriminator
from torch_ref.train.losses import (feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss,
                                    multi_scale_mel_loss)


def init_codebooks(model: nn.Module, task: Mimi9Base, *, chunk: int = 8) -> list[str]:
    """k-means-initialise the empty codebooks on ``task.init_audio`` (see the MLX twin)."""
    from torch_ref.models.mimi9.model import _encode_latents  # noqa: PLC0415

    pending = [n for n, m in model.named_modules() if isinstance(m, EMACodebook) and not m.is_initialized()]
    if not pending:
        return []
    wav = torch.from_numpy(task.init_audio(pending))
    fix_codebooks(model, ready_only=True)
    model.train()
    with torch.no_grad():
        lat = torch.cat([_encode_latents(model, wav[i:i + chunk]) for i in range(0, len(wav), chunk)])
        model.quantizer(lat)
    return pending


def load_model(task: Mimi9Base) -> nn.Module:
    """The torch_ref Mimi9 of ``task.spec``: its surgered checkpoint or a seeded random init
    (torch's own draws: copy MLX weights in for parity)."""
    s = task.spec
    if s.weights is not None:
        from torch_ref.weights import load_torch_model  # noqa: PLC0415

        path = weights_file(s.weights)
        model, _ = load_torch_model(path)
        if type(model).__name__ != "Mimi9Model":
            raise CheckpointError(f"{path}: not a mimi9 checkpoint")
        return model
    from torch_ref.models.mimi9.model import build_mimi9  # noqa: PLC0415

    torch.manual_seed(s.seed)
    return build_mimi9(task.arch)


class Mimi9GAN(nn.Module):
    """The GAN variant's module: ``generator`` (the Mimi9 model) and ``discriminator``."""

    def __init__(self, *, generator: nn.Module, discriminator: HiFiGANDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def real_fake(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The real (first) and reconstructed (second) halves of a discriminator output batch."""
    n = x.shape[0] // 2
    return x[:n], x[n:]


class Mimi9Task(Mimi9Base):
    """Reconstruction + commitment + Qwen / WavLM distillation, optionally + GAN terms (see the
    MLX twin). The generator and discriminator passed to the GAN losses may be DDP wrappers."""

    def build(self) -> nn.Module:
        model = load_model(self)
        init_codebooks(model, self)
        fix_codebooks(model, keep_heads=tuple(self.spec.ema_heads), decay=self.spec.ema_decay)
        if not self.gan:
            return model
        disc = HiFiGANDiscriminator(self.spec.discriminator)
        return Mimi9GAN(generator=model, discriminator=disc)

    def terms(self, model: nn.Module, inputs: dict[str, torch.Tensor]
              ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        wav = inputs["wav"]
        out = model(wav, qwen_hidden=inputs["qwen"], durations=inputs["qwen_durations"].long(),
                    wavlm_features=inputs["wavlm"])
        audio = out.audio.float()
        mel = multi_scale_mel_loss(audio, wav, sample_rate=self.grid.sample_rate,
                                   scales=[tuple(s) for s in self.spec.mel_scales])
        losses = out.bridge.losses
        return ({"mel": mel, "commitment": losses["commitment"], "qwen": losses["qwen"],
                 "wavlm": losses["wavlm"]}, out.bridge.metrics["usage"], audio)

    def distill(self, model: nn.Module, inputs: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """The weighted distillation total, its metrics and the reconstruction."""
        terms, usage, audio = self.terms(model, inputs)
        w = self.spec.loss
        total = (w.mel * terms["mel"] + w.commitment * terms["commitment"] + w.qwen * terms["qwen"]
                 + w.wavlm * terms["wavlm"])
        metrics = {k: v.detach() for k, v in terms.items()}
        metrics.update({f"usage_h{k}": usage[k].detach() for k in range(usage.shape[0])})
        return total, metrics, audio

    def loss(self, model: nn.Module,
             inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, metrics, _ = self.distill(model.generator if self.gan else model, inputs)
        return total, metrics

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        wav = inputs["wav"].float()
        with torch.no_grad():
            fake = generator(wav).audio.float()
        scores, _ = discriminator(torch.cat([wav, fake], dim=0))
        halves = [real_fake(x) for x in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in halves], [f for _, f in halves])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, metrics, audio = self.distill(generator, inputs)
        wav = inputs["wav"].float()
        scores, feats = discriminator(torch.cat([wav, audio], dim=0))
        adv, _ = lsgan_generator_loss([real_fake(x)[1] for x in scores])
        layers = [[real_fake(f) for f in fs] for fs in feats]
        fm = feature_matching_loss([[r for r, _ in ls] for ls in layers],
                                   [[f for _, f in ls] for ls in layers])
        w = self.spec.loss
        metrics.update({"adv": adv.detach(), "fm": fm.detach()})
        return total + w.adversarial * adv + w.feature_matching * fm, metrics
