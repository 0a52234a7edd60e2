"""``bsq_vit`` task (MLX): the BSQ-ViT tokenizer against a PatchGAN on the mel, hinge loss.

Mirrored in ``torch_ref.train.tasks_bsq_vit``; inputs from
:class:`~mlx_speech.train.bsq_vit_data.BSQViTTaskBase`. Module: :class:`BSQViTGAN` with
``generator`` (the :class:`~mlx_speech.models.bsq_vit.model.BSQViTModel`) and ``discriminator``
(:class:`~mlx_speech.train.bsq_vit_discriminator.PatchGANDiscriminator`). After every
checkpoint the tokenizer alone -- the EMA weights when EMA runs -- is exported as a tagged
file, ``<out_dir>/bsq_vit.safetensors`` (with ``model.vocoder_weights``' HiFi-GAN joined in),
which ``mlx-speech codec --model bsq-vit --weights`` and ``mlx_speech.load`` read.

Per step, with ``x`` the crop's mel on the [-1, 1] scale, ``x'`` the SpecAugment-masked mel
(masked cells set to -1, the floor) and ``y = tokenizer(x')`` the reconstruction:

* discriminator: ``gan_scale * hinge_D(D(x), D(y))``, ``y`` a constant;
* generator: ``l1 |y - x| + l2 (y - x)^2 + quantizer * BSQ loss + adv * gan_scale *
  hinge_G(D(y))``;
* metrics: the BSQ terms (commitment, per-sample and codebook entropy) and code usage, the
  share of each codebook's ``2^code_bits`` codes used in the batch (averaged over codebooks);
* validation: the mel L1 of the eval-mode round trip of the unmasked mel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

import mlx_speech
from mlx_speech.models.bsq_vit.model import BSQViTModel
from mlx_speech.quantize.codes import histogram
from mlx_speech.train.bsq_vit_data import BSQViTTaskBase
from mlx_speech.train.bsq_vit_discriminator import PatchGANDiscriminator
from mlx_speech.train.losses import hinge_discriminator_loss, hinge_generator_loss
from mlx_speech.weights.core import flatten_tree

EXPORT_NAME = "bsq_vit.safetensors"


class BSQViTGAN(nn.Module):
    def __init__(self, *, generator: BSQViTModel, discriminator: PatchGANDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def code_usage(codes: mx.array, size: int) -> mx.array:
    """Share of the ``size`` codes of each codebook used in ``codes (B, K, F)``, averaged over
    the codebooks (no gradient)."""
    k = codes.shape[1]
    counts = histogram(codes + (mx.arange(k, dtype=codes.dtype) * size)[None, :, None], k * size)
    return mx.stop_gradient((counts > 0).astype(mx.float32).mean())


class BSQViTTask(BSQViTTaskBase):
    def build(self) -> nn.Module:
        tok = BSQViTModel(self.tokenizer)
        if self.spec.init is not None:
            src = mlx_speech.load(self.spec.init, family="bsq_vit")
            self.check_init(src.spec)
            weights = {k: v for k, v in flatten_tree(src.parameters()).items()
                       if not k.startswith("vocoder.")}
            tok.load_weights(list(weights.items()), strict=False)
        return BSQViTGAN(generator=tok,
                         discriminator=PatchGANDiscriminator(self.spec.discriminator_spec()))

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Any:
        self.out_dir = Path(out_dir)
        return super().open_corpus(spec, out_dir, progress=progress)

    def export(self, model: nn.Module) -> None:
        from mlx_speech.models.bsq_vit.load import with_vocoder  # noqa: PLC0415
        from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415

        tok = model.generator
        if self.spec.vocoder_weights is not None:
            tok = with_vocoder(tok, self.spec.vocoder_weights)
        save_mlx_model(self.out_dir / EXPORT_NAME, tok, model="bsq_vit", spec=tok.spec)

    # -- losses ------------------------------------------------------------------------------
    def mels(self, generator: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, mx.array]:
        """``(target mel, encoder input)``: the crop's mel and its SpecAugment-masked copy."""
        x = mx.stop_gradient(generator.features(inputs["wav"]))
        keep = inputs["time_keep"][:, :, None] * inputs["freq_keep"][:, None, :]
        return x, x * keep - (1.0 - keep)

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        x, x_in = self.mels(generator, inputs)
        fake = mx.stop_gradient(generator(x_in).mel)
        scores, _ = discriminator(mx.concatenate([x, fake.astype(x.dtype)], axis=0))
        n = x.shape[0]
        loss, parts = hinge_discriminator_loss(scores[:n], scores[n:])
        scale = inputs["gan_scale"].mean()
        return scale * loss, {"d_loss": loss, **parts}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        s = self.spec
        x, x_in = self.mels(generator, inputs)
        out = generator(x_in)
        y = out.mel.astype(mx.float32)
        l1 = mx.abs(y - x).mean()
        l2 = mx.square(y - x).mean()
        scores, _ = discriminator(y)
        adv = hinge_generator_loss(scores)
        q = out.quant
        loss = (s.l1_weight * l1 + s.l2_weight * l2 + s.quantizer_weight * q.loss
                + s.adv_weight * inputs["gan_scale"].mean() * adv)
        metrics = {"l1": l1, "l2": l2, "adv": adv, "quantizer": q.loss,
                   "commitment": q.losses["commitment"],
                   "per_sample_entropy": q.losses["per_sample_entropy"],
                   "codebook_entropy": q.losses["codebook_entropy"],
                   "usage": code_usage(q.codes, 2 ** self.tokenizer.code_bits)}
        return loss, metrics

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        """Validation: the mel L1 of the round trip."""
        x = model.generator.features(inputs["wav"])
        l1 = mx.abs(model.generator(x).mel.astype(mx.float32) - x).mean()
        return l1, {"l1": l1}
