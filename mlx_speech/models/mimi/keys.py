"""Flat, asserted key maps from an upstream Mimi state dict to our torch_ref state dict.

A :class:`KeyMap` lists every upstream key exactly once, under the one operation that turns it
into our tensors (all in torch layouts; ``mlx_speech.weights.core`` then lays them out for MLX by the
declared parameter kinds):

* ``copy``: same array, new name;
* ``squeeze``: a 1x1 ``Conv1d`` weight ``(O, I, 1)`` -> ``Linear`` ``(O, I)`` (moshi / HF
  quantizer projections);
* ``split``: a fused ``(n * R, I)`` projection -> ``n`` row blocks (moshi's ``in_proj`` = q, k, v);
* ``permute``: an HF q/k projection whose rows were reordered for rotate-half RoPE -> moshi's
  interleaved order, per head (``rope.rotate_half_to_interleaved_perm``);
* ``dropped``: deliberately ignored, with the reason.

:func:`apply_key_map` fails with a :class:`CheckpointError` naming the keys on any unknown or
missing upstream key or impossible shape, and asserts the number of tensors produced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlx_speech.weights.core import _as_numpy
from mlx_speech.errors import CheckpointError
from mlx_speech.weights.rope_perm import permute_head_rows, rotate_half_to_interleaved_perm


@dataclasses.dataclass
class KeyMap:
    copy: dict[str, str] = dataclasses.field(default_factory=dict)
    squeeze: dict[str, str] = dataclasses.field(default_factory=dict)
    split: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    permute: dict[str, str] = dataclasses.field(default_factory=dict)
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)
    num_heads: int = 1  # heads of the permuted projections

    def upstream_keys(self) -> set[str]:
        keys = [*self.copy, *self.squeeze, *self.split, *self.permute, *self.dropped]
        if len(keys) != len(set(keys)):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise AssertionError(f"key map lists upstream keys twice: {dup[:5]}")
        return set(keys)

    def num_outputs(self) -> int:
        return (len(self.copy) + len(self.squeeze) + len(self.permute)
                + sum(len(v) for v in self.split.values()))


def short(names: list[str], n: int = 6) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def apply_key_map(state: dict[str, Any], key_map: KeyMap, *,
                  where: str) -> dict[str, np.ndarray]:
    """Our torch_ref state dict (float32 numpy) from an upstream ``state`` via ``key_map``."""
    expected = key_map.upstream_keys()
    unknown = sorted(set(state) - expected)
    missing = sorted(expected - set(state) - set(key_map.dropped))
    if unknown or missing:
        raise CheckpointError(f"{where}: keys do not match the Mimi layout: unexpected "
                              f"{short(unknown)}; missing {short(missing)}")
    out: dict[str, np.ndarray] = {}
    bad: list[str] = []

    def arr(key: str) -> np.ndarray:
        return np.asarray(_as_numpy(state[key]), dtype=np.float32)

    for src, dst in key_map.copy.items():
        out[dst] = arr(src)
    for src, dst in key_map.squeeze.items():
        w = arr(src)
        if w.ndim != 3 or w.shape[2] != 1:
            bad.append(f"{src} {w.shape} is not a 1x1 conv weight")
            continue
        out[dst] = np.ascontiguousarray(w[:, :, 0])
    for src, dsts in key_map.split.items():
        w = arr(src)
        if w.ndim != 2 or w.shape[0] % len(dsts):
            bad.append(f"{src} {w.shape} does not split into {len(dsts)} row blocks")
            continue
        for i, part in enumerate(np.split(w, len(dsts), axis=0)):
            out[dsts[i]] = np.ascontiguousarray(part)
    for src, dst in key_map.permute.items():
        w = arr(src)
        heads = key_map.num_heads
        if w.ndim != 2 or w.shape[0] % heads or (w.shape[0] // heads) % 2:
            bad.append(f"{src} {w.shape} has no even head size for {heads} heads")
            continue
        perm = rotate_half_to_interleaved_perm(w.shape[0] // heads)
        out[dst] = permute_head_rows(w, num_heads=heads, perm=perm)
    if bad:
        raise CheckpointError(f"{where}: {'; '.join(bad[:4])}")
    if len(out) != key_map.num_outputs():
        raise CheckpointError(f"{where}: {len(state)} upstream keys gave {len(out)} tensors, "
                              f"expected {key_map.num_outputs()} (two keys map to one name?)")
    return out


def seanet_indices(ratios: list[int], n_residual_layers: int) -> tuple[list, list]:
    """moshi / HF flat SEANet layer indices -> our names, ``(encoder, decoder)``.

    Each list holds ``(index, kind, our_prefix)`` with kind ``conv`` / ``convtr`` / ``residual``.
    Encoder: conv, then per ratio (reversed) ``n`` residual blocks, ELU, strided conv; ELU, conv.
    Decoder: conv, then per ratio ELU, transposed conv, ``n`` residual blocks; ELU, conv.
    """
    enc = [(0, "conv", "encoder.conv_in")]
    idx = 1
    for i in range(len(ratios)):
        for j in range(n_residual_layers):
            enc.append((idx, "residual", f"encoder.blocks.{i}.residuals.{j}"))
            idx += 1
        enc.append((idx + 1, "conv", f"encoder.blocks.{i}.down"))
        idx += 2
    enc.append((idx + 1, "conv", "encoder.conv_out"))
    dec = [(0, "conv", "decoder.conv_in")]
    idx = 1
    for i in range(len(ratios)):
        dec.append((idx + 1, "convtr", f"decoder.blocks.{i}.up"))
        idx += 2
        for j in range(n_residual_layers):
            dec.append((idx, "residual", f"decoder.blocks.{i}.residuals.{j}"))
            idx += 1
    dec.append((idx + 1, "conv", "decoder.conv_out"))
    return enc, dec
