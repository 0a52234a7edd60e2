"""Intelligibility of a voice: pocketsphinx WER of our synthesis vs the teacher's own audio.

pocketsphinx (PyPI, ships an English model) is a crude recogniser: use it for relative
comparison only (ours vs the teacher on the same held-out sentences).

    mlx-speech eval tts --teacher-dir data/heldout_slt [--voice en_slt] [--out report.json]

``--teacher-dir`` is a corpus made from ``mlx_speech/assets/tts/heldout_en.txt`` (sentences
never used in training), e.g. by ``mlx_speech.train.tts_features.single_voice_corpus``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import click

import numpy as np

from mlx_speech.audio.io import load, resample
from mlx_speech.errors import UserError
from mlx_speech.text import normalize_en


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", normalize_en(text).lower().replace("-", " "))


def wer(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return int(d[len(hyp)]), len(ref)


class Recognizer:
    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder  # noqa: PLC0415
        except ImportError as exc:
            raise UserError("WER needs pocketsphinx: pip install 'mlx-speech[eval]'") from exc
        self._decoder = Decoder(samprate=16000, logfn="/dev/null")

    def __call__(self, wav: np.ndarray, sr: int) -> str:
        x = resample(wav.astype(np.float32), sr, 16000) if sr != 16000 else wav
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        return d.hyp().hypstr if d.hyp() is not None else ""


def evaluate(voice: str | None, teacher_dir: str | Path, vocoder: str = "griffin-lim") -> dict[str, Any]:
    from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415
    from mlx_speech.pipelines.synth import Synthesizer  # noqa: PLC0415

    items = read_manifest(Path(teacher_dir) / "manifest.jsonl")
    asr = Recognizer()
    syn = Synthesizer(voice, vocoder=vocoder)
    errs = {"ours": 0, "teacher": 0}
    n_words, rows, synth_s, audio_s = 0, [], 0.0, 0.0
    for it in items:
        ref = words(it.text)
        t0 = time.perf_counter()
        ours = syn.synthesize(it.text)
        synth_s += time.perf_counter() - t0
        audio_s += len(ours) / syn.sample_rate
        teacher, sr = load(it.path)
        hyp_o, hyp_t = asr(ours, syn.sample_rate), asr(teacher, sr)
        e_o, n = wer(ref, hyp_o.lower().split())
        e_t, _ = wer(ref, hyp_t.lower().split())
        errs["ours"] += e_o
        errs["teacher"] += e_t
        n_words += n
        rows.append({"text": it.text, "ours": hyp_o, "teacher": hyp_t})
    return {"sentences": len(items), "words": n_words,
            "wer_ours": round(errs["ours"] / n_words, 4), "wer_teacher": round(errs["teacher"] / n_words, 4),
            "voice": syn.voice_dir.name, "vocoder": vocoder, "synth_rtf": round(synth_s / audio_s, 4),
            "transcripts": rows}


# --- `mlx-speech eval tts` (registered by the tts family) ---------------------------------
@click.command("tts")
@click.option("--teacher-dir", required=True, type=click.Path(path_type=Path),
              help="Held-out corpus of the teacher voice (manifest.jsonl + wavs/), e.g. made from "
                   "mlx_speech/assets/tts/heldout_en.txt.")
@click.option("--voice", default=None, help="Bundled voice name or voice folder (default: the bundled English voice).")
@click.option("--vocoder", type=click.Choice(["griffin-lim", "hifigan"]), default="griffin-lim",
              show_default=True, help="Waveform generator of our synthesis.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Also write the full report (with transcripts) as JSON to this file.")
def command(teacher_dir: Path, voice: str | None, vocoder: str, out: Path | None) -> None:
    """Intelligibility of a voice: pocketsphinx WER of our synthesis vs the teacher's own audio
    on the same held-out sentences (relative comparison only)."""
    from mlx_speech.data.manifest import DataError  # noqa: PLC0415
    from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

    if not (teacher_dir / "manifest.jsonl").is_file():
        raise DataError(f"--teacher-dir: no manifest.jsonl in {teacher_dir} (make the held-out corpus "
                        "with mlx_speech.train.tts_features.single_voice_corpus)")
    res = evaluate(voice, teacher_dir, vocoder)
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=2) + "\n")
    click.echo(json.dumps({k: v for k, v in res.items() if k != "transcripts"}, indent=2))
