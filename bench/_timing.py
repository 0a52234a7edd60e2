"""Timing helpers shared by bench scripts: warm-up, interleaved rounds, medians."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``fn`` over ``reps`` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def compare_times(fns: dict[str, Callable[[], object]], *, reps: int, rounds: int = 3) -> dict[str, float]:
    """Best-of-``rounds`` median time per function; rounds interleave so noise hits all alike."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = min(best[k], median_time(fn, reps))
    return best


def torch_threads() -> int:
    import torch  # noqa: PLC0415

    n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
