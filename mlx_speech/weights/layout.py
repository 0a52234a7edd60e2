"""Parameter layouts between MLX and torch_ref, by declared kind (never guessed from shape).

MLX modules declare the kind of each of their own parameters in a class attribute::

    class Conv1d(nn.Module):
        PARAM_KINDS = {"weight": "conv1d", "weight_v": "conv1d", "weight_g": "conv1d"}

A parameter not declared by its owning module is ``"plain"`` (same layout on both sides: Linear,
Embedding, norms, biases, codebooks). Names are identical on both sides; only layouts change.
This module imports numpy only; the MLX walk lives in :mod:`mlx_speech.weights.core`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# --- one helper per kind; each states both layouts -------------------------------------------


def _conv1d_to_mlx(w: np.ndarray) -> np.ndarray:
    # torch Conv1d (O, I/groups, K) -> MLX (O, K, I/groups)
    return np.ascontiguousarray(w.transpose(0, 2, 1))


def _conv1d_to_torch(w: np.ndarray) -> np.ndarray:
    # MLX (O, K, I/groups) -> torch Conv1d (O, I/groups, K)
    return np.ascontiguousarray(w.transpose(0, 2, 1))


def _conv_transpose1d_to_mlx(w: np.ndarray) -> np.ndarray:
    # torch ConvTranspose1d (I, O/groups, K) -> MLX (O/groups, K, I)
    return np.ascontiguousarray(w.transpose(1, 2, 0))


def _conv_transpose1d_to_torch(w: np.ndarray) -> np.ndarray:
    # MLX (O/groups, K, I) -> torch ConvTranspose1d (I, O/groups, K)
    return np.ascontiguousarray(w.transpose(2, 0, 1))


def _conv2d_to_mlx(w: np.ndarray) -> np.ndarray:
    # torch Conv2d (O, I/groups, H, W) -> MLX (O, H, W, I/groups)
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1))


def _conv2d_to_torch(w: np.ndarray) -> np.ndarray:
    # MLX (O, H, W, I/groups) -> torch Conv2d (O, I/groups, H, W)
    return np.ascontiguousarray(w.transpose(0, 3, 1, 2))


def _plain(w: np.ndarray) -> np.ndarray:
    # identical layouts (Linear (O, I), Embedding (N, D), norms, biases, codebooks)
    return w


_RANKS = {"conv1d": 3, "conv_transpose1d": 3, "conv2d": 4}

TO_MLX: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "plain": _plain,
    "conv1d": _conv1d_to_mlx,
    "conv_transpose1d": _conv_transpose1d_to_mlx,
    "conv2d": _conv2d_to_mlx,
}
TO_TORCH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "plain": _plain,
    "conv1d": _conv1d_to_torch,
    "conv_transpose1d": _conv_transpose1d_to_torch,
    "conv2d": _conv2d_to_torch,
}
KINDS = tuple(TO_MLX)


def _check(kind: str, name: str, w: np.ndarray) -> None:
    if kind not in TO_MLX:
        raise ValueError(f"unknown parameter kind {kind!r} for {name!r}; known: {', '.join(KINDS)}")
    rank = _RANKS.get(kind)
    if rank is not None and w.ndim != rank:
        raise ValueError(f"{name!r} is declared {kind} (rank {rank}) but has shape {w.shape}")


def to_mlx(kind: str, w: np.ndarray, name: str = "?") -> np.ndarray:
    """Convert one torch-layout array of the declared ``kind`` to the MLX layout."""
    _check(kind, name, w)
    return TO_MLX[kind](w)


def to_torch(kind: str, w: np.ndarray, name: str = "?") -> np.ndarray:
    """Convert one MLX-layout array of the declared ``kind`` to the torch layout."""
    _check(kind, name, w)
    return TO_TORCH[kind](w)
