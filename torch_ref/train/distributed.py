"""Data parallelism with ``torch.distributed`` + DDP, started by ``torchrun``.

``torchrun --nproc_per_node 2 --no-python mlx-speech train recipe.yaml --backend torch``
(or ``torchrun ... -m cli train ...``). torchrun sets ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK``; the process group uses nccl on CUDA and gloo on CPU. Without those variables
the trainer runs as a single process.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


class DataParallel:
    """Rank, world size, device and the few collectives the trainer needs."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        self.enabled = self.world > 1

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DDP when data parallel (gradients averaged over ranks in backward).

        Buffers are not broadcast from rank 0 at each forward: the trainer averages them over
        ranks after each step (:meth:`average_buffers`), as the MLX trainer does."""
        if not self.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids, broadcast_buffers=False)

    @torch.no_grad()
    def average_buffers(self, module: torch.nn.Module) -> None:
        """Replace every floating-point buffer by its mean over ranks (EMA codebook statistics
        each rank updated from its own rows)."""
        if not self.enabled:
            return
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(self.world)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.world

    def sum_scalars(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(np.asarray(values, dtype=np.float64), device=self.device)
        dist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
