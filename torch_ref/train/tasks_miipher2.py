"""Miipher-2 tasks (torch_ref): the twins of :mod:`mlx_speech.train.tasks_miipher2` (same
losses, metrics, export; the docstring there is the contract). The modules handed to the
losses may be DDP wrappers: they are only called."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mlx_speech.errors import CheckpointError
from mlx_speech.train.miipher2_data import AdapterTaskBase, VocoderTaskBase
from torch_ref.models.miipher2.model import Miipher2Model, freeze, with_backbone
from torch_ref.train.discriminators import HiFiGANDiscriminator
from torch_ref.train.losses import (feature_matching_loss, lsgan_discriminator_loss,
                                    lsgan_generator_loss, mel_l1_loss, multi_resolution_stft_loss,
                                    normalised_feature_loss)
from torch_ref.train.tasks_hifigan import HiFiGAN, halves  # the generator / discriminator pair

EXPORT_NAME = "miipher2.safetensors"


def build_restorer(task: AdapterTaskBase | VocoderTaskBase) -> Miipher2Model:
    s = task.spec
    model = Miipher2Model(task.restorer)
    if s.init is not None:
        import torch_ref  # noqa: PLC0415

        src = torch_ref.load(s.init, family="miipher2")
        if src.spec.replace(backbone_path=None) != task.restorer.replace(backbone_path=None):
            raise CheckpointError(f"model.init {s.init}: its Miipher-2 spec differs from the "
                                  f"recipe's")
        model.load_state_dict(src.state_dict(), strict=True)
    elif task.restorer.backbone_path is not None:
        with_backbone(model, task.restorer.backbone_path)
    return model


def _export(task: AdapterTaskBase | VocoderTaskBase, model: Miipher2Model) -> None:
    from torch_ref.weights import save_torch_model  # noqa: PLC0415

    save_torch_model(Path(task.out_dir) / EXPORT_NAME, model, model="miipher2", spec=model.spec)


class AdapterTask(AdapterTaskBase):
    def build(self) -> nn.Module:
        model = build_restorer(self)
        freeze(model.vocoder)
        return model

    def export(self, model: nn.Module) -> None:
        _export(self, model)

    def loss(self, model: nn.Module, inputs: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.spec
        with torch.no_grad():
            target = model(inputs["clean"], adapt=False, output="features")
        pred = model(inputs["degraded"], output="features")
        terms = normalised_feature_loss(pred, target, inputs["mask"][:, :pred.shape[1]])
        loss = s.l1_weight * terms["l1"] + s.l2_weight * terms["l2"] + s.sc_weight * terms["sc"]
        return loss, terms


class VocoderTask(VocoderTaskBase):
    def build(self) -> nn.Module:
        model = build_restorer(self)
        freeze(model.adapters)
        return HiFiGAN(generator=model, discriminator=HiFiGANDiscriminator(self.spec.discriminator))

    def export(self, model: nn.Module) -> None:
        _export(self, model.generator)

    def restore(self, generator: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return generator(inputs["source"], adapt=self.spec.features == "restored",
                         frames=self.spec.segment_frames).float()

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, torch.Tensor]
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        wav = inputs["wav"]
        with torch.no_grad():
            fake = self.restore(generator, inputs)
        scores, _ = discriminator(torch.cat([wav, fake.to(wav.dtype)], dim=0))
        pairs = [halves(x) for x in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in pairs], [f for _, f in pairs])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, torch.Tensor]
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.spec
        wav = inputs["wav"]
        pred = self.restore(generator, inputs)
        mel = mel_l1_loss(pred, wav, mel=s.loss_mel())
        sc, mag = multi_resolution_stft_loss(pred, wav, s.stft_resolutions)
        scores, feats = discriminator(torch.cat([wav, pred], dim=0))
        adv, _ = lsgan_generator_loss([halves(x)[1] for x in scores])
        split = [[halves(f) for f in layers] for layers in feats]
        fm = feature_matching_loss([[r for r, _ in layers] for layers in split],
                                   [[f for _, f in layers] for layers in split])
        loss = (s.adv_weight * adv + s.fm_weight * fm + s.mel_weight * mel
                + s.stft_weight * (sc + mag))
        return loss, {"mel_l1": mel, "stft_sc": sc, "stft_mag": mag, "adv": adv, "fm": fm}

    def loss(self, model: nn.Module, inputs: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pred = self.restore(model.generator, inputs)
        l1 = mel_l1_loss(pred, inputs["wav"], mel=self.spec.loss_mel())
        return l1, {"mel_l1": l1}
