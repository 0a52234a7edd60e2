"""Datasets as lists of :class:`Item`: JSONL manifests, audio folders, the LJSpeech layout.

Framework-neutral (numpy + soundfile; imports neither mlx nor torch).

JSONL manifest, one utterance per line (``path`` relative to the manifest's directory or
absolute; every other key optional)::

    {"path": "wavs/en_000001.wav", "text": "Hello there.", "lang": "en",
     "speaker": "festival_slt", "duration": 1.52, "sample_rate": 16000,
     "phones": [["pau", 0.0, 0.12], ["hh", 0.12, 0.19], ...],
     "words": [["Hello", 0.12, 0.48], ...]}

Timings are ``[label, start_s, end_s]`` triples. ``degraded`` (optional, resolved like
``path``) names a degraded copy of the utterance, for restoration evaluation on fixed pairs.
Problems name the file and line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import soundfile as sf

from mlx_speech.errors import UserError
from mlx_speech.utils.atomic import atomic_write_text

T = TypeVar("T")

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
_KNOWN_KEYS = {"path", "text", "lang", "speaker", "duration", "sample_rate", "phones", "words",
               "degraded"}


class DataError(UserError, ValueError):
    """A dataset, manifest or corpus that cannot be used as given."""


Timing = tuple[str, float, float]


@dataclasses.dataclass(frozen=True)
class Item:
    """One utterance. ``path`` is absolute; ``duration`` in seconds."""

    path: str
    text: str = ""
    lang: str | None = None
    speaker: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    phones: tuple[Timing, ...] | None = None
    words: tuple[Timing, ...] | None = None
    degraded: str | None = None  # absolute, like path

    def to_json(self, root: Path | None = None) -> dict[str, Any]:
        """The manifest line (``path`` relative to ``root`` when it lies below it)."""
        out: dict[str, Any] = {"path": _relative(self.path, root), "text": self.text}
        for key in ("lang", "speaker", "duration", "sample_rate"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("phones", "words"):
            if getattr(self, key) is not None:
                out[key] = [[lab, round(s, 5), round(e, 5)] for lab, s, e in getattr(self, key)]
        if self.degraded is not None:
            out["degraded"] = _relative(self.degraded, root)
        return out


def _relative(path: str, root: Path | None) -> str:
    """``path`` relative to ``root`` when it lies below it, else as given."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path


def _timings(value: Any, where: str) -> tuple[Timing, ...]:
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a list of [label, start, end], got {type(value).__name__}")
    out = []
    for i, t in enumerate(value):
        ok = (isinstance(t, (list, tuple)) and len(t) == 3 and isinstance(t[0], str)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t[1:]))
        if not ok or not 0 <= t[1] <= t[2]:
            raise DataError(f"{where}[{i}]: expected [label, start, end] with 0 <= start <= end, got {t!r}")
        out.append((t[0], float(t[1]), float(t[2])))
    return tuple(out)


def _item_from_json(obj: Any, root: Path, where: str) -> Item:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KNOWN_KEYS)
    if unknown:
        raise DataError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(_KNOWN_KEYS))}")
    if not isinstance(obj.get("path"), str) or not obj["path"]:
        raise DataError(f"{where}: 'path' (a non-empty string) is required")
    for key in ("text", "lang", "speaker", "degraded"):
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            raise DataError(f"{where}: {key!r} must be a string, got {obj[key]!r}")
    duration = obj.get("duration")
    if duration is not None and (not isinstance(duration, (int, float)) or duration <= 0):
        raise DataError(f"{where}: 'duration' must be a positive number, got {duration!r}")
    path = Path(obj["path"])
    path = path if path.is_absolute() else root / path
    degraded = Path(obj["degraded"]) if obj.get("degraded") else None
    if degraded is not None and not degraded.is_absolute():
        degraded = root / degraded
    return Item(
        path=str(path), text=obj.get("text") or "", lang=obj.get("lang"), speaker=obj.get("speaker"),
        duration=None if duration is None else float(duration), sample_rate=obj.get("sample_rate"),
        phones=_timings(obj["phones"], f"{where}.phones") if obj.get("phones") is not None else None,
        words=_timings(obj["words"], f"{where}.words") if obj.get("words") is not None else None,
        degraded=None if degraded is None else str(degraded),
    )


