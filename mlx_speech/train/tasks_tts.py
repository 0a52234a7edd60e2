"""TTS data preparation for the bundled voice (framework-neutral part of the TTS recipe).

The bundled voice is trained on a single-speaker corpus spoken by festival's
``cmu_us_slt_arctic_hts`` (the most natural offline voice, see DATA.md). ``synth-corpus``
rotates over every installed voice; :func:`single_voice_corpus` drives the same generator
(:mod:`mlx_speech.data.synth_corpus`: trimming, resampling, timings, manifest) with one voice
and our shipped sentence list ``mlx_speech/assets/tts/train_en.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data import synth_corpus as sc
from mlx_speech.data.voices import Voice

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tts"


def read_sentences(path: str | os.PathLike) -> list[str]:
    return [s.strip() for s in Path(path).read_text(encoding="utf-8").splitlines() if s.strip()]


def single_voice_corpus(out_dir: str | os.PathLike, *, sentences: list[str], voice: str = "cmu_us_slt_arctic_hts",
                        engine: str = "festival", sample_rate: int = 22050, workers: int = 2,
                        progress: bool = True) -> dict[str, Any]:
    """Speak every sentence with one voice into ``out_dir`` (wavs/ + manifest.jsonl)."""
    v = Voice(engine, voice, "en")
    orig_plan, orig_voices = sc.plan_jobs, sc.available_voices
    jobs = [sc.Job(index=i, lang="en", text=t, voice=v) for i, t in enumerate(sentences)]
    try:
        sc.available_voices = lambda langs, engines=None: {"en": [v]}
        sc.plan_jobs = lambda langs, n, voices, seed: jobs
        return sc.synth_corpus(out_dir, langs=["en"], n=len(jobs), sample_rate=sample_rate,
                               workers=workers, progress=progress)
    finally:
        sc.plan_jobs, sc.available_voices = orig_plan, orig_voices


# --- features: mel, phone ids, durations, phone-level pitch and energy (numpy) ------------------
_FESTIVAL_TO_ARPA = {"pau": "<sp>", "h#": "<sp>", "sil": "<sp>", "dx": "d", "axr": "er", "ix": "ih",
                     "el": "l", "em": "m", "en": "n", "nx": "n", "hv": "hh"}


def corpus_phones(labels: list[str]) -> list[str]:
    """Festival / flite segment labels -> our English symbols (pauses at the ends -> ``<sil>``)."""
    out = [_FESTIVAL_TO_ARPA.get(lab, lab) for lab in labels]
    if out and out[0] == "<sp>":
        out[0] = "<sil>"
    if out and out[-1] == "<sp>":
        out[-1] = "<sil>"
    return out


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


def phone_average(values: np.ndarray, durations: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over each phone's valid frames (NaN where a phone has none)."""
    out = np.full(len(durations), np.nan)
    ends = np.cumsum(durations)
    for i, (s, e) in enumerate(zip(ends - durations, ends)):
        v = values[s:e][valid[s:e]]
        if len(v):
            out[i] = v.mean()
    return out


def prepare_features(manifest: str | os.PathLike, mel_preset: str = "hifigan_22k",
                     progress: bool = True) -> dict[str, Any]:
    """Every utterance of a corpus manifest as training arrays (log-mel via MLX, rest numpy).

    Returns lists ``ids``, ``durations``, ``log_f0`` (NaN = unvoiced phone), ``energy``, ``mel``
    and the texts; adjacent pauses are merged."""
    import mlx_speech  # noqa: F401,PLC0415
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.audio.io import load  # noqa: PLC0415
    from mlx_speech.audio.spectral import log_mel  # noqa: PLC0415
    from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415
    from mlx_speech.specs.audio import MelSpec  # noqa: PLC0415
    from mlx_speech.text import SymbolTable  # noqa: PLC0415

    spec = MelSpec.from_preset(mel_preset)
    table = SymbolTable()
    items = read_manifest(manifest)
    out: dict[str, list] = {k: [] for k in ("ids", "durations", "log_f0", "energy", "mel", "text")}
    it = items
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        it = tqdm(items, desc="features", unit="utt")
    for item in it:
        wav, _ = load(item.path, sr=spec.sample_rate)
        mel = np.array(log_mel(mx.array(wav[None]), **spec.mel_kwargs(), floor=spec.log_floor)[0])
        T = mel.shape[0]
        labs = [p[0] for p in item.phones]
        phones = corpus_phones(labs)
        dur = durations_from_timings(list(item.phones), T, spec.frame_rate)
        merged_p, merged_d = [], []
        for p, d in zip(phones, dur):  # merge pause runs
            if merged_p and p in ("<sp>", "<sil>") and merged_p[-1] in ("<sp>", "<sil>"):
                merged_d[-1] += d
                continue
            merged_p.append(p)
            merged_d.append(int(d))
        if merged_p[0] != "<sil>":
            merged_p.insert(0, "<sil>"); merged_d.insert(0, 0)
        if merged_p[-1] != "<sil>":
            merged_p.append("<sil>"); merged_d.append(0)
        dur = np.array(merged_d, np.int32)
        f0 = frame_f0(wav, spec.sample_rate, spec.hop_length, spec.n_fft, T)
        logf0 = phone_average(np.log(np.maximum(f0, 1.0)), dur, f0 > 0)
        energy = phone_average(mel.mean(axis=1), dur, np.ones(T, bool))
        out["ids"].append(np.array(table.encode(merged_p), np.int32))
        out["durations"].append(dur)
        out["log_f0"].append(logf0.astype(np.float32))
        out["energy"].append(energy.astype(np.float32))
        out["mel"].append(mel.astype(np.float32))
        out["text"].append(item.text)
    return out


