"""``dac`` task (torch mirror of ``mlx_speech.train.tasks_dac``: same module tree, losses and
metrics; see there). The modules passed to the losses may be DDP wrappers: they are called,
never reached into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlx_speech.train.dac_data import DACTaskBase
from torch_ref.models.dac.model import DACModel
from torch_ref.train.dac_discriminators import DACDiscriminator
from torch_ref.train.losses import (dac_mel_loss, feature_matching_loss,
                                    lsgan_discriminator_loss, lsgan_generator_loss)

EXPORT_NAME = "dac.safetensors"


class DACGenerator(nn.Module):
    def __init__(self, codec: DACModel, semantic_dim: int | None) -> None:
        super().__init__()
        self.codec = codec
        self.semantic_proj = (nn.Linear(codec.spec.latent_dim, semantic_dim) if semantic_dim
                              else None)

    def forward(self, wav: torch.Tensor, level_mask: torch.Tensor | None = None
                ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        z = self.codec.encode_latents(wav)
        q = self.codec.quantizer(z, mask=level_mask)
        return q, z, self.codec.decode_latents(q.quantized)


class DACGAN(nn.Module):
    def __init__(self, *, generator: DACGenerator, discriminator: DACDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[0] // 2
    return x[:n], x[n:]


def masked_frames(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def _semantic_proj(generator: nn.Module) -> nn.Module:
    return getattr(generator, "module", generator).semantic_proj


class DACTask(DACTaskBase):
    def build(self) -> nn.Module:
        codec = DACModel(self.codec)
        if self.spec.init is not None:
            import torch_ref  # noqa: PLC0415

            src = torch_ref.load(self.spec.init, family="dac")
            self.check_init(src.spec)
            codec.load_state_dict(src.state_dict(), strict=True)
        semantic = self.semantic_dim if self.semantic != "none" else None
        return DACGAN(generator=DACGenerator(codec, semantic),
                      discriminator=DACDiscriminator(self.spec.discriminator_spec()))

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Any:
        self.out_dir = Path(out_dir)
        return super().open_corpus(spec, out_dir, progress=progress)

    def export(self, model: nn.Module) -> None:
        from torch_ref.weights import save_torch_model  # noqa: PLC0415

        codec = model.generator.codec
        save_torch_model(self.out_dir / EXPORT_NAME, codec, model="dac", spec=codec.spec)

    def semantic_loss(self, generator: nn.Module, q: Any, z: torch.Tensor,
                      inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.spec.semantic
        src = q.first if s.target == "codebook0" else z
        pred = _semantic_proj(generator)(src).float()
        mask = inputs["frame_mask"].float()
        if self.semantic == "hubert_clusters":
            ce = nn.functional.cross_entropy(pred.transpose(1, 2), inputs["semantic_ids"].long(),
                                             reduction="none")
            return masked_frames(ce, mask)
        target = inputs["semantic"].float()
        if s.loss == "mse":
            return masked_frames((pred - target).square().mean(dim=-1), mask)
        cos = (pred * target).sum(-1) / ((pred * pred).sum(-1) * (target * target).sum(-1)).sqrt().clamp(min=1e-8)
        return masked_frames(1.0 - cos, mask)

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        wav = inputs["wav"].float()
        with torch.no_grad():
            fake = generator(wav, inputs.get("level_mask"))[2].float()
        scores, _ = discriminator(torch.cat([wav, fake], dim=0))
        pairs = [_halves(x) for x in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in pairs], [f for _, f in pairs])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.spec
        wav = inputs["wav"].float()
        q, z, pred = generator(wav, inputs.get("level_mask"))
        pred = pred.float()
        mel = dac_mel_loss(pred, wav, sample_rate=self.codec.sample_rate)
        scores, feats = discriminator(torch.cat([wav, pred], dim=0))
        adv, _ = lsgan_generator_loss([_halves(x)[1] for x in scores])
        split = [[_halves(f) for f in layers] for layers in feats]
        fm = feature_matching_loss([[r for r, _ in layers] for layers in split],
                                   [[f for _, f in layers] for layers in split], exclude_last=True)
        loss = (s.mel_weight * mel + s.fm_weight * fm + s.adv_weight * adv
                + s.commitment_weight * q.commitment_loss + s.codebook_weight * q.codebook_loss)
        metrics = {"mel": mel, "adv": adv, "fm": fm, "commitment": q.commitment_loss,
                   "codebook": q.codebook_loss}
        if self.semantic != "none":
            sem = self.semantic_loss(generator, q, z, inputs)
            loss = loss + s.semantic.weight * sem
            metrics["semantic"] = sem
        for i in range(q.metrics["usage"].shape[0]):
            metrics[f"usage_{i}"] = q.metrics["usage"][i]
        return loss, metrics

    def loss(self, model: nn.Module,
             inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        wav = inputs["wav"].float()
        pred = model.generator(wav)[2].float()
        mel = dac_mel_loss(pred, wav, sample_rate=self.codec.sample_rate)
        return mel, {"mel": mel}
