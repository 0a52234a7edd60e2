"""``dac`` task (MLX): a DAC-style codec against Descript's discriminator, with an optional
semantic head. Mirrored in ``torch_ref.train.tasks_dac``; inputs from
:class:`~mlx_speech.train.dac_data.DACTaskBase`.

Module: :class:`DACGAN` with ``generator`` (:class:`DACGenerator`: ``codec``, the
:class:`~mlx_speech.models.dac.model.DACModel`, and ``semantic_proj`` when the recipe has a
semantic mode) and ``discriminator``
(:class:`~mlx_speech.train.dac_discriminators.DACDiscriminator`). After every checkpoint the
codec alone is exported as a tagged file, ``<out_dir>/dac.safetensors``, which
``mlx-speech codec --model dac --weights`` and ``mlx_speech.load`` read.

Per step, with ``x`` the crop and ``y = decode(quantize(encode(x)))`` (quantizer dropout in
training):

* discriminator: ``LSGAN_D(D(x), D(y))``, ``y`` a constant;
* generator (Descript's conf/final weights): ``15 mel + 2 FM + 1 LSGAN_G + 0.25 commitment
  + 1 codebook (+ semantic weight x semantic)``; feature matching skips each sub-discriminator's
  score map, as Descript's ``GANLoss``;
* semantic (``wavlm``): ``1 - cos`` (or MSE) between ``semantic_proj`` of level 0's output
  (or of the latents) and the teacher's features, over frames holding audio;
  (``hubert_clusters``): cross-entropy of ``semantic_proj`` logits against the cluster ids;
* validation: the mel loss of the eval-mode round trip.

Quantizer dropout comes in as ``level_mask``, drawn by ``prepare`` (the quantizer's own
generator is not used in training), so a resumed run continues the same draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

import mlx_speech

from mlx_speech.models.dac.model import DACModel
from mlx_speech.train.dac_data import DACTaskBase
from mlx_speech.train.dac_discriminators import DACDiscriminator
from mlx_speech.weights.core import flatten_tree
from mlx_speech.train.losses import (dac_mel_loss, feature_matching_loss,
                                     lsgan_discriminator_loss, lsgan_generator_loss)

EXPORT_NAME = "dac.safetensors"


class DACGenerator(nn.Module):
    """The trained side: the codec plus, with a semantic mode, its projection head."""

    def __init__(self, codec: DACModel, semantic_dim: int | None) -> None:
        super().__init__()
        self.codec = codec
        if semantic_dim:
            self.semantic_proj = nn.Linear(codec.spec.latent_dim, semantic_dim)

    def __call__(self, wav: mx.array, level_mask: mx.array | None = None
                 ) -> tuple[Any, mx.array, mx.array]:
        """``(quantizer output, latents (B, F, D), reconstruction (B, S))``; ``level_mask (B, K)``
        is the quantizer dropout of this step (drawn by ``prepare``)."""
        z = self.codec.encode_latents(wav)
        q = self.codec.quantizer(z, mask=level_mask)
        return q, z, self.codec.decode_latents(q.quantized)


class DACGAN(nn.Module):
    def __init__(self, *, generator: DACGenerator, discriminator: DACDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def _halves(x: mx.array) -> tuple[mx.array, mx.array]:
    n = x.shape[0] // 2
    return x[:n], x[n:]


def masked_frames(x: mx.array, mask: mx.array) -> mx.array:
    """Mean of per-frame values ``x (B, F)`` over frames where ``mask (B, F)`` is 1."""
    return (x * mask).sum() / mx.maximum(mask.sum(), 1.0)


class DACTask(DACTaskBase):
    def build(self) -> nn.Module:
        codec = DACModel(self.codec)
        if self.spec.init is not None:
            src = mlx_speech.load(self.spec.init, family="dac")
            self.check_init(src.spec)
            codec.load_weights(list(flatten_tree(src.parameters()).items()), strict=True)
        semantic = self.semantic_dim if self.semantic != "none" else None
        return DACGAN(generator=DACGenerator(codec, semantic),
                      discriminator=DACDiscriminator(self.spec.discriminator_spec()))

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Any:
        self.out_dir = Path(out_dir)
        return super().open_corpus(spec, out_dir, progress=progress)

    def export(self, model: nn.Module) -> None:
        from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415

        codec = model.generator.codec
        save_mlx_model(self.out_dir / EXPORT_NAME, codec, model="dac", spec=codec.spec)

    # -- losses ------------------------------------------------------------------------------
    def semantic_loss(self, generator: DACGenerator, q: Any, z: mx.array,
                      inputs: dict[str, mx.array]) -> mx.array:
        s = self.spec.semantic
        src = q.first if s.target == "codebook0" else z
        pred = generator.semantic_proj(src).astype(mx.float32)
        mask = inputs["frame_mask"]
        if self.semantic == "hubert_clusters":
            ce = nn.losses.cross_entropy(pred, inputs["semantic_ids"].astype(mx.int32))
            return masked_frames(ce, mask)
        target = inputs["semantic"]
        if s.loss == "mse":
            return masked_frames(mx.square(pred - target).mean(axis=-1), mask)
        cos = (pred * target).sum(-1) / mx.maximum(
            mx.sqrt((pred * pred).sum(-1) * (target * target).sum(-1)), 1e-8)
        return masked_frames(1.0 - cos, mask)

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        wav = inputs["wav"]
        fake = mx.stop_gradient(generator(wav, inputs.get("level_mask"))[2])
        scores, _ = discriminator(mx.concatenate([wav, fake.astype(wav.dtype)], axis=0))
        pairs = [_halves(x) for x in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in pairs], [f for _, f in pairs])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        s = self.spec
        wav = inputs["wav"]
        q, z, pred = generator(wav, inputs.get("level_mask"))
        pred = pred.astype(mx.float32)
        mel = dac_mel_loss(pred, wav, sample_rate=self.codec.sample_rate)
        scores, feats = discriminator(mx.concatenate([wav, pred], axis=0))
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

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        """Validation: the mel loss of the round trip."""
        wav = inputs["wav"]
        pred = model.generator(wav)[2].astype(mx.float32)
        mel = dac_mel_loss(pred, wav, sample_rate=self.codec.sample_rate)
        return mel, {"mel": mel}

