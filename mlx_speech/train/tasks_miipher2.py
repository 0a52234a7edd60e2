"""Miipher-2 tasks (MLX): ``miipher2_adapters`` (stage 1) and ``miipher2_vocoder`` (stages 2
and 3). Mirrored in ``torch_ref.train.tasks_miipher2``; inputs from
:mod:`mlx_speech.train.miipher2_data`; recipes in
:mod:`mlx_speech.models.miipher2.train_spec`.

The model starts from ``init`` (a miipher2 file: every weight, backbone included), else from
the spec's ``backbone_path`` (a transformers folder, into the backbone), else at random (the seeded
stand-in backbone). The parts a stage does not train are frozen and declared static, so the
trainer compiles the step. After every checkpoint the restorer (EMA weights when EMA runs) is
exported as ``<out_dir>/miipher2.safetensors``, the ``init`` of the next stage and what
``mlx-speech restore --weights`` reads.

* adapters: ``l1_weight * l1 + l2_weight * l2 + sc_weight * sc`` of
  :func:`~mlx_speech.train.losses.normalised_feature_loss` between the adapted features of the
  degraded crop and the backbone's (unadapted) features of the clean crop;
* vocoder, with ``f`` the backbone's features (``features: clean``: of the clean crop, no
  adapters; ``restored``: adapted, of the degraded crop) and ``y = vocoder(f)``:
  discriminator ``LSGAN_D(D(x), D(y))``; generator ``adv * LSGAN_G + fm * FM + mel * mel L1 +
  stft * (sc + log-magnitude)``; validation: the mel L1.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.models.miipher2.model import Miipher2Model, mark_static, with_backbone
from mlx_speech.train.discriminators import HiFiGANDiscriminator
from mlx_speech.train.losses import (feature_matching_loss, lsgan_discriminator_loss,
                                     lsgan_generator_loss, mel_l1_loss, multi_resolution_stft_loss,
                                     normalised_feature_loss)
from mlx_speech.train.miipher2_data import AdapterTaskBase, VocoderTaskBase
from mlx_speech.train.tasks_hifigan import HiFiGAN, halves  # the generator / discriminator pair

EXPORT_NAME = "miipher2.safetensors"


def build_restorer(task: AdapterTaskBase | VocoderTaskBase) -> Miipher2Model:
    """The model of a run: from ``init``, ``backbone_path`` or at random (see the docstring)."""
    import mlx_speech  # noqa: PLC0415
    from mlx_speech.errors import CheckpointError  # noqa: PLC0415
    from mlx_speech.weights.core import flatten_tree  # noqa: PLC0415

    s = task.spec
    model = Miipher2Model(task.restorer)
    if s.init is not None:
        src = mlx_speech.load(s.init, family="miipher2")
        if src.spec.replace(backbone_path=None) != task.restorer.replace(backbone_path=None):
            raise CheckpointError(f"model.init {s.init}: its Miipher-2 spec differs from the "
                                  f"recipe's")
        model.load_weights(list(flatten_tree(src.parameters()).items()), strict=True)
    elif task.restorer.backbone_path is not None:
        with_backbone(model, task.restorer.backbone_path)
    return model


def _export(task: AdapterTaskBase | VocoderTaskBase, model: Miipher2Model) -> None:
    from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415

    save_mlx_model(Path(task.out_dir) / EXPORT_NAME, model, model="miipher2", spec=model.spec)


class AdapterTask(AdapterTaskBase):
    def build(self) -> nn.Module:
        model = build_restorer(self)
        mark_static(model.vocoder)
        return model

    def export(self, model: nn.Module) -> None:
        _export(self, model)

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        s = self.spec
        target = mx.stop_gradient(model(inputs["clean"], adapt=False, output="features"))
        pred = model(inputs["degraded"], output="features")
        mask = inputs["mask"]
        terms = normalised_feature_loss(pred, target, mask[:, :pred.shape[1]])
        loss = s.l1_weight * terms["l1"] + s.l2_weight * terms["l2"] + s.sc_weight * terms["sc"]
        return loss, terms


class VocoderTask(VocoderTaskBase):
    def build(self) -> nn.Module:
        model = build_restorer(self)
        for a in model.adapters:
            mark_static(a)
        return HiFiGAN(generator=model, discriminator=HiFiGANDiscriminator(self.spec.discriminator))

    def export(self, model: nn.Module) -> None:
        _export(self, model.generator)

    def restore(self, generator: nn.Module, inputs: dict[str, mx.array]) -> mx.array:
        """The vocoder's output for the crop's features (only the vocoder trains here: the
        backbone and adapters are frozen, so no gradient reaches them)."""
        return generator(inputs["source"], adapt=self.spec.features == "restored",
                         frames=self.spec.segment_frames).astype(mx.float32)

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        wav = inputs["wav"]
        fake = mx.stop_gradient(self.restore(generator, inputs))
        scores, _ = discriminator(mx.concatenate([wav, fake.astype(wav.dtype)], axis=0))
        pairs = [halves(x) for x in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in pairs], [f for _, f in pairs])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        s = self.spec
        wav = inputs["wav"]
        pred = self.restore(generator, inputs)
        mel = mel_l1_loss(pred, wav, mel=s.loss_mel())
        sc, mag = multi_resolution_stft_loss(pred, wav, s.stft_resolutions)
        scores, feats = discriminator(mx.concatenate([wav, pred], axis=0))
        adv, _ = lsgan_generator_loss([halves(x)[1] for x in scores])
        split = [[halves(f) for f in layers] for layers in feats]
        fm = feature_matching_loss([[r for r, _ in layers] for layers in split],
                                   [[f for _, f in layers] for layers in split])
        loss = (s.adv_weight * adv + s.fm_weight * fm + s.mel_weight * mel
                + s.stft_weight * (sc + mag))
        return loss, {"mel_l1": mel, "stft_sc": sc, "stft_mag": mag, "adv": adv, "fm": fm}

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        """Validation: the vocoder's mel L1."""
        pred = self.restore(model.generator, inputs)
        l1 = mel_l1_loss(pred, inputs["wav"], mel=self.spec.loss_mel())
        return l1, {"mel_l1": l1}
