"""The numpy half of TTS training, shared by both back ends: padded batches, durations from
the aligner (monotonic alignment search) and the phone-level pitch / energy averaged over
them. Framework-free: torch_ref's ``tts`` task imports it."""

from __future__ import annotations

from typing import Any

import numpy as np


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


def mas_targets(log_attention: np.ndarray, lengths: np.ndarray, mel_lengths: np.ndarray,
                frame_log_f0: np.ndarray, frame_energy: np.ndarray, stats: dict[str, float]
                ) -> dict[str, np.ndarray]:
    """Durations by monotonic alignment search on ``(B, T, N)`` log attention, and the
    phone-level pitch / energy targets averaged over them (normalised by ``stats``; 0 where a
    phone has no voiced frame). ``frame_log_f0``: ``(B, T)``, NaN where unvoiced or padded.
    Returns ``durations`` (B, N) int32, ``pitch`` and ``energy`` (B, N) float32."""
    from mlx_speech.train.tts_mas import batch_durations  # noqa: PLC0415

    dur = batch_durations(log_attention, lengths, mel_lengths)
    B, N = dur.shape
    pitch, energy = np.zeros((B, N), np.float32), np.zeros((B, N), np.float32)
    for k in range(B):
        n, T = int(lengths[k]), int(mel_lengths[k])
        d = dur[k, :n]
        f0, en = frame_log_f0[k, :T], frame_energy[k, :T]
        p = phone_average(f0, d, ~np.isnan(f0))
        e = phone_average(en, d, np.ones(T, bool))
        pitch[k, :n] = np.nan_to_num((p - stats["pitch_mean"]) / stats["pitch_std"])
        energy[k, :n] = np.nan_to_num((e - stats["energy_mean"]) / stats["energy_std"])
    return {"durations": dur.astype(np.int32), "pitch": pitch, "energy": energy}


def make_batch(feats: dict[str, Any], rows: list[int], pitch_mean: float, pitch_std: float,
               energy_mean: float, energy_std: float) -> dict[str, np.ndarray]:
    """Padded numpy batch; frame count rounded up to a multiple of 16 (fewer distinct shapes)."""
    ids = [feats["ids"][i] for i in rows]
    N = max(len(x) for x in ids)
    T = max(len(feats["mel"][i]) for i in rows)
    T = -(-T // 16) * 16
    pitch = [np.nan_to_num((feats["log_f0"][i] - pitch_mean) / pitch_std) for i in rows]
    energy = [np.nan_to_num((feats["energy"][i] - energy_mean) / energy_std) for i in rows]
    return {"ids": pad_rows(ids, N), "lengths": np.array([len(x) for x in ids], np.int32),
            "durations": pad_rows([feats["durations"][i] for i in rows], N),
            "pitch": pad_rows(pitch, N).astype(np.float32), "energy": pad_rows(energy, N).astype(np.float32),
            "mel": pad_rows([feats["mel"][i] for i in rows], T), "frames": T}


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
    nb = {"ids": pad_rows(ids, N), "lengths": np.array([len(x) for x in ids], np.int32), "mel": pad_rows(mels, T),
          "mel_lengths": np.array([len(m) for m in mels], np.int32)}
    nb["log_prior"] = batch_log_prior(nb["lengths"], nb["mel_lengths"], N, T)
    return nb


def pad_rows(arrs: list[np.ndarray], length: int, value: float = 0.0) -> np.ndarray:
    """Stack arrays along a new first axis, their first axis padded to ``length`` with ``value``."""
    out = np.full((len(arrs), length) + arrs[0].shape[1:], value, dtype=arrs[0].dtype)
    for i, a in enumerate(arrs):
        out[i, :len(a)] = a
    return out
