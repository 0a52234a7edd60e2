"""TTS data preparation for the bundled voice (framework-neutral part of the TTS recipe).

The bundled voice is trained on a single-speaker corpus spoken by festival's
``cmu_us_slt_arctic_hts`` (the most natural offline voice, see DATA.md). ``synth-corpus``
rotates over every installed voice; :func:`single_voice_corpus` drives the same generator
(:mod:`mlx_speech.data.synth_corpus`: trimming, resampling, timings, manifest) with one voice
and our shipped sentence list ``mlx_speech/assets/tts/train_en.txt``.

Durations come from the corpus' phone timings (``alignment: corpus``) or from the model's own
aligner (``alignment: learned``): then any (wav, text) pairs will do, e.g. an LJSpeech folder;
the text goes through our frontend, and every step runs monotonic alignment search on the
aligner's current soft alignment to get the durations the length regulator, the duration
predictor and the phone-level pitch / energy targets use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data import synth_corpus as sc
from mlx_speech.data.voices import Voice
from mlx_speech.train.tts_batch import (  # noqa: F401  (make_batch: re-exported for callers)
    align_inputs, learned_batch, lr_schedule, make_batch, phone_average, step_batch)

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


def _frames(items: list[Any], mel_preset: str, progress: bool, desc: str) -> Any:
    """Yield ``(item, wav, log-mel (T, n_mels), MelSpec)`` for every item (log-mel via MLX)."""
    import mlx_speech  # noqa: F401,PLC0415
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.audio.io import load  # noqa: PLC0415
    from mlx_speech.audio.spectral import log_mel  # noqa: PLC0415
    from mlx_speech.specs.audio import MelSpec  # noqa: PLC0415

    spec = MelSpec.from_preset(mel_preset)
    it = items
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        it = tqdm(items, desc=desc, unit="utt")
    for item in it:
        wav, _ = load(item.path, sr=spec.sample_rate)
        mel = np.array(log_mel(mx.array(wav[None]), **spec.mel_kwargs(), floor=spec.log_floor)[0])
        yield item, wav, mel.astype(np.float32), spec


def prepare_features(manifest: str | os.PathLike | list[Any], mel_preset: str = "hifigan_22k",
                     progress: bool = True) -> dict[str, Any]:
    """Every utterance of a corpus manifest (path or items) as training arrays (``alignment: corpus``).

    Returns lists ``ids``, ``durations``, ``log_f0`` (NaN = unvoiced phone), ``energy``, ``mel``
    and the texts; adjacent pauses are merged."""
    from mlx_speech.data.manifest import DataError, read_manifest  # noqa: PLC0415
    from mlx_speech.text import SymbolTable  # noqa: PLC0415

    table = SymbolTable()
    items = manifest if isinstance(manifest, list) else read_manifest(manifest)
    for item in items:
        if not item.phones:
            raise DataError(f"alignment: corpus needs phone timings, and {item.path} has none "
                            "(use alignment: learned)")
    out: dict[str, list] = {k: [] for k in ("ids", "durations", "log_f0", "energy", "mel", "text")}
    for item, wav, mel, spec in _frames(items, mel_preset, progress, "features"):
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


def recipe_items(r: Any, progress: bool = True) -> list[Any]:
    """The recipe's utterances: its LJSpeech folder, its manifest, or the festival corpus in
    ``corpus_dir`` (generated when absent); the first ``max_items`` when set."""
    from mlx_speech.data.manifest import DataError, read_ljspeech, read_manifest  # noqa: PLC0415

    if r.ljspeech:
        if not Path(r.ljspeech).is_dir():
            raise DataError(f"LJSpeech folder not found: {r.ljspeech} (expected metadata.csv and wavs/)")
        items = read_ljspeech(r.ljspeech, lang=r.language)
    elif r.manifest:
        items = read_manifest(r.manifest)
    else:
        manifest = Path(r.corpus_dir) / "manifest.jsonl"
        if not manifest.is_file():
            single_voice_corpus(r.corpus_dir, sentences=read_sentences(r.sentences), voice=r.voice,
                                sample_rate=_mel_rate(r.mel_preset), progress=progress)
        items = read_manifest(manifest)
    return items[:r.max_items] if r.max_items else items


def prepare_text_features(items: list[Any], mel_preset: str = "hifigan_22k", language: str = "en",
                          progress: bool = True) -> dict[str, Any]:
    """(wav, text) items as arrays for ``alignment: learned``: lists ``ids``, ``phones``, ``mel``,
    frame-level ``frame_log_f0`` (NaN = unvoiced) and ``frame_energy``, ``text``, and ``ref``
    (the corpus' ``(phones, durations)`` where the item has timings, else None: alignment checks
    only). Items with nothing speakable or fewer frames than phones are skipped (``skipped``)."""
    from mlx_speech.data.manifest import DataError  # noqa: PLC0415
    from mlx_speech.text import SymbolTable, TextError, TextFrontend  # noqa: PLC0415

    frontend, table = TextFrontend(), SymbolTable()
    keys = ("ids", "phones", "mel", "frame_log_f0", "frame_energy", "text", "ref")
    out: dict[str, Any] = {k: [] for k in keys}
    out["skipped"] = 0
    for item, wav, mel, spec in _frames(items, mel_preset, progress, "features (text)"):
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


# --- training (MLX) -----------------------------------------------------------------------------


def tts_loss(model: Any, b: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """L1 mel + MSE of log(1 + duration), normalised pitch and energy (masked means); with
    ``log_prior`` in the batch (learned alignment) also the aligner's forward-sum loss and the
    binarization loss towards the batch's MAS durations, weighted by ``align_weight`` / ``bin_weight``."""
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
    parts = {"mel": mel_l, "duration": dur_l, "pitch": pitch_l, "energy": energy_l}
    if "log_prior" in b:
        from mlx_speech.models.tts.fastspeech import alignment_matrix, sequence_mask  # noqa: PLC0415
        from mlx_speech.train.tts_align import binarization_loss, forward_sum_loss, log_attention  # noqa: PLC0415

        scores = model.alignment_scores(b["ids"], b["lengths"], b["mel"], b.get("language", zeros))
        la = log_attention(scores, b["log_prior"], out["phone_mask"], sequence_mask(b["mel_lengths"], b["frames"]))
        parts["align"] = forward_sum_loss(la, b["lengths"], b["mel_lengths"])
        parts["bin"] = binarization_loss(la, alignment_matrix(b["durations"], b["frames"]))
        total = total + b["align_weight"] * parts["align"] + b["bin_weight"] * parts["bin"]
    return total, parts


