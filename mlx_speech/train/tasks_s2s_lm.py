"""``s2s_lm`` task (MLX): the Moshi-style LM (model B) trained by teacher forcing on cached
codec codes, with its text inner monologue.

Mirrored in ``torch_ref.train.tasks_s2s_lm``; inputs from
:class:`~mlx_speech.train.s2s_lm_data.S2SLMTaskBase` (the layout of a row and the masks are
documented there). ``model.init`` starts from a moshi folder (``model.safetensors`` +
``config.json``, e.g. a released Moshi) or our tagged ``moshi_lm`` file, whose spec must be
the recipe's. After every checkpoint the model -- the EMA weights when EMA runs -- is exported
as ``<out_dir>/moshi_lm.safetensors`` (:func:`~mlx_speech.models.s2s.lm_load.save_moshi_lm`),
which ``mlx_speech.load`` and ``mlx-speech s2s generate`` read.

The logits are moshi ``LMModel.forward``'s (the delayed stream through the temporal
transformer and the teacher-forced depformer, moved back onto the frames of the codes); the
MLX half feeds the delayed stream prepared in numpy, so the step is free of host round trips
and compiles. Loss (one row): ``text_weight * text + audio`` with ``text`` the cross-entropy
of the text stream and ``audio`` that of the own codebooks, each a weighted mean over the
row's positions (weights from the inputs: 0 where masked); the batch loss is the mean over
rows, so micro-batches, CPU shards and ranks give the same maths. Metrics: ``text``,
``audio`` and the teacher-forced top-1 accuracies ``text_acc`` / ``audio_acc`` over the
positions with a weight.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

import mlx_speech
from mlx_speech.models.s2s.lm import MoshiLM, undelay
from mlx_speech.train.s2s_lm_data import S2SLMTaskBase
from mlx_speech.weights.core import flatten_tree

EXPORT_NAME = "moshi_lm.safetensors"


def _weighted_ce(logits: mx.array, target: mx.array, weight: mx.array
                 ) -> tuple[mx.array, mx.array]:
    """Per-row weighted mean cross-entropy and top-1 accuracy of ``logits (B, ..., V)``
    against ``target (B, ...)`` with ``weight (B, ...)``; weightless positions are ignored
    (their logits may be NaN: they are replaced before any arithmetic)."""
    on = weight > 0
    logits = mx.where(on[..., None], logits.astype(mx.float32), 0.0)
    picked = mx.take_along_axis(logits, target[..., None].astype(mx.int32), axis=-1)[..., 0]
    ce = mx.logsumexp(logits, axis=-1) - picked
    axes = tuple(range(1, ce.ndim))
    total = weight.sum(axis=axes)
    per_row = (ce * weight).sum(axis=axes) / mx.where(total > 0, total, 1.0)
    hit = ((mx.argmax(logits, axis=-1) == target) & on).astype(mx.float32)
    count = on.astype(mx.float32).sum(axis=axes)
    acc = hit.sum(axis=axes) / mx.maximum(count, 1.0)
    return per_row, mx.stop_gradient(acc)


def lm_losses(text_logits: mx.array, audio_logits: mx.array, inputs: dict[str, mx.array],
              text_weight: float) -> tuple[mx.array, dict[str, mx.array]]:
    """``(loss, metrics)`` of logits aligned with the codes, ``text (B, T, text_card)`` and
    ``audio (B, dep_q, T, card)`` (module docstring)."""
    text, text_acc = _weighted_ce(text_logits, inputs["text_target"], inputs["text_weight"])
    audio, audio_acc = _weighted_ce(audio_logits, inputs["audio_target"], inputs["audio_weight"])
    loss = (text_weight * text + audio).mean()
    return loss, {"text": text.mean(), "audio": audio.mean(), "text_acc": text_acc.mean(),
                  "audio_acc": audio_acc.mean()}


def teacher_logits(model: MoshiLM, seq: mx.array) -> tuple[mx.array, mx.array]:
    """moshi ``LMModel.forward`` from the delayed stream ``seq (B, 1 + n_q, T + 1)``:
    ``(text (B, T, text_card), audio (B, dep_q, T, card))`` on the frames of the codes."""
    s = model.spec
    hidden, text = model.forward_text(seq[:, :, :-1])
    audio = model.forward_depformer(hidden, seq[:, : s.dep_q, 1:])
    return (undelay(text[:, None], s.delays[:1])[:, 0],
            undelay(audio, s.delays[1: s.dep_q + 1]))


class S2SLMTask(S2SLMTaskBase):
    def build(self) -> nn.Module:
        model = MoshiLM(self.arch)
        if self.spec.init is not None:
            src = mlx_speech.load(self.spec.init, family="s2s")
            if not isinstance(src, MoshiLM):
                from mlx_speech.errors import SpecError  # noqa: PLC0415

                raise SpecError(f"model.init {self.spec.init}: not a moshi LM "
                                f"({type(src).__name__})")
            self.check_init(src.spec)
            model.load_weights(list(flatten_tree(src.parameters()).items()), strict=True)
        model.train()
        return model

    def export(self, model: nn.Module) -> None:
        from mlx_speech.models.s2s.lm_load import save_moshi_lm  # noqa: PLC0415

        save_moshi_lm(self.out_dir / EXPORT_NAME, model)

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        text, audio = teacher_logits(model, inputs["seq"])
        return lm_losses(text, audio, inputs, self.spec.text_weight)
