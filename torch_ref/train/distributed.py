"""Data parallelism with ``torch.distributed`` + DDP, started by ``torchrun``.

``torchrun --nproc_per_node 2 --no-python mlx-speech train recipe.yaml --backend torch``
(or ``torchrun ... -m cli train ...``). torchrun sets ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``; :func:`plan_devices` picks each rank's device and the
process-group backend (nccl when every local rank has a GPU of its own, gloo otherwise).
Without those variables the trainer runs as a single process.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from mlx_speech.errors import UserError


def plan_devices(local_rank: int, local_world: int, device_count: int) -> tuple[str, str]:
    """``(device, backend)`` for one rank of ``local_world`` ranks on a node with
    ``device_count`` CUDA devices; pure, so the decision is testable without a GPU.

    - No GPU: ``("cpu", "gloo")``.
    - At least one GPU per local rank: rank ``r`` on ``cuda:r``, ``nccl``.
    - More local ranks than GPUs (``torchrun --nproc-per-node 2`` on a 1-GPU machine, which
      used to crash with "invalid device ordinal"): the GPUs are shared round robin, rank ``r``
      on ``cuda:(r % device_count)``, and the backend is ``gloo``, because NCCL refuses two
      ranks of one group on the same GPU ("Duplicate GPU detected"). gloo reduces CUDA tensors
      through host memory: slower, but the run is right, which is what such a setup is for
      (trying data parallel on a small machine).

    Raises :class:`UserError` (one line) for values no launcher produces: a negative count or a
    rank outside ``0 .. local_world - 1``.
    """
    if local_world < 1 or device_count < 0 or not 0 <= local_rank < local_world:
        raise UserError(f"bad data-parallel layout: LOCAL_RANK={local_rank}, "
                        f"LOCAL_WORLD_SIZE={local_world}, {device_count} CUDA devices")
    if device_count == 0:
        return "cpu", "gloo"
    device = f"cuda:{local_rank % device_count}"
    return device, "nccl" if local_world <= device_count else "gloo"


class DataParallel:
    """Rank, world size, device and the few collectives the trainer needs."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(max(self.world, local + 1))))
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device, self.backend = plan_devices(local, local_world, count)
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend=self.backend)
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