def read_jsonl(path: str | os.PathLike, parse: Callable[[Any, Path, str], T], *,
               what: str = "manifest", unit: str = "items") -> list[T]:
    """``parse(obj, folder, where)`` of every line of a JSONL file (blank lines skipped);
    ``where`` is ``file:line`` for messages. Missing file, bad JSON and an empty file are one
    DataError line naming ``what``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found: {p}")
    out = []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}:{n}: invalid JSON ({exc.msg})") from None
            out.append(parse(obj, p.parent, f"{p}:{n}"))
    if not out:
        raise DataError(f"{what} {p} has no {unit}")
    return out


def read_manifest(path: str | os.PathLike) -> list[Item]:
    """Items of a JSONL manifest; blank lines are skipped."""
    return read_jsonl(path, _item_from_json)


def write_manifest(path: str | os.PathLike, items: Iterable[Item]) -> Path:
    """Write items as JSONL (paths relative to the manifest's directory), atomically."""
    p = Path(path)
    lines = [json.dumps(it.to_json(p.parent), ensure_ascii=False) for it in items]
    atomic_write_text(p, "\n".join(lines) + "\n")
    return p


def scan_folder(path: str | os.PathLike, *, lang: str | None = None) -> list[Item]:
    """Audio files below ``path`` (recursive); text from a ``.txt`` file of the same stem;
    the speaker is the file's parent directory relative to ``path`` (None at top level)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"audio folder not found: {root}")
    items = []
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() not in AUDIO_EXTENSIONS or f.name.startswith("."):
            continue
        txt = f.with_suffix(".txt")
        rel = f.parent.relative_to(root).as_posix()
        items.append(Item(path=str(f), text=txt.read_text(encoding="utf-8").strip() if txt.is_file() else "",
                          lang=lang, speaker=None if rel == "." else rel))
    if not items:
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}")
    return items


def read_ljspeech(path: str | os.PathLike, *, lang: str | None = "en") -> list[Item]:
    """The LJSpeech layout: ``metadata.csv`` rows ``id|text|normalized text`` and
    ``wavs/<id>.wav``; the normalised text is used when present."""
    root = Path(path)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise DataError(f"LJSpeech layout needs {meta}")
    items = []
    with open(meta, encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE), 1):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise DataError(f"{meta}:{n}: expected 'id|text[|normalized text]', got {'|'.join(row)!r}")
            wav = root / "wavs" / f"{row[0].strip()}.wav"
            if not wav.is_file():
                raise DataError(f"{meta}:{n}: audio file not found: {wav}")
            text = row[2] if len(row) > 2 and row[2].strip() else row[1]
            items.append(Item(path=str(wav), text=text.strip(), lang=lang, speaker=root.name))
    if not items:
        raise DataError(f"{meta} lists no utterances")
    return items


def with_audio_info(items: list[Item]) -> list[Item]:
    """Fill in ``duration`` and ``sample_rate`` from the file headers where missing."""
    out = []
    for it in items:
        if it.duration is not None and it.sample_rate is not None:
            out.append(it)
            continue
        if not Path(it.path).is_file():
            raise DataError(f"audio file not found: {it.path}")
        try:
            meta = sf.info(it.path)
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            raise DataError(f"cannot read audio file {it.path}: {' '.join(str(exc).split())}") from None
        if meta.frames <= 0:
            raise DataError(f"audio file {it.path} is empty")
        out.append(dataclasses.replace(it, duration=meta.frames / meta.samplerate,
                                       sample_rate=int(meta.samplerate)))
    return out


def load_source(kind: str, path: str, *, lang: str | None = None,
                langs: list[str] | None = None) -> list[Item]:
    """Items of one source (``manifest`` | ``folder`` | ``ljspeech``), headers read, filtered by
    ``langs``; ``lang`` fills in items without a language."""
    if kind == "manifest":
        items = read_manifest(path)
    elif kind == "folder":
        items = scan_folder(path, lang=lang)
    elif kind == "ljspeech":
        items = read_ljspeech(path, lang=lang or "en")
    else:
        raise DataError(f"unknown source kind {kind!r}; use manifest, folder or ljspeech")
    if lang is not None:
        items = [it if it.lang else dataclasses.replace(it, lang=lang) for it in items]
    if langs is not None:
        items = [it for it in items if it.lang in langs]
        if not items:
            raise DataError(f"{path}: no items in languages {', '.join(langs)}")
    return with_audio_info(items)