# --- training (MLX) -----------------------------------------------------------------------------
def _pad(arrs: list[np.ndarray], length: int, value: float = 0.0) -> np.ndarray:
    out = np.full((len(arrs), length) + arrs[0].shape[1:], value, dtype=arrs[0].dtype)
    for i, a in enumerate(arrs):
        out[i, :len(a)] = a
    return out


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


def tts_loss(model: Any, b: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """L1 mel + MSE of log(1 + duration), normalised pitch and energy (masked means)."""
    import mlx.core as mx  # noqa: PLC0415

    B = b["ids"].shape[0]
    zeros = mx.zeros((B,), dtype=mx.int32)
    out = model(b["ids"], b["lengths"], b["durations"], b["pitch"], b["energy"], zeros,
                b.get("language", zeros), frames=b["frames"])
    fm = out["frame_mask"][..., None].astype(mx.float32)
    pm = out["phone_mask"].astype(mx.float32)
    mel_l = mx.sum(mx.abs(out["mel"] - b["mel"]) * fm) / (mx.sum(fm) * b["mel"].shape[-1])
    n = mx.sum(pm)
    dur_t = mx.log1p(b["durations"].astype(mx.float32))
    dur_l = mx.sum((out["log_duration"] - dur_t) ** 2 * pm) / n
    pitch_l = mx.sum((out["pitch"] - b["pitch"]) ** 2 * pm) / n
    energy_l = mx.sum((out["energy"] - b["energy"]) ** 2 * pm) / n
    total = mel_l + dur_l + 0.1 * pitch_l + 0.1 * energy_l
    return total, {"mel": mel_l, "duration": dur_l, "pitch": pitch_l, "energy": energy_l}


def lr_schedule(step: int, recipe: Any, steps: int) -> float:
    """Linear warm-up then cosine decay to 5 % of ``recipe.lr`` (both back ends)."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    p = (step - recipe.warmup_steps) / max(1, steps - recipe.warmup_steps)
    return float(recipe.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(p, 1.0)))))


def train_voice(recipe_path: str | os.PathLike, *, steps: int | None = None, backend: str = "mlx",
                progress: bool = True) -> dict[str, Any]:
    """Build the corpus (if absent), extract features, train, write ``out_dir/voice/``.

    ``backend="torch"`` trains the torch_ref twin (CUDA when available; on x86 CPUs also faster
    than MLX) and converts the result to MLX."""
    import json  # noqa: PLC0415
    import pickle  # noqa: PLC0415
    import time  # noqa: PLC0415

    import mlx_speech  # noqa: F401,PLC0415
    import mlx.core as mx  # noqa: PLC0415
    import mlx.nn as nn  # noqa: PLC0415
    import mlx.optimizers as optim  # noqa: PLC0415

    from convert.checkpoint import save_mlx_model  # noqa: PLC0415
    from mlx_speech.models.fastspeech import FastSpeech2  # noqa: PLC0415
    from mlx_speech.specs.tts import TTSRecipeSpec  # noqa: PLC0415
    from mlx_speech.text import LANGUAGES  # noqa: PLC0415

    r = TTSRecipeSpec.from_yaml(Path(recipe_path))
    steps = steps or r.steps
    out = Path(r.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Path(r.corpus_dir) / "manifest.jsonl"
    if not manifest.is_file():
        single_voice_corpus(r.corpus_dir, sentences=read_sentences(r.sentences), voice=r.voice,
                            sample_rate=_mel_rate(r.mel_preset), progress=progress)
    cache = out / "features.pkl"
    if cache.is_file():
        feats = pickle.loads(cache.read_bytes())  # our own cache file, written below
    else:
        feats = prepare_features(manifest, r.mel_preset, progress=progress)
        cache.write_bytes(pickle.dumps(feats))
    f0 = np.concatenate([x[~np.isnan(x)] for x in feats["log_f0"]])
    en = np.concatenate([x[~np.isnan(x)] for x in feats["energy"]])
    stats = dict(pitch_mean=float(f0.mean()), pitch_std=float(f0.std()),
                 energy_mean=float(en.mean()), energy_std=float(en.std()))
    spec = r.model.replace(pitch_mean=stats["pitch_mean"], pitch_std=stats["pitch_std"])
    lang = LANGUAGES.index(r.language)
    if backend == "torch":
        from convert.checkpoint import load_mlx_model, save_torch_model  # noqa: PLC0415
        from torch_ref.train.tasks_tts import train_acoustic  # noqa: PLC0415

        def to_voice(tmodel: Any) -> None:
            save_torch_model(out / "acoustic_torch.safetensors", tmodel, model="fastspeech2", spec=spec)
            write_voice(out / "voice", load_mlx_model(out / "acoustic_torch.safetensors")[0], spec, r)

        t0 = time.perf_counter()
        to_voice(train_acoustic(feats, stats, spec, r, steps=steps, language=lang,
                                log_path=out / "train_log.jsonl", progress=progress, on_save=to_voice))
        return {"steps": steps, "backend": "torch", "voice": str(out / "voice"),
                "elapsed_s": round(time.perf_counter() - t0, 1)}
    mx.random.seed(r.seed)
    rng = np.random.default_rng(r.seed)
    model = FastSpeech2.from_spec(spec)
    order = np.argsort([len(m) for m in feats["mel"]])
    batches = [list(order[i:i + r.batch_size]) for i in range(0, len(order), r.batch_size)]

    def lr_at(step: int) -> float:
        return lr_schedule(step, r, steps)

    opt = optim.AdamW(learning_rate=r.lr, betas=[0.9, 0.98], weight_decay=0.01)
    grad_fn = nn.value_and_grad(model, lambda m, b: tts_loss(m, b))
    log = open(out / "train_log.jsonl", "a", encoding="utf-8")
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        bar = tqdm(total=steps, desc="train tts", unit="step")
    for step in range(steps):
        rows = batches[int(rng.integers(len(batches)))]
        nb = make_batch(feats, rows, **stats)
        b = {k: (v if k == "frames" else mx.array(v)) for k, v in nb.items()}
        b["language"] = mx.full((len(rows),), lang, dtype=mx.int32)
        (loss, parts), grads = grad_fn(model, b)
        grads, _ = optim.clip_grad_norm(grads, r.grad_clip)
        opt.learning_rate = lr_at(step)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state, loss)
        if bar is not None:
            bar.update(1)
        if step % r.log_every == 0 or step == steps - 1:
            rec = {"step": step, "loss": float(loss), **{k: float(v) for k, v in parts.items()},
                   "lr": lr_at(step), "elapsed_s": round(time.perf_counter() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.3f}", mel=f"{rec['mel']:.3f}")
        if (step + 1) % r.save_every == 0 or step == steps - 1:
            write_voice(out / "voice", model, spec, r)
    if bar is not None:
        bar.close()
    return {"steps": steps, "voice": str(out / "voice"), "final_loss": float(loss),
            "elapsed_s": round(time.perf_counter() - t0, 1)}


def _mel_rate(preset: str) -> int:
    from mlx_speech.specs.audio import MelSpec  # noqa: PLC0415

    return MelSpec.from_preset(preset).sample_rate


def write_voice(voice_dir: Path, model: Any, spec: Any, recipe: Any) -> None:
    """A voice folder: ``acoustic.safetensors`` (tagged) + ``voice.json``."""
    import json  # noqa: PLC0415

    from convert.checkpoint import save_mlx_model  # noqa: PLC0415

    voice_dir.mkdir(parents=True, exist_ok=True)
    save_mlx_model(voice_dir / "acoustic.safetensors", model, model="fastspeech2", spec=spec)
    meta = {"name": Path(recipe.out_dir).name, "language": recipe.language, "mel_preset": recipe.mel_preset,
            "speakers": [recipe.voice], "teacher": f"festival {recipe.voice}",
            "vocoder": "griffin-lim"}
    old = voice_dir / "voice.json"
    if old.is_file():  # keep a vocoder entry written by the vocoder recipe
        meta["vocoder"] = json.loads(old.read_text()).get("vocoder", "griffin-lim")
    (voice_dir / "voice.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    import json as _json
    import sys as _sys

    import argparse as _argparse

    _p = _argparse.ArgumentParser(description="Train a TTS voice from a configs/tts_*.yaml recipe.")
    _p.add_argument("config")
    _p.add_argument("--steps", type=int, default=None)
    _p.add_argument("--backend", choices=["mlx", "torch"], default="mlx")
    _a = _p.parse_args()
    print(_json.dumps(train_voice(_a.config, steps=_a.steps, backend=_a.backend)))
