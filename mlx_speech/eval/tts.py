"""A voice against its teacher: pocketsphinx WER, mel-cepstral distortion and DNSMOS of the
teacher's audio, our synthesis through Griffin-Lim and through the neural vocoder.

pocketsphinx (PyPI, ships an English model) is a crude recogniser: use it for relative
comparison only (ours vs the teacher on the same held-out sentences); no offline recogniser
exists here for Hindi or Telugu, so their voices get MCD and DNSMOS only.

    mlx-speech eval tts --teacher-dir data/heldout_slt [--voice en_slt] [--out report.json] [--markdown]

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
        # Batch cepstral mean normalisation (the mean of the whole utterance): with the default
        # live CMN the mean carries over from utterance to utterance, so a transcript depended on
        # what had been recognised before it (and the first call differed from later ones).
        self._decoder = Decoder(samprate=16000, logfn="/dev/null", cmn="batch")

    def __call__(self, wav: np.ndarray, sr: int) -> str:
        x = resample(wav.astype(np.float32), sr, 16000) if sr != 16000 else wav
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        return d.hyp().hypstr if d.hyp() is not None else ""


def _mean(xs: list[float]) -> float | None:
    return round(float(np.mean(xs)), 4) if xs else None


def evaluate(voice: str | None, teacher_dir: str | Path, vocoders: tuple[str, ...] | None = None, *,
             wer_on: bool | None = None, mcd_on: bool = True, dnsmos_on: bool = True,
             max_items: int = 0, progress: bool = False) -> dict[str, Any]:
    """Teacher audio vs our synthesis through each of ``vocoders`` (default: griffin-lim, and
    neural where the voice ships one) on the same held-out sentences.

    Per system: pocketsphinx WER (English only unless ``wer_on``), mean mel-cepstral distortion
    against the teacher's audio of the same sentence (DTW-aligned; the teacher's own row is 0 by
    definition and left out), mean DNSMOS P.835 OVRL / SIG / BAK and P.808; and our synthesis's
    real-time factor on this machine."""
    from mlx_speech.audio.quality import dnsmos, mcd  # noqa: PLC0415
    from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415
    from mlx_speech.pipelines.synth import Synthesizer  # noqa: PLC0415

    items = read_manifest(Path(teacher_dir) / "manifest.jsonl")
    items = items[:max_items] if max_items else items
    base = Synthesizer(voice, vocoder="griffin-lim")
    if vocoders is None:
        vocoders = ("griffin-lim", "neural") if base.own_vocoder() is not None else ("griffin-lim",)
    syns = {v: (base if v == "griffin-lim" else Synthesizer(voice, vocoder=v)) for v in vocoders}
    wer_on = base.language == "en" if wer_on is None else wer_on
    asr = Recognizer() if wer_on else None
    names = ("teacher", *vocoders)
    acc: dict[str, dict[str, Any]] = {n: {"err": 0, "mcd": [], "ovrl": [], "sig": [], "bak": [], "p808": [],
                                          "synth_s": 0.0, "audio_s": 0.0} for n in names}
    n_words, rows = 0, []
    it = items
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        it = tqdm(items, desc="eval tts", unit="sentence")
    for item in it:
        teacher, t_sr = load(item.path)
        audio = {"teacher": (teacher, t_sr)}
        for v, syn in syns.items():
            t0 = time.perf_counter()
            wav = syn.synthesize(item.text)
            acc[v]["synth_s"] += time.perf_counter() - t0
            acc[v]["audio_s"] += len(wav) / syn.sample_rate
            audio[v] = (wav, syn.sample_rate)
        ref = words(item.text) if wer_on else []
        n_words += len(ref)
        row: dict[str, Any] = {"text": item.text}
        for name, (wav, sr) in audio.items():
            a = acc[name]
            if asr is not None:
                hyp = asr(wav, sr)
                a["err"] += wer(ref, hyp.lower().split())[0]
                row[name] = hyp
            if mcd_on and name != "teacher":
                a["mcd"].append(mcd(teacher, t_sr, wav, sr))
            if dnsmos_on:
                for k, v in dnsmos(wav, sr).items():
                    a[k].append(v)
        rows.append(row)
    table = {}
    for name in names:
        a = acc[name]
        table[name] = {"wer": round(a["err"] / n_words, 4) if asr is not None and n_words else None,
                       "mcd_db": _mean(a["mcd"]), "dnsmos_ovrl": _mean(a["ovrl"]), "dnsmos_sig": _mean(a["sig"]),
                       "dnsmos_bak": _mean(a["bak"]), "dnsmos_p808": _mean(a["p808"]),
                       "synth_rtf": round(a["synth_s"] / a["audio_s"], 4) if a["audio_s"] else None}
    return {"voice": base.voice_dir.name, "language": base.language, "sentences": len(items),
            "words": n_words if asr is not None else None, "systems": table, "transcripts": rows}


def markdown_table(report: dict[str, Any]) -> str:
    """The report's systems as a Markdown table (for the README)."""
    head = "| | WER | MCD (dB) | DNSMOS OVRL | SIG | BAK | P.808 |\n|---|---|---|---|---|---|---|"
    fmt = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"| {name} | {fmt(r['wer'], 3)} | {fmt(r['mcd_db'], 2)} | {fmt(r['dnsmos_ovrl'], 2)} | "
             f"{fmt(r['dnsmos_sig'], 2)} | {fmt(r['dnsmos_bak'], 2)} | {fmt(r['dnsmos_p808'], 2)} |"
             for name, r in report["systems"].items()]
    return "\n".join([head, *lines])


