"""Timing helpers shared by bench scripts: warm-up, interleaved rounds, medians."""

from __future__ import annotations

import os
import statistics
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


def paired_ratio(num: Callable[[], object], den: Callable[[], object], *, pairs: int,
                 pause_s: float = 0.3) -> dict[str, float]:
    """Median and quartiles of ``time(num) / time(den)`` over ``pairs`` back-to-back pairs.

    On a shared machine the speed drifts over seconds (other tenants, steal time); two calls
    timed within a fraction of a second see the same conditions, so the ratio of each pair is
    far steadier than a ratio of separately taken medians. The order alternates every pair and
    a pause (``pause_s``) lets the previous side's idle BLAS / OpenMP threads stop spinning
    (OpenBLAS workers spin ~0.1 s after a call).
    """
    num(), den()
    ratios = []
    for i in range(pairs):
        times = {}
        for name, fn in (("num", num), ("den", den)) if i % 2 == 0 else (("den", den), ("num", num)):
            time.sleep(pause_s)
            t = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - t
        ratios.append(times["num"] / times["den"])
    ratios.sort()
    q = len(ratios) - 1
    return {"median": round(statistics.median(ratios), 3), "q1": round(ratios[q // 4], 3),
            "q3": round(ratios[(3 * q) // 4], 3), "pairs": pairs}


def torch_threads() -> int:
    import torch  # noqa: PLC0415

    n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
