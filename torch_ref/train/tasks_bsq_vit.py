"""``bsq_vit`` task (torch_ref): the twin of :mod:`mlx_speech.train.tasks_bsq_vit` (same losses,
metrics, export; the docstring there is the contract). The generator handed to the losses may
be a DDP wrapper: it is called, and only its parameter-free front end is reached through
``.module``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.train.bsq_vit_data import BSQViTTaskBase
from torch_ref.models.bsq_vit.model import BSQViTModel
from torch_ref.quantize.codes import histogram
from torch_ref.train.bsq_vit_discriminator import PatchGANDiscriminator
from torch_ref.train.losses import hinge_discriminator_loss, hinge_generator_loss

EXPORT_NAME = "bsq_vit.safetensors"


class BSQViTGAN(nn.Module):
    def __init__(self, *, generator: BSQViTModel, discriminator: PatchGANDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def code_usage(codes: torch.Tensor, size: int) -> torch.Tensor:
    """Share of the ``size`` codes of each codebook used in ``codes (B, K, F)``, averaged over
    the codebooks (no gradient)."""
    k = codes.shape[1]
    offsets = (torch.arange(k, device=codes.device, dtype=codes.dtype) * size)[None, :, None]
    counts = histogram(codes.detach() + offsets, k * size)
    return (counts > 0).float().mean()


def with_vocoder(model: BSQViTModel, hifigan: str | Path) -> BSQViTModel:
    """The torch twin of ``mlx_speech.models.bsq_vit.load.with_vocoder``."""
    import torch_ref  # noqa: PLC0415

    gen = torch_ref.load(hifigan, family="hifigan")
    voc = gen.state_dict()
    gen_spec = gen.spec.replace(weight_norm=any(k.endswith(".weight_g") for k in voc))
    try:
        spec = model.spec.replace(vocoder=model.spec.vocoder.replace(
            kind="hifigan", hifigan=gen_spec.to_dict()))
    except SpecError as exc:
        raise CheckpointError(f"{hifigan}: {exc}") from None
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("vocoder.")}
    state.update({f"vocoder.{k}": v for k, v in voc.items()})
    out = BSQViTModel(spec)
    out.load_state_dict(state, strict=True)
    return out.eval()


class BSQViTTask(BSQViTTaskBase):
    def build(self) -> nn.Module:
        tok = BSQViTModel(self.tokenizer)
        if self.spec.init is not None:
            import torch_ref  # noqa: PLC0415

            src = torch_ref.load(self.spec.init, family="bsq_vit")
            self.check_init(src.spec)
            state = {k: v for k, v in src.state_dict().items() if not k.startswith("vocoder.")}
            tok.load_state_dict(state, strict=False)
        return BSQViTGAN(generator=tok,
                         discriminator=PatchGANDiscriminator(self.spec.discriminator_spec()))

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Any:
        self.out_dir = Path(out_dir)
        return super().open_corpus(spec, out_dir, progress=progress)

    def export(self, model: nn.Module) -> None:
        from torch_ref.weights import save_torch_model  # noqa: PLC0415

        tok = model.generator
        if self.spec.vocoder_weights is not None:
            tok = with_vocoder(tok, self.spec.vocoder_weights)
        save_torch_model(self.out_dir / EXPORT_NAME, tok, model="bsq_vit", spec=tok.spec)

    # -- losses ------------------------------------------------------------------------------
    def mels(self, generator: nn.Module, inputs: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(target mel, encoder input)``: the crop's mel and its SpecAugment-masked copy."""
        with torch.no_grad():
            x = getattr(generator, "module", generator).features(inputs["wav"])
        keep = inputs["time_keep"][:, :, None] * inputs["freq_keep"][:, None, :]
        return x, x * keep - (1.0 - keep)

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, x_in = self.mels(generator, inputs)
        with torch.no_grad():
            fake = generator(x_in).mel
        scores, _ = discriminator(torch.cat([x, fake.to(x.dtype)], dim=0))
        n = x.shape[0]
        loss, parts = hinge_discriminator_loss(scores[:n], scores[n:])
        return inputs["gan_scale"].mean() * loss, {"d_loss": loss, **parts}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.spec
        x, x_in = self.mels(generator, inputs)
        out = generator(x_in)
        y = out.mel.float()
        l1 = (y - x).abs().mean()
        l2 = (y - x).square().mean()
        scores, _ = discriminator(y)
        adv = hinge_generator_loss(scores)
        q = out.quant
        loss = (s.l1_weight * l1 + s.l2_weight * l2 + s.quantizer_weight * q.loss
                + s.adv_weight * inputs["gan_scale"].mean() * adv)
        size = 2 ** self.tokenizer.code_bits
        metrics = {"l1": l1, "l2": l2, "adv": adv, "quantizer": q.loss,
                   "commitment": q.losses["commitment"],
                   "per_sample_entropy": q.losses["per_sample_entropy"],
                   "codebook_entropy": q.losses["codebook_entropy"],
                   "usage": code_usage(q.codes, size)}
        return loss, metrics

    def loss(self, model: nn.Module, inputs: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Validation: the mel L1 of the round trip."""
        gen = model.generator
        x = getattr(gen, "module", gen).features(inputs["wav"])
        l1 = (gen(x).mel.float() - x).abs().mean()
        return l1, {"l1": l1}
