"""Learning-rate schedule and parameter groups: the recipe maths both trainers share.

Framework-neutral (imports neither mlx nor torch); ``torch_ref.train`` uses it as is, so a
recipe means the same thing on both sides.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math

from mlx_speech.errors import SpecError
from mlx_speech.specs.train import OptimizerSpec


def lr_factor(step: int, spec: OptimizerSpec, total_steps: int) -> float:
    """Multiplier of every group's lr at optimiser iteration ``step`` (0-based)."""
    warm = spec.warmup_steps
    if step < warm:
        return (step + 1) / warm
    if spec.schedule == "constant":
        return 1.0
    if spec.schedule == "exponential":
        return max(spec.min_lr_ratio, spec.decay_gamma ** (step - warm))
    span = max(1, total_steps - 1 - warm)
    progress = min(1.0, (step - warm) / span)
    return spec.min_lr_ratio + (1.0 - spec.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclasses.dataclass(frozen=True)
class Group:
    """A resolved parameter group: its base lr, weight decay and the parameter names it owns."""

    name: str
    lr: float
    weight_decay: float
    frozen: bool
    params: tuple[str, ...]


def resolve_groups(names: list[str], spec: OptimizerSpec, *, where: str = "optimizer") -> list[Group]:
    """Assign each parameter name to the first group whose pattern matches it, the rest to a
    ``default`` group. A group that matches nothing is an error (a typo would otherwise
    silently train, or freeze, the wrong weights)."""
    owned: dict[str, list[str]] = {g.name: [] for g in spec.groups}
    rest: list[str] = []
    for n in names:
        for g in spec.groups:
            if any(fnmatch.fnmatchcase(n, pat) for pat in g.match):
                owned[g.name].append(n)
                break
        else:
            rest.append(n)
    out = []
    for g in spec.groups:
        if not owned[g.name]:
            sample = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
            raise SpecError(f"{where}.groups[{g.name!r}]: patterns {g.match} match no parameter "
                            f"(names look like: {sample})")
        out.append(Group(name=g.name, lr=spec.lr if g.lr is None else g.lr,
                         weight_decay=spec.weight_decay if g.weight_decay is None else g.weight_decay,
                         frozen=g.frozen, params=tuple(owned[g.name])))
    if rest:
        out.append(Group(name="default", lr=spec.lr, weight_decay=spec.weight_decay, frozen=False,
                         params=tuple(rest)))
    return out


def trainable(groups: list[Group]) -> list[str]:
    """Names of the parameters that are updated, in group order."""
    return [n for g in groups if not g.frozen for n in g.params]
