"""Feature permutations between interleaved RoPE (moshi) and rotate-half RoPE (transformers),
in numpy: the weight converters of every family use them without importing a framework, and
both frameworks' RoPE layers re-export them."""

from __future__ import annotations

import numpy as np


def check_rope_args(head_dim: int, max_period: float) -> None:
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE needs a positive even head_dim, got {head_dim!r}")
    if not max_period > 1.0:
        raise ValueError(f"RoPE max_period must be > 1, got {max_period!r}")


def interleaved_to_rotate_half_perm(head_dim: int) -> np.ndarray:
    """Feature permutation taking an interleaved-RoPE head to a rotate-half-RoPE head.

    ``perm = [0, 2, 4, ..., Dh-2, 1, 3, ..., Dh-1]``: rotate-half feature ``j`` is interleaved
    feature ``perm[j]``, so the two members of pair ``i`` (``2i``, ``2i+1``) land on ``i`` and
    ``i + Dh/2``. For every ``x`` and offset::

        rope_rotate_half(x[..., perm]) == rope_interleaved(x)[..., perm]

    Converting moshi's (interleaved) Mimi q/k projections to the HF (rotate-half) format permutes
    the output rows of ``q_proj`` / ``k_proj`` within each head by ``perm``; this is the
    ``view(H, Dh/2, 2, D).transpose(1, 2)`` of HF's Mimi conversion script. Scores ``q . k`` are
    unchanged because q and k get the same permutation; ``v_proj`` is not permuted.
    See :func:`permute_head_rows`.
    """
    check_rope_args(head_dim, 10000.0)
    return np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)]).astype(np.int64)


def rotate_half_to_interleaved_perm(head_dim: int) -> np.ndarray:
    """Inverse of :func:`interleaved_to_rotate_half_perm` (HF format -> moshi format)."""
    return np.argsort(interleaved_to_rotate_half_perm(head_dim)).astype(np.int64)


def permute_head_rows(w: np.ndarray, *, num_heads: int, perm: np.ndarray) -> np.ndarray:
    """Permute the output features of a q/k projection within each head.

    ``w`` is a Linear weight ``(H * Dh, D_in)`` or bias ``(H * Dh,)`` with the head index major
    (features ``h * Dh + j``); row ``h * Dh + j`` of the result is row ``h * Dh + perm[j]``.
    """
    w = np.asarray(w)
    head_dim = len(perm)
    if w.shape[0] != num_heads * head_dim:
        raise ValueError(
            f"permute_head_rows: first axis {w.shape[0]} != num_heads {num_heads} * "
            f"head_dim {head_dim}")
    return np.ascontiguousarray(
        w.reshape(num_heads, head_dim, *w.shape[1:])[:, perm].reshape(w.shape))