def mlx_log_attention_fn(model: Any, language: int) -> Any:
    """``nb -> (B, T, N)`` numpy log attention of an MLX model (for :func:`learned_batch`)."""
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.models.tts.fastspeech import sequence_mask  # noqa: PLC0415
    from mlx_speech.train.tts_align import log_attention  # noqa: PLC0415

    def fn(nb: dict[str, np.ndarray]) -> np.ndarray:
        ids, lengths = mx.array(nb["ids"]), mx.array(nb["lengths"])
        lang = mx.full((ids.shape[0],), language, dtype=mx.int32)
        scores = model.alignment_scores(ids, lengths, mx.array(nb["mel"]), lang)
        mel_mask = sequence_mask(mx.array(nb["mel_lengths"]), nb["mel"].shape[1])
        la = log_attention(scores, mx.array(nb["log_prior"]), sequence_mask(lengths, ids.shape[1]), mel_mask)
        return np.array(mx.stop_gradient(la))

    return fn


def load_recipe(recipe_path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (),
                out_dir: str | os.PathLike | None = None) -> Any:
    """The TTS recipe with ``key=value`` overrides (strict) and an optional ``out_dir``."""
    from mlx_speech.models.tts.spec import TTSRecipeSpec  # noqa: PLC0415
    from mlx_speech.train.recipe import apply_override  # noqa: PLC0415

    r = TTSRecipeSpec.from_yaml(Path(recipe_path))
    if overrides or out_dir is not None:
        data = r.to_dict()
        for o in overrides:
            apply_override(data, o)
        if out_dir is not None:
            data["out_dir"] = str(out_dir)
        r = TTSRecipeSpec._build(data, strict=True, where=str(recipe_path))
    return r


