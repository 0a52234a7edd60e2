"""The ``mimi9`` task (MLX): distil Qwen and WavLM into a 9-codebook Mimi.

Inputs come from :class:`~mlx_speech.train.mimi9_data.Mimi9Base` (frame-aligned crops and
cached teacher targets). The loss, a mean over rows (all rows have the same frames)::

    mel * multi_scale_mel(audio, wav) + commitment * bridge commitment
      + qwen * MSE(proj_qwen(q_c), Qwen) + wavlm * MSE(proj_wavlm(q_c + q_p), WavLM)

Codebooks: the EMA statistics (``embedding_sum``, ``cluster_usage``, ``initialized``) are
buffers (outside ``trainable_parameters()``): the trainer gives them no optimiser and adopts
the values the forward's EMA update writes (``mlx_speech.train.trainer``; torch_ref keeps its
registered buffers), so they learn as in Mimi's own training. ``model.ema_heads`` (default
heads 0 and 1) picks the codebooks that learn; ``build`` fixes the others (decay 1, no
smoothing, no dead-code restarts: an exact no-op), so the transplanted acoustic codebooks stay
as Mimi left them. The quantizers stay in training mode (straight-through estimator), so the
distillation gradients reach each head's input projection (and the encoder when it trains).
Codebooks that are still empty (surgery leaves head 0's) are k-means-initialised first, on
the latents of ``model.init_manifest`` (:func:`init_codebooks`). Training-mode quantizers
read their ``initialized`` flags with ``.item()``, which means the recipe needs
``compile: false``. Metrics: the four terms plus the batch usage of every
head (``usage_h0`` ... ``usage_h8``: the fraction of its codes used in this batch).

GAN variant (``model.loss.adversarial > 0``; ``gan`` is then true for the instance):
``build`` returns :class:`Mimi9GAN` (children ``generator``, the Mimi9 model, and
``discriminator``, a :class:`~mlx_speech.train.discriminators.HiFiGANDiscriminator` of
``model.discriminator``), so parameter names gain a ``generator.`` prefix. Per step the
trainer runs

* discriminator: ``LSGAN_D(D(wav), D(audio))`` with the reconstruction ``audio`` a constant
  (the generator's forward in this pass runs in training mode; the trainer discards its
  codebook-buffer updates);
* generator: the distillation total above ``+ adversarial * LSGAN_G(D(audio)) +
  feature_matching * FM(D(wav), D(audio))``, metrics ``adv`` and ``fm`` added.

Real and reconstructed audio go through the discriminator in one call. Validation
(``loss``) is the distillation total of ``model.generator``.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import CheckpointError
from mlx_speech.quantize.codebook import EMACodebook
from mlx_speech.train.discriminators import HiFiGANDiscriminator
from mlx_speech.train.losses import (feature_matching_loss, lsgan_discriminator_loss, lsgan_generator_loss,
                                     multi_scale_mel_loss)
from mlx_speech.train.mimi9_data import Mimi9Base, fix_codebooks, weights_file


def init_codebooks(model: nn.Module, task: Mimi9Base, *, chunk: int = 8) -> list[str]:
    """k-means-initialise the empty codebooks on ``task.init_audio`` (one training-mode pass of
    the quantizer over the batch's latents; initialised codebooks are fixed first, so they do
    not move). Returns the names of the codebooks initialised."""
    pending = [n for n, m in model.named_modules() if isinstance(m, EMACodebook) and not m.is_initialized()]
    if not pending:
        return []
    wav = task.init_audio(pending)
    fix_codebooks(model, ready_only=True)
    model.train()
    lat = mx.concatenate([model.encode_latents(mx.array(wav[i:i + chunk]))
                          for i in range(0, len(wav), chunk)])
    model.quantizer(mx.stop_gradient(lat))
    mx.eval(model.parameters())
    return pending


def load_model(task: Mimi9Base) -> nn.Module:
    """The MLX Mimi9 of ``task.spec``: its surgered checkpoint or a seeded random init."""
    s = task.spec
    if s.weights is not None:
        from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

        path = weights_file(s.weights)
        model, spec = load_mlx_model(path)
        if type(model).__name__ != "Mimi9Model":
            raise CheckpointError(f"{path}: not a mimi9 checkpoint")
        return model
    from mlx_speech.models.mimi9.model import build_mimi9  # noqa: PLC0415

    mx.random.seed(s.seed)
    model = build_mimi9(task.arch)
    mx.eval(model.parameters())
    return model


class Mimi9GAN(nn.Module):
    """The GAN variant's module: ``generator`` (the Mimi9 model) and ``discriminator``."""

    def __init__(self, *, generator: nn.Module, discriminator: HiFiGANDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


def real_fake(x: mx.array) -> tuple[mx.array, mx.array]:
    """The real (first) and reconstructed (second) halves of a discriminator output batch."""
    n = x.shape[0] // 2
    return x[:n], x[n:]


class Mimi9Task(Mimi9Base):
    """Reconstruction + commitment + Qwen / WavLM distillation, optionally + GAN terms
    (module docstring)."""

    def build(self) -> nn.Module:
        model = load_model(self)
        init_codebooks(model, self)
        fix_codebooks(model, keep_heads=tuple(self.spec.ema_heads), decay=self.spec.ema_decay)
        if not self.gan:
            return model
        disc = HiFiGANDiscriminator(self.spec.discriminator)
        mx.eval(disc.parameters())
        return Mimi9GAN(generator=model, discriminator=disc)

    def terms(self, model: nn.Module, inputs: dict[str, mx.array]
              ) -> tuple[dict[str, mx.array], mx.array, mx.array]:
        """The unweighted loss terms, the per-head batch usage ``(9,)`` and the reconstruction
        ``(B, S)``."""
        wav = inputs["wav"]
        out = model(wav, qwen_hidden=inputs["qwen"], durations=inputs["qwen_durations"],
                    wavlm_features=inputs["wavlm"])
        mel = multi_scale_mel_loss(out.audio, wav, sample_rate=self.grid.sample_rate,
                                   scales=[tuple(s) for s in self.spec.mel_scales])
        losses = out.bridge.losses
        return ({"mel": mel, "commitment": losses["commitment"], "qwen": losses["qwen"],
                 "wavlm": losses["wavlm"]}, out.bridge.metrics["usage"], out.audio)

    def distill(self, model: nn.Module, inputs: dict[str, mx.array]
                ) -> tuple[mx.array, dict[str, mx.array], mx.array]:
        """The weighted distillation total, its metrics and the reconstruction."""
        terms, usage, audio = self.terms(model, inputs)
        w = self.spec.loss
        total = (w.mel * terms["mel"] + w.commitment * terms["commitment"] + w.qwen * terms["qwen"]
                 + w.wavlm * terms["wavlm"])
        metrics = {k: mx.stop_gradient(v) for k, v in terms.items()}
        metrics.update({f"usage_h{k}": mx.stop_gradient(usage[k]) for k in range(usage.shape[0])})
        return total, metrics, audio

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        total, metrics, _ = self.distill(model.generator if self.gan else model, inputs)
        return total, metrics

    def discriminator_loss(self, generator: nn.Module, discriminator: nn.Module,
                           inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        wav = inputs["wav"]
        fake = mx.stop_gradient(generator(wav).audio)
        scores, _ = discriminator(mx.concatenate([wav, fake.astype(wav.dtype)], axis=0))
        halves = [real_fake(x) for x in scores]
        loss, _ = lsgan_discriminator_loss([r for r, _ in halves], [f for _, f in halves])
        return loss, {"d_loss": loss}

    def generator_loss(self, generator: nn.Module, discriminator: nn.Module,
                       inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        total, metrics, audio = self.distill(generator, inputs)
        wav = inputs["wav"]
        scores, feats = discriminator(mx.concatenate([wav, audio.astype(wav.dtype)], axis=0))
        adv, _ = lsgan_generator_loss([real_fake(x)[1] for x in scores])
        layers = [[real_fake(f) for f in fs] for fs in feats]
        fm = feature_matching_loss([[r for r, _ in ls] for ls in layers],
                                   [[f for _, f in ls] for ls in layers])
        w = self.spec.loss
        metrics.update({"adv": mx.stop_gradient(adv), "fm": mx.stop_gradient(fm)})
        return total + w.adversarial * adv + w.feature_matching * fm, metrics
