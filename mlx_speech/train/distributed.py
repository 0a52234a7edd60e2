"""Data parallelism on ``mx.distributed`` (launched by ``mlx.launch``).

Run ``mlx.launch --backend ring -n 2 -- mlx-speech train recipe.yaml`` (on one machine
``-n`` ranks share localhost; ``--hosts ip1,ip2`` or ``--hostfile`` spans machines). Each rank
reads its slice of every global batch; gradients are averaged with one ``all_sum`` over a
flat buffer; rank 0 writes checkpoints and logs. Started without a launcher,
``mx.distributed.init()`` gives a group of size 1 and nothing here communicates.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


class DataParallel:
    """Rank, world size and the collectives the trainer needs."""

    def __init__(self) -> None:
        self.group = mx.distributed.init() if mx.distributed.is_available() else None
        self.rank = self.group.rank() if self.group is not None else 0
        self.world = self.group.size() if self.group is not None else 1

    def average(self, grads: dict[str, mx.array]) -> dict[str, mx.array]:
        """Mean over ranks of every gradient, as one flat ``all_sum``."""
        if self.world == 1:
            return grads
        names = list(grads)
        shapes = [grads[n].shape for n in names]
        dtypes = [grads[n].dtype for n in names]
        flat = mx.concatenate([grads[n].astype(mx.float32).reshape(-1) for n in names])
        flat = mx.distributed.all_sum(flat, group=self.group) / self.world
        out, start = {}, 0
        for n, shape, dtype in zip(names, shapes, dtypes):
            size = int(np.prod(shape)) if shape else 1
            out[n] = flat[start:start + size].reshape(shape).astype(dtype)
            start += size
        return out

    def sum_scalars(self, values: list[float]) -> list[float]:
        """Element-wise sum of a few floats over ranks (also a barrier)."""
        if self.world == 1:
            return list(values)
        x = mx.distributed.all_sum(mx.array(np.asarray(values, dtype=np.float32)), group=self.group)
        return [float(v) for v in np.array(x)]

    def broadcast(self, params: dict[str, mx.array]) -> dict[str, mx.array]:
        """Rank 0's values on every rank (a sum where the other ranks contribute zeros)."""
        if self.world == 1:
            return params
        out = {}
        for n, v in params.items():
            mine = v if self.rank == 0 else mx.zeros_like(v)
            out[n] = mx.distributed.all_sum(mine, group=self.group)
        mx.eval(out)
        return out