def load_features(r: Any, out: Path, progress: bool = True) -> dict[str, Any]:
    """Features of the recipe's corpus, cached in ``out`` (recomputed when the data source changes)."""
    import pickle  # noqa: PLC0415

    from mlx_speech.utils.atomic import atomic_path  # noqa: PLC0415

    key = [r.alignment, r.ljspeech, r.manifest, r.corpus_dir, r.max_items, r.mel_preset, r.language]
    cache = out / ("features.pkl" if r.alignment == "corpus" else "features_learned.pkl")
    if cache.is_file():
        data = pickle.loads(cache.read_bytes())  # our own cache file, written below
        if isinstance(data, dict) and data.get("key") == key:
            return data["feats"]
    items = recipe_items(r, progress)
    if r.alignment == "learned":
        feats = prepare_text_features(items, r.mel_preset, r.language, progress=progress)
    else:
        feats = prepare_features(items, r.mel_preset, progress=progress)
    with atomic_path(cache) as tmp:
        tmp.write_bytes(pickle.dumps({"key": key, "feats": feats}))
    return feats


def train_voice(recipe_path: str | os.PathLike, *, steps: int | None = None,
                overrides: list[str] | tuple[str, ...] = (), out_dir: str | os.PathLike | None = None,
                backend: str = "mlx", progress: bool = True) -> dict[str, Any]:
    """Build the corpus (if absent), extract features, train, write ``out_dir/voice/``.

    ``overrides`` are ``key=value`` recipe fields (``model.dim=64``). ``backend="torch"`` trains
    the torch_ref twin (CUDA when available; on x86 CPUs also faster than MLX) and converts the
    result to MLX. With ``alignment: learned`` and a corpus with timings, the summary reports
    the MAS boundary error against them (``alignment``)."""
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    import mlx_speech  # noqa: F401,PLC0415
    import mlx.core as mx  # noqa: PLC0415
    import mlx.nn as nn  # noqa: PLC0415
    import mlx.optimizers as optim  # noqa: PLC0415

    from mlx_speech.models.tts.fastspeech import FastSpeech2  # noqa: PLC0415
    from mlx_speech.text import LANGUAGES  # noqa: PLC0415

    r = load_recipe(recipe_path, overrides, out_dir)
    steps = steps or r.steps
    out = Path(r.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feats = load_features(r, out, progress)
    stats = feature_stats(feats)
    spec = r.model.replace(pitch_mean=stats["pitch_mean"], pitch_std=stats["pitch_std"])
    lang = LANGUAGES.index(r.language)
    summary: dict[str, Any] = {"steps": steps, "backend": backend, "voice": str(out / "voice"),
                               "utterances": len(feats["ids"]), "skipped": feats.get("skipped", 0)}
    t0 = time.perf_counter()
    if backend == "torch":
        from mlx_speech.registry import resolve  # noqa: PLC0415
        from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

        # by name: mlx_speech never depends on torch_ref; torch loads only for this backend
        save_torch_model = resolve("torch_ref.weights:save_torch_model")
        train_acoustic = resolve("torch_ref.train.tasks_tts:train_acoustic")

        def to_voice(tmodel: Any) -> None:
            save_torch_model(out / "acoustic_torch.safetensors", tmodel, model="fastspeech2", spec=spec)
            write_voice(out / "voice", load_mlx_model(out / "acoustic_torch.safetensors")[0], spec, r)

        to_voice(train_acoustic(feats, stats, spec, r, steps=steps, language=lang,
                                log_path=out / "train_log.jsonl", progress=progress, on_save=to_voice))
        model = load_mlx_model(out / "voice" / "acoustic.safetensors")[0]
    else:
        mx.random.seed(r.seed)
        rng = np.random.default_rng(r.seed)
        model = FastSpeech2(spec)
        align_fn = mlx_log_attention_fn(model, lang) if r.alignment == "learned" else None
        order = np.argsort([len(m) for m in feats["mel"]])
        batches = [list(order[i:i + r.batch_size]) for i in range(0, len(order), r.batch_size)]
        opt = optim.AdamW(learning_rate=r.lr, betas=[0.9, 0.98], weight_decay=0.01)
        grad_fn = nn.value_and_grad(model, lambda m, b: tts_loss(m, b))
        bar = None
        if progress:
            from tqdm import tqdm  # noqa: PLC0415
            bar = tqdm(total=steps, desc="train tts", unit="step")
        with open(out / "train_log.jsonl", "a", encoding="utf-8") as log:
            for step in range(steps):
                rows = batches[int(rng.integers(len(batches)))]
                nb = step_batch(feats, rows, stats, r, step, align_fn)
                b = {k: (mx.array(v) if isinstance(v, np.ndarray) else v) for k, v in nb.items()}
                b["language"] = mx.full((len(rows),), lang, dtype=mx.int32)
                (loss, parts), grads = grad_fn(model, b)
                grads, _ = optim.clip_grad_norm(grads, r.grad_clip)
                opt.learning_rate = lr_schedule(step, r, steps)
                opt.update(model, grads)
                mx.eval(model.parameters(), opt.state, loss)
                if bar is not None:
                    bar.update(1)
                if step % r.log_every == 0 or step == steps - 1:
                    rec = {"step": step, "loss": float(loss), **{k: float(v) for k, v in parts.items()},
                           "lr": lr_schedule(step, r, steps), "elapsed_s": round(time.perf_counter() - t0, 1)}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.3f}", mel=f"{rec['mel']:.3f}")
                if (step + 1) % r.save_every == 0 or step == steps - 1:
                    write_voice(out / "voice", model, spec, r)
        if bar is not None:
            bar.close()
        summary["final_loss"] = float(loss)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 1)
    if r.alignment == "learned" and any(x is not None for x in feats["ref"]):
        summary["alignment"] = alignment_report(feats, mlx_log_attention_fn(model, lang), r.batch_size)
    return summary