# --- `mlx-speech eval tts` (registered by the tts family) ---------------------------------
@click.command("tts")
@click.option("--teacher-dir", required=True, type=click.Path(path_type=Path),
              help="Held-out corpus of the teacher voice (manifest.jsonl + wavs/), e.g. made from "
                   "mlx_speech/assets/tts/heldout_en.txt.")
@click.option("--voice", default=None, help="Bundled voice name or voice folder (default: the bundled English voice).")
@click.option("--vocoder", "vocoders", type=click.Choice(["griffin-lim", "neural"]), multiple=True,
              help="Waveform generator(s) of our synthesis (repeat for several; default: griffin-lim, "
                   "and neural where the voice ships one).")
@click.option("--no-wer", is_flag=True, help="Skip pocketsphinx WER (English only in any case).")
@click.option("--no-mcd", is_flag=True, help="Skip mel-cepstral distortion against the teacher.")
@click.option("--no-dnsmos", is_flag=True, help="Skip DNSMOS.")
@click.option("--max-items", type=click.IntRange(0), default=0, show_default=True, help="First N sentences (0: all).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Also write the full report (with transcripts) as JSON to this file.")
@click.option("--markdown", is_flag=True, help="Print the table as Markdown instead of JSON.")
def command(teacher_dir: Path, voice: str | None, vocoders: tuple[str, ...], no_wer: bool, no_mcd: bool,
            no_dnsmos: bool, max_items: int, out: Path | None, markdown: bool) -> None:
    """Teacher vs our synthesis (Griffin-Lim and / or neural vocoder) on the same held-out
    sentences: pocketsphinx WER (relative comparison only), MCD against the teacher, DNSMOS."""
    from mlx_speech.data.manifest import DataError  # noqa: PLC0415
    from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

    if not (teacher_dir / "manifest.jsonl").is_file():
        raise DataError(f"--teacher-dir: no manifest.jsonl in {teacher_dir} (make the held-out corpus "
                        "with mlx_speech.train.tts_features.single_voice_corpus)")
    res = evaluate(voice, teacher_dir, tuple(dict.fromkeys(vocoders)) or None, wer_on=False if no_wer else None,
                   mcd_on=not no_mcd, dnsmos_on=not no_dnsmos, max_items=max_items, progress=not markdown)
    if out is not None:
        atomic_write_text(out, json.dumps(res, indent=2) + "\n")
    if markdown:
        click.echo(markdown_table(res))
    else:
        click.echo(json.dumps({k: v for k, v in res.items() if k != "transcripts"}, indent=2))
