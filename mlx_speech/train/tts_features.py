"""The numpy half of the ``tts`` task's data: the festival corpus, features (log-mel, phone ids,
durations, phone- or frame-level pitch and energy) and the alignment report.

Framework-neutral (imports neither mlx nor torch): the log-mel is computed by a function the
caller passes (``log_mel(wav) -> (T, n_mels)``: :mod:`mlx_speech.audio.spectral` on the MLX
side, :mod:`torch_ref.audio.spectral` on torch_ref's; the same maths, so a feature cache
written by one back end serves the other).

The bundled voice is trained on a single-speaker corpus spoken by festival's
``cmu_us_slt_arctic_hts`` (the most natural offline voice, see DATA.md):
:func:`single_voice_corpus` drives the ``synth-corpus`` generator
(:mod:`mlx_speech.data.synth_corpus`: trimming, resampling, timings, manifest) with one voice
and our shipped sentence list ``mlx_speech/assets/tts/train_en.txt``.

Durations come from the corpus' phone timings (``alignment: corpus``,
:func:`prepare_features`) or from the model's own aligner (``alignment: learned``,
:func:`prepare_text_features`): then any (wav, text) pairs will do, e.g. an LJSpeech folder;
the text goes through our frontend and the durations are found during training
(:mod:`mlx_speech.train.tts_data`).
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from mlx_speech.data import synth_corpus as sc
from mlx_speech.data.voices import Voice
from mlx_speech.text.symbols import corpus_phones
from mlx_speech.train.tts_batch import align_inputs, phone_average

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tts"


def read_sentences(path: str | os.PathLike) -> list[str]:
    return [s.strip() for s in Path(path).read_text(encoding="utf-8").splitlines() if s.strip()]


def single_voice_corpus(out_dir: str | os.PathLike, *, sentences: list[str], voice: str = "cmu_us_slt_arctic_hts",
                        engine: str = "festival", sample_rate: int = 22050, workers: int = 2,
                        progress: bool = True, lang: str = "en") -> dict[str, Any]:
    """Speak every sentence (in ``lang``) with one voice into ``out_dir`` (wavs/ + manifest.jsonl)."""
    v = Voice(engine, voice, lang)
    orig_plan, orig_voices = sc.plan_jobs, sc.available_voices
    jobs = [sc.Job(index=i, lang=lang, text=t, voice=v) for i, t in enumerate(sentences)]
    try:
        sc.available_voices = lambda langs, engines=None: {lang: [v]}
        sc.plan_jobs = lambda langs, n, voices, seed: jobs
        return sc.synth_corpus(out_dir, langs=[lang], n=len(jobs), sample_rate=sample_rate,
                               workers=workers, progress=progress)
    finally:
        sc.plan_jobs, sc.available_voices = orig_plan, orig_voices


# --- features: mel, phone ids, durations, phone-level pitch and energy (numpy) ------------------


def frame_f0(wav: np.ndarray, sr: int, hop: int, n_fft: int, frames: int,
             fmin: float = 70.0, fmax: float = 400.0) -> np.ndarray:
    """Per-frame F0 in Hz (0 = unvoiced) by normalised autocorrelation (centred frames)."""
    x = np.pad(wav.astype(np.float64), (n_fft // 2, n_fft // 2 + n_fft))
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    fr = x[idx] * np.hanning(n_fft)[None, :]
    spec = np.fft.rfft(fr, 2 * n_fft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n_fft]
    win_ac = np.fft.irfft(np.abs(np.fft.rfft(np.hanning(n_fft), 2 * n_fft)) ** 2)[:n_fft]
    ac = ac / np.maximum(win_ac[None, :], 1e-3 * win_ac[0])
    lo, hi = int(sr / fmax), int(sr / fmin)
    r0 = np.maximum(ac[:, :1], 1e-9)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(frames), lag] / r0[:, 0]
    energy = r0[:, 0]
    voiced = (peak > 0.5) & (energy > 1e-4 * energy.max())
    return np.where(voiced, sr / lag, 0.0)


def durations_from_timings(phones: list[tuple[str, float, float]], frames: int, frame_rate: float) -> np.ndarray:
    """Integer frames per phone from end times, summing exactly to ``frames``."""
    ends = np.round(np.array([e for _, _, e in phones]) * frame_rate).astype(np.int64)
    ends = np.minimum(np.maximum.accumulate(ends), frames)
    ends[-1] = frames
    return np.diff(np.concatenate([[0], ends])).astype(np.int32)


def corpus_targets(item: Any, frames: int, frame_rate: float) -> tuple[list[str], np.ndarray]:
    """Our phones and frames per phone from an item's timings (pause runs merged, ``<sil>`` ends)."""
    phones = corpus_phones([p[0] for p in item.phones])
    dur = durations_from_timings(list(item.phones), frames, frame_rate)
    merged_p: list[str] = []
    merged_d: list[int] = []
    for p, d in zip(phones, dur):  # merge pause runs
        if merged_p and p in ("<sp>", "<sil>") and merged_p[-1] in ("<sp>", "<sil>"):
            merged_d[-1] += int(d)
            continue
        merged_p.append(p)
        merged_d.append(int(d))
    if merged_p[0] != "<sil>":
        merged_p.insert(0, "<sil>"); merged_d.insert(0, 0)
    if merged_p[-1] != "<sil>":
        merged_p.append("<sil>"); merged_d.append(0)
    return merged_p, np.array(merged_d, np.int32)


