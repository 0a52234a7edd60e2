"""Parameter groups on ``torch.optim.AdamW`` and EMA weights (torch mirror of
``mlx_speech/train/optim.py``; same recipe semantics, torch's own AdamW does the update)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlx_speech.errors import CheckpointError
from mlx_speech.specs.train import EMASpec, OptimizerSpec
from mlx_speech.train.schedule import resolve_groups


class GroupedAdamW:
    """``torch.optim.AdamW`` over the recipe's groups of ``names`` (frozen groups get
    ``requires_grad=False`` and no optimiser state); lr = group base lr x schedule factor."""

    def __init__(self, model: nn.Module, names: list[str], spec: OptimizerSpec, where: str) -> None:
        self.spec = spec
        params = dict(model.named_parameters())
        groups = resolve_groups(names, spec, where=where)
        self.names: list[str] = []
        torch_groups, self._base = [], []
        for g in groups:
            if g.frozen:
                for n in g.params:
                    params[n].requires_grad_(False)
                continue
            self.names += list(g.params)
            torch_groups.append({"params": [params[n] for n in g.params], "lr": g.lr,
                                 "weight_decay": g.weight_decay, "name": g.name})
            self._base.append(g.lr)
        self.params = [params[n] for n in self.names]
        self.opt = torch.optim.AdamW(torch_groups or [{"params": []}], lr=spec.lr,
                                     betas=tuple(spec.betas), eps=spec.eps,
                                     weight_decay=spec.weight_decay) if torch_groups else None

    def step(self, factor: float) -> None:
        if self.opt is None:
            return
        for group, base in zip(self.opt.param_groups, self._base):
            group["lr"] = base * factor
        self.opt.step()

    def state_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.opt is None:
            return out
        for n, p in zip(self.names, self.params):
            st = self.opt.state.get(p)
            if not st:
                continue
            out[f"{n}.exp_avg"] = st["exp_avg"].detach().cpu().numpy()
            out[f"{n}.exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().numpy()
            out[f"{n}.step"] = np.array([float(st["step"])], dtype=np.float32)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if self.opt is None:
            return
        known = {f"{n}.{k}" for n in self.names for k in ("exp_avg", "exp_avg_sq", "step")}
        extra = sorted(set(arrays) - known)
        if extra:
            raise CheckpointError(f"optimizer state has parameters the groups do not: {extra[:4]}")
        for n, p in zip(self.names, self.params):
            if f"{n}.exp_avg" not in arrays:
                continue
            self.opt.state[p] = {
                "step": torch.tensor(float(arrays[f"{n}.step"][0]), dtype=torch.float32),
                "exp_avg": torch.from_numpy(np.array(arrays[f"{n}.exp_avg"])).to(p.device),
                "exp_avg_sq": torch.from_numpy(np.array(arrays[f"{n}.exp_avg_sq"])).to(p.device),
            }


class EMA:
    """EMA of every parameter: ``ema = d * ema + (1 - d) * w``; copies until ``start_step``."""

    def __init__(self, spec: EMASpec, model: nn.Module) -> None:
        self.spec = spec
        self.weights = {k: v.detach().clone() for k, v in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.spec.decay
        for k, p in model.named_parameters():
            if step < self.spec.start_step:
                self.weights[k].copy_(p)
            else:
                self.weights[k].mul_(d).add_(p.detach(), alpha=1.0 - d)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.cpu().numpy() for k, v in self.weights.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if set(arrays) != set(self.weights):
            raise CheckpointError("EMA weights in the checkpoint do not match the model's parameters")
        for k, v in arrays.items():
            self.weights[k].copy_(torch.from_numpy(np.array(v)))
