"""``s2s`` task (MLX): the encoder-decoder trained by teacher forcing on cached codec codes.

Mirrored in ``torch_ref.train.tasks_s2s``; inputs from
:class:`~mlx_speech.train.s2s_data.S2STaskBase`. After every checkpoint the model -- the EMA
weights when EMA runs -- is exported as a tagged file, ``<out_dir>/s2s.safetensors``, which
``mlx_speech.load`` and :func:`mlx_speech.pipelines.s2s_convert.convert_file` read.

Loss (one row): the cross-entropy of every coded position of output codebook ``k``, averaged
over the row's coded positions (``target_mask``), summed over codebooks with the normalised
``codebook_weights``; the batch loss is the mean over rows (so micro-batches, CPU shards and
ranks give the same maths). Metrics: ``ce`` (unweighted mean over codebooks), ``ce_k`` per
codebook and ``acc``, the teacher-forced top-1 accuracy over coded positions.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

import mlx_speech
from mlx_speech.models.s2s.encdec import S2SModel
from mlx_speech.train.s2s_data import S2STaskBase
from mlx_speech.weights.core import flatten_tree

EXPORT_NAME = "s2s.safetensors"


def code_losses(logits: mx.array, target: mx.array, mask: mx.array,
                weights: mx.array) -> tuple[mx.array, dict[str, mx.array]]:
    """``(loss, metrics)`` of logits ``(B, K, S, V)`` against ``target (B, K, S)`` where ``mask
    (B, K, S)`` is 1, codebooks weighted by ``weights (B, K)`` (module docstring)."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, target[..., None].astype(mx.int32), axis=-1)[..., 0]
    ce = mx.logsumexp(logits, axis=-1) - picked
    count = mx.maximum(mask.sum(axis=-1), 1.0)
    per_book = (ce * mask).sum(axis=-1) / count  # (B, K)
    loss = (per_book * weights).sum(axis=-1).mean()
    hit = (mx.argmax(logits, axis=-1) == target).astype(mx.float32) * mask
    metrics = {"ce": per_book.mean(), "acc": mx.stop_gradient((hit.sum(axis=-1) / count).mean())}
    metrics.update({f"ce_{k}": per_book[:, k].mean() for k in range(per_book.shape[1])})
    return loss, metrics


class S2STask(S2STaskBase):
    def build(self) -> nn.Module:
        model = S2SModel(self.arch)
        if self.spec.init is not None:
            src = mlx_speech.load(self.spec.init, family="s2s")
            self.check_init(src.spec)
            model.load_weights(list(flatten_tree(src.parameters()).items()), strict=True)
        return model

    def export(self, model: nn.Module) -> None:
        from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415

        save_mlx_model(self.out_dir / EXPORT_NAME, model, model="s2s", spec=self.export_spec(model.spec))

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        conds = {k: inputs[k] for k in self.conditions}
        logits = model(inputs["codes_in"], inputs["dec_in"], in_mask=inputs["in_mask"], **conds)
        return code_losses(logits, inputs["target"], inputs["target_mask"],
                           inputs["codebook_weights"])