LogMel = Callable[[np.ndarray, Any], np.ndarray]
"""``log_mel(wav (n,), mel_spec) -> (T, n_mels)`` float32 log-mel of one utterance."""


def _frames(items: list[Any], mel_preset: str, progress: bool, desc: str, log_mel: LogMel) -> Any:
    """Yield ``(item, wav, log-mel (T, n_mels), MelSpec)`` for every item."""
    from mlx_speech.audio.io import load  # noqa: PLC0415
    from mlx_speech.specs.audio import MelSpec  # noqa: PLC0415

    spec = MelSpec.from_preset(mel_preset)
    it = items
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        it = tqdm(items, desc=desc, unit="utt")
    for item in it:
        wav, _ = load(item.path, sr=spec.sample_rate)
        mel = np.asarray(log_mel(wav, spec))
        yield item, wav, mel.astype(np.float32), spec


def prepare_features(manifest: str | os.PathLike | list[Any], log_mel: LogMel, mel_preset: str = "hifigan_22k",
                     progress: bool = True) -> dict[str, Any]:
    """Every utterance of a corpus manifest (path or items) as training arrays (``alignment: corpus``).

    Returns lists ``ids``, ``durations``, ``log_f0`` (NaN = unvoiced phone), ``energy``, ``mel``,
    the texts and the items' paths (``path``); adjacent pauses are merged."""
    from mlx_speech.data.manifest import DataError, read_manifest  # noqa: PLC0415
    from mlx_speech.text import SymbolTable  # noqa: PLC0415

    table = SymbolTable()
    items = manifest if isinstance(manifest, list) else read_manifest(manifest)
    for item in items:
        if not item.phones:
            raise DataError(f"alignment: corpus needs phone timings, and {item.path} has none "
                            "(use alignment: learned)")
    out: dict[str, list] = {k: [] for k in ("ids", "durations", "log_f0", "energy", "mel", "text", "path")}
    for item, wav, mel, spec in _frames(items, mel_preset, progress, "features", log_mel):
        T = mel.shape[0]
        merged_p, dur = corpus_targets(item, T, spec.frame_rate)
        f0 = frame_f0(wav, spec.sample_rate, spec.hop_length, spec.n_fft, T)
        logf0 = phone_average(np.log(np.maximum(f0, 1.0)), dur, f0 > 0)
        energy = phone_average(mel.mean(axis=1), dur, np.ones(T, bool))
        out["ids"].append(np.array(table.encode(merged_p), np.int32))
        out["durations"].append(dur)
        out["log_f0"].append(logf0.astype(np.float32))
        out["energy"].append(energy.astype(np.float32))
        out["mel"].append(mel)
        out["text"].append(item.text)
        out["path"].append(str(item.path))
    return out


# --- learned alignment: (wav, text) pairs; durations by MAS at every step (numpy) --------------
def text_phones(text: str, lang: str, frontend: Any) -> list[str]:
    """Our phones for a whole utterance: its sentences joined by ``<sp>``, ``<sil>`` at both ends
    (empty when nothing is speakable)."""
    from mlx_speech.text import normalize_en, split_sentences  # noqa: PLC0415
    from mlx_speech.text.symbols import SIL, SP  # noqa: PLC0415

    inner: list[str] = []
    for sent in split_sentences(normalize_en(text) if lang == "en" else text, max_words=10 ** 9):
        phones = frontend.phonemize(sent, lang)[1:-1]
        if phones:
            inner += ([SP] if inner else []) + phones
    return [SIL, *inner, SIL] if inner else []


