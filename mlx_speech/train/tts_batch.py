"""The numpy half of TTS training, shared by both back ends: padded batches, durations from
the aligner (monotonic alignment search), phone-level pitch / energy, the learning-rate
schedule. Framework-free: torch_ref's TTS trainer imports it."""

from __future__ import annotations

from typing import Any

import numpy as np


def step_batch(feats: dict[str, Any], rows: list[int], stats: dict[str, float], recipe: Any, step: int,
               log_attention_fn: Any = None) -> dict[str, Any]:
    """The numpy batch of one training step (both back ends): corpus durations, or MAS durations
    plus the alignment loss weights (binarization from ``recipe.bin_start`` on)."""
    if recipe.alignment != "learned":
        return make_batch(feats, rows, **stats)
    nb = learned_batch(feats, rows, stats, log_attention_fn)
    nb["align_weight"] = float(recipe.align_weight)
    nb["bin_weight"] = float(recipe.bin_weight) if step >= recipe.bin_start else 0.0
    return nb


def lr_schedule(step: int, recipe: Any, steps: int) -> float:
    """Linear warm-up then cosine decay to 5 % of ``recipe.lr`` (both back ends)."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    p = (step - recipe.warmup_steps) / max(1, steps - recipe.warmup_steps)
    return float(recipe.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(p, 1.0)))))


def learned_batch(feats: dict[str, Any], rows: list[int], stats: dict[str, float],
                  log_attention_fn: Any) -> dict[str, Any]:
    """A :func:`make_batch` batch whose durations come from monotonic alignment search.

    ``log_attention_fn(nb)`` gets numpy ``ids, lengths, mel, mel_lengths, log_prior`` (padded as
    the batch) and returns the model's ``(B, T, N)`` log attention (with the prior); phone-level
    pitch and energy are averaged over the resulting durations. Adds ``mel_lengths`` and
    ``log_prior`` for the alignment losses."""
    from mlx_speech.train.tts_mas import batch_durations  # noqa: PLC0415

    ids, mels = [feats["ids"][i] for i in rows], [feats["mel"][i] for i in rows]
    nb = align_inputs(ids, mels, multiple=16)  # make_batch's frame padding
    dur = batch_durations(log_attention_fn(nb), nb["lengths"], nb["mel_lengths"])
    durs = [dur[k, :len(x)] for k, x in enumerate(ids)]
    f0s, ens = [feats["frame_log_f0"][i] for i in rows], [feats["frame_energy"][i] for i in rows]
    sub = {"ids": ids, "mel": mels, "durations": durs,
           "log_f0": [phone_average(f, d, ~np.isnan(f)) for f, d in zip(f0s, durs)],
           "energy": [phone_average(e, d, np.ones(len(e), bool)) for e, d in zip(ens, durs)]}
    nb.update(make_batch(sub, list(range(len(rows))), **stats))
    return nb


def make_batch(feats: dict[str, Any], rows: list[int], pitch_mean: float, pitch_std: float,
               energy_mean: float, energy_std: float) -> dict[str, np.ndarray]:
    """Padded numpy batch; frame count rounded up to a multiple of 16 (fewer distinct shapes)."""
    ids = [feats["ids"][i] for i in rows]
    N = max(len(x) for x in ids)
    T = max(len(feats["mel"][i]) for i in rows)
    T = -(-T // 16) * 16
    pitch = [np.nan_to_num((feats["log_f0"][i] - pitch_mean) / pitch_std) for i in rows]
    energy = [np.nan_to_num((feats["energy"][i] - energy_mean) / energy_std) for i in rows]
    return {"ids": _pad(ids, N), "lengths": np.array([len(x) for x in ids], np.int32),
            "durations": _pad([feats["durations"][i] for i in rows], N),
            "pitch": _pad(pitch, N).astype(np.float32), "energy": _pad(energy, N).astype(np.float32),
            "mel": _pad([feats["mel"][i] for i in rows], T), "frames": T}


def phone_average(values: np.ndarray, durations: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each phone's valid frames (NaN where a phone has none)."""
    out = np.full(len(durations), np.nan)
    ends = np.cumsum(durations)
    for i, (s, e) in enumerate(zip(ends - durations, ends)):
        v = values[s:e][valid[s:e]]
        if len(v):
            out[i] = v.mean()
    return out


def align_inputs(ids: list[np.ndarray], mels: list[np.ndarray], multiple: int = 1) -> dict[str, Any]:
    """Padded aligner inputs: ``ids, lengths, mel, mel_lengths`` and the ``(B, T, N)`` log prior
    (frames padded to a multiple of ``multiple``)."""
    from mlx_speech.train.tts_mas import batch_log_prior  # noqa: PLC0415

    N, T = max(len(x) for x in ids), -(-max(len(m) for m in mels) // multiple) * multiple
    nb = {"ids": _pad(ids, N), "lengths": np.array([len(x) for x in ids], np.int32), "mel": _pad(mels, T),
          "mel_lengths": np.array([len(m) for m in mels], np.int32)}
    nb["log_prior"] = batch_log_prior(nb["lengths"], nb["mel_lengths"], N, T)
    return nb


def _pad(arrs: list[np.ndarray], length: int, value: float = 0.0) -> np.ndarray:
    out = np.full((len(arrs), length) + arrs[0].shape[1:], value, dtype=arrs[0].dtype)
    for i, a in enumerate(arrs):
        out[i, :len(a)] = a
    return out
