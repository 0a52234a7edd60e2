"""Framework-neutral random draws shared by the MLX quantizers and their torch_ref mirrors.

Both sides call these with the same ``np.random.Generator`` so they make identical choices
(k-means init samples, dead-code restarts, quantizer dropout). numpy only.
"""

from __future__ import annotations

import numpy as np


def sample_indices(rng: np.random.Generator, num_samples: int, num: int) -> np.ndarray:
    """``num`` row indices into ``num_samples`` rows: without replacement when there are enough
    rows, with replacement otherwise. Depends only on the generator state and the two sizes."""
    if num_samples >= num:
        return rng.permutation(num_samples)[:num].astype(np.int64)
    return rng.integers(0, num_samples, size=num).astype(np.int64)


def dropout_levels(rng: np.random.Generator, batch: int, num_levels: int, p: float) -> np.ndarray:
    """Quantizer dropout mask ``(B, K)`` float32: with probability ``p`` an item keeps only
    the first ``n ~ U{1..K}`` levels, otherwise all ``K``."""
    keep = rng.integers(1, num_levels + 1, size=batch)
    use = rng.random(batch) < p
    n = np.where(use, keep, num_levels)
    return (np.arange(num_levels)[None, :] < n[:, None]).astype(np.float32)
