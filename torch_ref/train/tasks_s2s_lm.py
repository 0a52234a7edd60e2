"""``s2s_lm`` task (torch_ref): the twin of :mod:`mlx_speech.train.tasks_s2s_lm` (same loss,
metrics, init and export; the docstring there is the contract). The model handed to ``loss``
may be a DDP wrapper, so it is only called: its ``forward`` is moshi ``LMModel.forward`` on
the undelayed ``codes`` (it delays them itself), which gives the MLX half's logits."""

from __future__ import annotations

import torch
from torch import nn

from mlx_speech.errors import SpecError
from mlx_speech.train.s2s_lm_data import S2SLMTaskBase
from torch_ref.models.s2s.lm import MoshiLM

EXPORT_NAME = "moshi_lm.safetensors"


def _weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``mlx_speech.train.tasks_s2s_lm._weighted_ce``."""
    on = weight > 0
    logits = torch.where(on[..., None], logits.float(), torch.zeros((), dtype=torch.float32))
    picked = torch.gather(logits, -1, target[..., None].long())[..., 0]
    ce = torch.logsumexp(logits, dim=-1) - picked
    axes = tuple(range(1, ce.ndim))
    total = weight.sum(dim=axes)
    per_row = (ce * weight).sum(dim=axes) / torch.where(total > 0, total, torch.ones_like(total))
    with torch.no_grad():
        hit = ((logits.argmax(dim=-1) == target) & on).float()
        acc = hit.sum(dim=axes) / on.float().sum(dim=axes).clamp(min=1.0)
    return per_row, acc


def lm_losses(text_logits: torch.Tensor, audio_logits: torch.Tensor,
              inputs: dict[str, torch.Tensor], text_weight: float
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """As ``mlx_speech.train.tasks_s2s_lm.lm_losses``."""
    text, text_acc = _weighted_ce(text_logits, inputs["text_target"], inputs["text_weight"])
    audio, audio_acc = _weighted_ce(audio_logits, inputs["audio_target"], inputs["audio_weight"])
    loss = (text_weight * text + audio).mean()
    return loss, {"text": text.mean(), "audio": audio.mean(), "text_acc": text_acc.mean(),
                  "audio_acc": audio_acc.mean()}


class S2SLMTask(S2SLMTaskBase):
    def build(self) -> nn.Module:
        model = MoshiLM(self.arch)
        if self.spec.init is not None:
            import torch_ref  # noqa: PLC0415

            src = torch_ref.load(self.spec.init, family="s2s")
            if not isinstance(src, MoshiLM):
                raise SpecError(f"model.init {self.spec.init}: not a moshi LM "
                                f"({type(src).__name__})")
            self.check_init(src.spec)
            model.load_state_dict(src.state_dict(), strict=True)
        model.train()
        return model

    def export(self, model: nn.Module) -> None:
        from torch_ref.weights import save_torch_model  # noqa: PLC0415

        save_torch_model(self.out_dir / EXPORT_NAME, model, model="moshi_lm", spec=model.spec)

    def loss(self, model: nn.Module, inputs: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        text, audio = model(inputs["codes"])
        return lm_losses(text[:, 0], audio, inputs, self.spec.text_weight)
