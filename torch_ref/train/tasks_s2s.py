"""``s2s`` task (torch_ref): the twin of :mod:`mlx_speech.train.tasks_s2s` (same loss, metrics
and export; the docstring there is the contract). The model handed to ``loss`` may be a DDP
wrapper: it is only called."""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.train.s2s_data import S2STaskBase
from torch_ref.models.s2s.encdec import S2SModel

EXPORT_NAME = "s2s.safetensors"


def code_losses(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """As ``mlx_speech.train.tasks_s2s.code_losses``."""
    logits = logits.float()
    picked = torch.gather(logits, -1, target[..., None].long())[..., 0]
    ce = torch.logsumexp(logits, dim=-1) - picked
    count = mask.sum(dim=-1).clamp(min=1.0)
    per_book = (ce * mask).sum(dim=-1) / count
    loss = (per_book * weights).sum(dim=-1).mean()
    with torch.no_grad():
        hit = (logits.argmax(dim=-1) == target).float() * mask
        acc = (hit.sum(dim=-1) / count).mean()
    metrics = {"ce": per_book.mean(), "acc": acc}
    metrics.update({f"ce_{k}": per_book[:, k].mean() for k in range(per_book.shape[1])})
    return loss, metrics


class S2STask(S2STaskBase):
    def build(self) -> nn.Module:
        model = S2SModel(self.arch)
        if self.spec.init is not None:
            import torch_ref  # noqa: PLC0415

            src = torch_ref.load(self.spec.init, family="s2s")
            self.check_init(src.spec)
            model.load_state_dict(src.state_dict(), strict=True)
        return model

    def export(self, model: nn.Module) -> None:
        from torch_ref.weights import save_torch_model  # noqa: PLC0415

        save_torch_model(self.out_dir / EXPORT_NAME, model, model="s2s",
                         spec=self.export_spec(model.spec))

    def loss(self, model: nn.Module, inputs: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        conds = {k: inputs[k] for k in self.conditions}
        logits = model(inputs["codes_in"], inputs["dec_in"], in_mask=inputs["in_mask"], **conds)
        return code_losses(logits, inputs["target"], inputs["target_mask"],
                           inputs["codebook_weights"])