def prepare_text_features(items: list[Any], log_mel: LogMel, mel_preset: str = "hifigan_22k",
                          language: str = "en", progress: bool = True) -> dict[str, Any]:
    """(wav, text) items as arrays for ``alignment: learned``: lists ``ids``, ``phones``, ``mel``,
    frame-level ``frame_log_f0`` (NaN = unvoiced) and ``frame_energy``, ``text``, ``path``, and ``ref``
    (the corpus' ``(phones, durations)`` where the item has timings, else None: alignment checks
    only). Items with nothing speakable or fewer frames than phones are skipped (``skipped``)."""
    from mlx_speech.data.manifest import DataError  # noqa: PLC0415
    from mlx_speech.text import SymbolTable, TextError, TextFrontend  # noqa: PLC0415

    frontend, table = TextFrontend(), SymbolTable()
    keys = ("ids", "phones", "mel", "frame_log_f0", "frame_energy", "text", "ref", "path")
    out: dict[str, Any] = {k: [] for k in keys}
    out["skipped"] = 0
    for item, wav, mel, spec in _frames(items, mel_preset, progress, "features (text)", log_mel):
        try:
            phones = text_phones(item.text, item.lang or language, frontend)
        except TextError:
            phones = []
        T = mel.shape[0]
        if not phones or T < len(phones):
            out["skipped"] += 1
            continue
        f0 = frame_f0(wav, spec.sample_rate, spec.hop_length, spec.n_fft, T)
        out["ids"].append(np.array(table.encode(phones), np.int32))
        out["phones"].append(phones)
        out["mel"].append(mel)
        out["frame_log_f0"].append(np.where(f0 > 0, np.log(np.maximum(f0, 1.0)), np.nan).astype(np.float32))
        out["frame_energy"].append(mel.mean(axis=1))
        out["text"].append(item.text)
        out["ref"].append(corpus_targets(item, T, spec.frame_rate) if item.phones else None)
        out["path"].append(str(item.path))
    if not out["ids"]:
        raise DataError(f"none of the {len(items)} utterances has speakable text and enough frames")
    return out


def feature_stats(feats: dict[str, Any]) -> dict[str, float]:
    """Mean / std of log-F0 (voiced) and energy: phone-level (corpus) or frame-level (learned)."""
    pk, ek = ("log_f0", "energy") if "log_f0" in feats else ("frame_log_f0", "frame_energy")
    f0 = np.concatenate([x[~np.isnan(x)] for x in feats[pk]])
    en = np.concatenate([x[~np.isnan(x)] for x in feats[ek]])
    return dict(pitch_mean=float(f0.mean()), pitch_std=float(f0.std()),
                energy_mean=float(en.mean()), energy_std=float(en.std()))


def alignment_report(feats: dict[str, Any], log_attention_fn: Any, batch_size: int = 8) -> dict[str, Any]:
    """Mean |boundary error| in frames of MAS durations vs the corpus timings, next to a uniform
    split of the same frames, over utterances with timings (phones matched by sequence alignment,
    so frontend and corpus phone sets may differ)."""
    from mlx_speech.train.tts_mas import batch_durations, boundary_errors, uniform_durations  # noqa: PLC0415

    rows = [i for i, ref in enumerate(feats["ref"]) if ref is not None]
    if not rows:
        return {}
    mas, uni = [], []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        ids, mels = [feats["ids"][i] for i in chunk], [feats["mel"][i] for i in chunk]
        nb = align_inputs(ids, mels)
        dur = batch_durations(log_attention_fn(nb), nb["lengths"], nb["mel_lengths"])
        for k, i in enumerate(chunk):
            ref_p, ref_d = feats["ref"][i]
            phones, n = feats["phones"][i], len(ids[k])
            mas.append(boundary_errors(phones, dur[k, :n], ref_p, ref_d))
            uni.append(boundary_errors(phones, uniform_durations(n, len(mels[k])), ref_p, ref_d))
    mas_e, uni_e = np.concatenate(mas), np.concatenate(uni)
    return {"utterances": len(rows), "boundaries": int(len(mas_e)),
            "boundary_err_mas": round(float(mas_e.mean()), 3), "boundary_err_uniform": round(float(uni_e.mean()), 3),
            "within_2_frames_mas": round(float((mas_e <= 2).mean()), 3),
            "within_2_frames_uniform": round(float((uni_e <= 2).mean()), 3)}