def _mel_rate(preset: str) -> int:
    from mlx_speech.specs.audio import MelSpec  # noqa: PLC0415

    return MelSpec.from_preset(preset).sample_rate


def write_voice(voice_dir: Path, model: Any, spec: Any, recipe: Any) -> None:
    """A voice folder: ``acoustic.safetensors`` (tagged) + ``voice.json``."""
    import json  # noqa: PLC0415

    from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415

    voice_dir.mkdir(parents=True, exist_ok=True)
    save_mlx_model(voice_dir / "acoustic.safetensors", model, model="fastspeech2", spec=spec)
    source = recipe.ljspeech or recipe.manifest
    meta = {"name": Path(recipe.out_dir).name, "language": recipe.language, "mel_preset": recipe.mel_preset,
            "speakers": [Path(source).stem if source else recipe.voice],
            "teacher": f"recordings {source}" if source else f"festival {recipe.voice}",
            "alignment": recipe.alignment, "vocoder": "griffin-lim"}
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
    _p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    _a = _p.parse_args()
    from mlx_speech.errors import UserError

    try:
        print(_json.dumps(train_voice(_a.config, steps=_a.steps, overrides=_a.overrides, backend=_a.backend)))
    except UserError as _e:
        print(f"error: {_e}", file=_sys.stderr)
        _sys.exit(2)
