"""Offline speech corpus: the shipped sentences spoken by the installed Debian synthesizers.

``mlx-speech data synth-corpus --langs en,hi,te --n 300 -o corpus/`` writes

    corpus/wavs/<lang>_<index>.wav   16-bit mono at --sr (resampled with soxr HQ)
    corpus/wavs/<lang>_<index>.txt   the sentence
    corpus/manifest.jsonl            path, text, lang, speaker (= voice id), duration,
                                     sample_rate, phones and words as [label, start_s, end_s]

Utterance ``j`` is in language ``langs[j % len(langs)]``; sentences and voices rotate through
seeded permutations, so the same arguments give the same corpus. Leading and trailing silence
is trimmed to 0.1 s / 0.15 s around the first / last non-pause phone (festival's diphone voices
add about a second), timings are shifted to match, and levels are normalised to a 0.8 peak.
Workers run in threads (festival and flite are subprocesses; espeak-ng calls are serialised).
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.audio.io import resample, save
from mlx_speech.data.manifest import DataError, Item, write_manifest
from mlx_speech.data.sentences import SENTENCES
from mlx_speech.data.voices import Synthesis, Timing, Voice, available_voices, synthesize

_LEAD_S, _TAIL_S, _PEAK = 0.10, 0.15, 0.8


@dataclasses.dataclass(frozen=True)
class Job:
    index: int
    lang: str
    text: str
    voice: Voice

    @property
    def stem(self) -> str:
        return f"{self.lang}_{self.index:06d}"


def plan_jobs(langs: list[str], n: int, voices: dict[str, list[Voice]], seed: int) -> list[Job]:
    """Which sentence and voice each utterance gets (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 0x5E7])
    order = {lang: rng.permutation(len(SENTENCES[lang])) for lang in langs}
    jobs = []
    for j in range(n):
        lang = langs[j % len(langs)]
        k = j // len(langs)
        sents = SENTENCES[lang]
        text = sents[int(order[lang][k % len(sents)])]
        vs = voices[lang]
        jobs.append(Job(index=j, lang=lang, text=text, voice=vs[k % len(vs)]))
    return jobs


def _shift(timings: list[Timing] | None, start: float, end: float) -> list[Timing] | None:
    if timings is None:
        return None
    out = []
    for lab, s, e in timings:
        s, e = max(s, start) - start, min(e, end) - start
        if e > s:
            out.append((lab, round(s, 5), round(e, 5)))
    return out


def trim_and_resample(syn: Synthesis, sample_rate: int) -> Synthesis:
    """Cut silence outside the speech phones (with margins), resample, normalise the peak."""
    total = len(syn.wav) / syn.sample_rate
    speech = [(s, e) for lab, s, e in syn.phones if lab not in ("pau", "sil", "h#", "#")]
    start = max(0.0, speech[0][0] - _LEAD_S) if speech else 0.0
    end = min(total, speech[-1][1] + _TAIL_S) if speech else total
    seg = syn.wav[int(round(start * syn.sample_rate)):int(round(end * syn.sample_rate))]
    if len(seg) == 0:
        raise DataError("synthesizer produced only silence")
    seg = resample(np.ascontiguousarray(seg, dtype=np.float32), syn.sample_rate, sample_rate)
    peak = float(np.abs(seg).max())
    if peak > 0:
        seg = seg * (_PEAK / peak)
    return Synthesis(wav=seg.astype(np.float32), sample_rate=sample_rate,
                     phones=_shift(syn.phones, start, end) or [], words=_shift(syn.words, start, end))


def _make(job: Job, out_dir: Path, sample_rate: int) -> Item:
    try:
        syn = trim_and_resample(synthesize(job.voice, job.text), sample_rate)
    except DataError as exc:
        raise DataError(f"{job.stem} ({job.voice.id}): {exc}") from None
    wav_path = save(out_dir / "wavs" / f"{job.stem}.wav", syn.wav, sample_rate)
    (out_dir / "wavs" / f"{job.stem}.txt").write_text(job.text + "\n", encoding="utf-8")
    return Item(path=str(wav_path), text=job.text, lang=job.lang, speaker=job.voice.id,
                duration=round(len(syn.wav) / sample_rate, 5), sample_rate=sample_rate,
                phones=tuple(syn.phones), words=None if syn.words is None else tuple(syn.words))


def synth_corpus(out_dir: str | os.PathLike, *, langs: list[str], n: int, sample_rate: int = 16000,
                 workers: int = 2, engines: list[str] | None = None, seed: int = 0,
                 progress: bool = True) -> dict[str, Any]:
    """Generate ``n`` utterances over ``langs`` into ``out_dir``; returns a summary dict."""
    langs = list(dict.fromkeys(langs))
    unknown = [x for x in langs if x not in SENTENCES]
    if not langs or unknown:
        raise DataError(f"unsupported language {unknown[0] if unknown else '(none)'!r}; "
                        f"sentence lists exist for {', '.join(SENTENCES)}")
    if n < 1:
        raise DataError("n must be at least 1")
    if not 8000 <= sample_rate <= 48000:
        raise DataError(f"sample rate {sample_rate} outside 8000..48000 Hz")
    voices = available_voices(langs, engines)
    missing = [x for x in langs if not voices[x]]
    if missing:
        raise DataError(f"no installed synthesizer speaks {', '.join(missing)}: install festival with "
                        "festvox-hi-nsk / festvox-te-nsk, or espeak-ng (see DATA.md)")
    out = Path(out_dir)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(langs, n, voices, seed)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(jobs), unit="utt", desc="synth", dynamic_ncols=True)
    items: list[Item] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
        try:
            for item in pool.map(lambda j: _make(j, out, sample_rate), jobs):
                items.append(item)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    manifest = write_manifest(out / "manifest.jsonl", items)
    seconds = sum(it.duration or 0.0 for it in items)
    per_lang = {x: sum(1 for it in items if it.lang == x) for x in langs}
    return {"utterances": len(items), "audio_minutes": round(seconds / 60, 2), "per_language": per_lang,
            "voices": sorted({v.id for vs in voices.values() for v in vs}),
            "manifest": str(manifest), "elapsed_s": round(time.perf_counter() - t0, 2)}
