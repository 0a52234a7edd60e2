"""Offline synthesizers the corpus generator drives: festival, espeak-ng, flite (Debian packages).

Framework-neutral. Each :class:`Voice` synthesizes text to ``(wav, sample_rate, phones,
words)`` with phone and word timings ``(label, start_s, end_s)``:

* festival (``festival`` + voice packages, e.g. ``festvox-us-slt-hts``, ``festvox-kallpc16k``,
  ``festvox-hi-nsk``, ``festvox-te-nsk``): a batch script synthesizes the utterance, saves the
  WAV and prints the ``Segment`` end times and the ``Word`` start/end times.
* espeak-ng (``libespeak-ng.so.1`` through ctypes, phoneme events on): phoneme and word events
  carry their sample positions. The library is not re-entrant: calls are serialised.
* flite (``flite -psdur``): phones with end times; word boundaries come from a second pass
  that reads the words as separate sentences (``-ps``) and counts each word's phones (words
  are left out when the counts disagree).
"""

from __future__ import annotations

import ctypes
import dataclasses
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from mlx_speech.audio.io import load as load_audio
from mlx_speech.data.manifest import DataError

ENGINES = ("festival", "espeak", "flite")
Timing = tuple[str, float, float]

_FESTIVAL_VOICES = {  # voice -> language; found under /usr/share/festival/voices/*/<voice>
    "cmu_us_slt_arctic_hts": "en", "kal_diphone": "en", "ked_diphone": "en",
    "hindi_NSK_diphone": "hi", "telugu_NSK_diphone": "te",
}
_FESTIVAL_ROOTS = (Path("/usr/share/festival/voices"), Path("/usr/local/share/festival/voices"))
_ESPEAK_VOICES = {  # language -> (voice name, variant, words per minute, pitch 0..99)
    "en": (("en-us", "", 165, 50), ("en-us", "f2", 155, 60), ("en-gb-x-rp", "m3", 170, 40)),
    "hi": (("hi", "", 150, 50), ("hi", "f2", 145, 60)),
    "te": (("te", "", 150, 50), ("te", "f3", 145, 62)),
}
_FLITE_VOICES = ("slt", "kal16", "awb", "rms")
_TIMEOUT_S = 120


@dataclasses.dataclass(frozen=True)
class Voice:
    engine: str
    name: str
    lang: str
    variant: str = ""
    rate: int = 0
    pitch: int = 0

    @property
    def id(self) -> str:
        tail = f"_{self.variant}" if self.variant else ""
        return f"{self.engine}_{self.name}{tail}".replace("-", "_")


@dataclasses.dataclass
class Synthesis:
    wav: np.ndarray  # (T,) float32
    sample_rate: int
    phones: list[Timing]
    words: list[Timing] | None


def available_voices(langs: list[str], engines: list[str] | None = None) -> dict[str, list[Voice]]:
    """Installed voices per language among ``engines`` (default: all three)."""
    engines = list(ENGINES) if engines is None else engines
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise DataError(f"unknown synthesizer {unknown[0]!r}; choose from {', '.join(ENGINES)}")
    out: dict[str, list[Voice]] = {lang: [] for lang in langs}
    if "festival" in engines and shutil.which("festival"):
        for name, lang in _FESTIVAL_VOICES.items():
            if lang in out and any(any(r.glob(f"*/{name}")) for r in _FESTIVAL_ROOTS if r.is_dir()):
                out[lang].append(Voice("festival", name, lang))
    if "espeak" in engines and _espeak() is not None:
        for lang in out:
            for name, variant, rate, pitch in _ESPEAK_VOICES.get(lang, ()):
                out[lang].append(Voice("espeak", name, lang, variant, rate, pitch))
    if "flite" in engines and shutil.which("flite") and "en" in out:
        listed = _run(["flite", "-lv"]).stdout
        out["en"] += [Voice("flite", v, "en") for v in _FLITE_VOICES if f" {v} " in f" {listed} "]
    return out


def synthesize(voice: Voice, text: str) -> Synthesis:
    """Speak ``text`` with ``voice``; raises :class:`DataError` naming the voice on failure."""
    engines = {"festival": _festival, "espeak": _espeak_synth, "flite": _flite}
    if voice.engine not in engines:
        raise DataError(f"unknown synthesizer {voice.engine!r}")
    syn = engines[voice.engine](voice, text)
    total = len(syn.wav) / syn.sample_rate  # engines round their last end time
    syn.phones = _clamp(syn.phones, total) or []
    syn.words = _clamp(syn.words, total)
    return syn


def _clamp(timings: list[Timing] | None, total: float) -> list[Timing] | None:
    if timings is None:
        return None
    return [(lab, s, min(e, total)) for lab, s, e in timings if min(e, total) > s]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, **kw)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"{cmd[0]} failed: {exc}") from None
    if out.returncode != 0:
        msg = (out.stderr or out.stdout).strip().splitlines()
        raise DataError(f"{cmd[0]} exited with {out.returncode}: {msg[-1] if msg else 'no output'}")
    return out


def _starts(ends: list[tuple[str, float]]) -> list[Timing]:
    out, t = [], 0.0
    for label, end in ends:
        if end > t:
            out.append((label, t, end))
        t = max(t, end)
    return out


# --- festival ----------------------------------------------------------------------------------
_FESTIVAL_SCRIPT = """(voice_{voice})
(set! utt (Utterance Text "{text}"))
(utt.synth utt)
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "P\\t%s\\t%f\\n" (item.name s) (item.feat s 'end))) (utt.relation.items utt 'Segment))
(mapcar (lambda (w) (format t "W\\t%s\\t%f\\t%f\\n" (item.name w) (item.feat w 'word_start) (item.feat w 'word_end))) (utt.relation.items utt 'Word))
"""


def _festival(voice: Voice, text: str) -> Synthesis:
    safe = text.replace("\\", " ").replace('"', "")
    with tempfile.TemporaryDirectory(prefix="festival_") as tmp:
        wav_path, script = Path(tmp) / "out.wav", Path(tmp) / "say.scm"
        script.write_text(_FESTIVAL_SCRIPT.format(voice=voice.name, text=safe, wav=wav_path),
                          encoding="utf-8")
        out = _run(["festival", "-b", str(script)])
        if not wav_path.is_file():
            raise DataError(f"festival voice {voice.name} wrote no audio for {text!r}")
        wav, sr = load_audio(wav_path)
    seg_ends, words = [], []
    for line in out.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "P" and len(parts) == 3:
            seg_ends.append((parts[1], float(parts[2])))
        elif parts[0] == "W" and len(parts) == 4 and parts[1].strip():
            start, end = float(parts[2]), float(parts[3])
            if end > start:
                words.append((parts[1], start, end))
    if not seg_ends:
        raise DataError(f"festival voice {voice.name} printed no segments for {text!r}")
    return Synthesis(wav=wav, sample_rate=sr, phones=_starts(seg_ends), words=words)


# --- espeak-ng (ctypes) ------------------------------------------------------------------------
class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_EV_WORD, _EV_PHONEME, _EV_LIST_TERMINATED = 1, 7, 0
_AUDIO_OUTPUT_SYNCHRONOUS, _PHONEME_EVENTS, _CHARS_UTF8 = 2, 1, 1
_RATE, _PITCH = 1, 3
_ESPEAK: dict[str, object] = {}
_ESPEAK_LOCK = threading.Lock()


def _espeak() -> tuple[ctypes.CDLL, int] | None:
    """``(library, sample_rate)`` once initialised, or None when libespeak-ng is missing."""
    with _ESPEAK_LOCK:
        if "lib" not in _ESPEAK:
            try:
                lib = ctypes.CDLL("libespeak-ng.so.1")
            except OSError:
                _ESPEAK["lib"] = None
                return None
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _PHONEME_EVENTS)
            if sr <= 0:
                _ESPEAK["lib"] = None
                return None
            _ESPEAK.update(lib=lib, sr=sr, state={})
            _ESPEAK["callback"] = _CALLBACK(_espeak_collect)
            lib.espeak_SetSynthCallback(_ESPEAK["callback"])
        lib = _ESPEAK["lib"]
        return None if lib is None else (lib, int(_ESPEAK["sr"]))


def _espeak_collect(wav, n, events) -> int:
    state = _ESPEAK["state"]
    if n > 0:
        state["chunks"].append(np.ctypeslib.as_array(wav, (n,)).copy())
    i = 0
    while events[i].type != _EV_LIST_TERMINATED:
        e = events[i]
        if e.type in (_EV_WORD, _EV_PHONEME):
            state["events"].append((e.type, e.text_position, e.length, e.sample,
                                    e.id.decode("ascii", "replace") if e.type == _EV_PHONEME else ""))
        i += 1
    return 0


def _espeak_synth(voice: Voice, text: str) -> Synthesis:
    got = _espeak()
    if got is None:
        raise DataError("libespeak-ng.so.1 not found (apt-get install espeak-ng)")
    lib, sr = got
    name = voice.name + (f"+{voice.variant}" if voice.variant else "")
    data = text.encode("utf-8")
    with _ESPEAK_LOCK:
        _ESPEAK["state"] = {"chunks": [], "events": []}
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise DataError(f"espeak-ng has no voice {name!r}")
        lib.espeak_SetParameter(_RATE, voice.rate or 160, 0)
        lib.espeak_SetParameter(_PITCH, voice.pitch or 50, 0)
        if lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None) != 0:
            raise DataError(f"espeak-ng failed on {text!r}")
        lib.espeak_Synchronize()
        state = _ESPEAK["state"]
    if not state["chunks"]:
        raise DataError(f"espeak-ng voice {name} produced no audio for {text!r}")
    wav = np.concatenate(state["chunks"]).astype(np.float32) / 32768.0
    total = len(wav) / sr
    phon = [(lab, s / sr) for kind, _, _, s, lab in state["events"] if kind == _EV_PHONEME]
    phones = [("pau", 0.0, phon[0][1])] if phon and phon[0][1] > 0 else []  # leading silence
    for i, (lab, start) in enumerate(phon):
        end = phon[i + 1][1] if i + 1 < len(phon) else total
        if end > start:
            phones.append(("pau" if lab.startswith("_") else lab, start, end))
    speech_end = max((e for lab, _, e in phones if lab != "pau"), default=total)
    word_ev = [(pos, length, s / sr) for kind, pos, length, s, _ in state["events"] if kind == _EV_WORD]
    words = []
    for i, (pos, length, start) in enumerate(word_ev):
        nxt = word_ev[i + 1][2] if i + 1 < len(word_ev) else speech_end
        # A word ends where the next starts, or earlier where a pause begins in between.
        pauses = [s for lab, s, _ in phones if lab == "pau" and start < s < nxt]
        end = min([nxt, *pauses])
        label = text[max(pos - 1, 0):max(pos - 1, 0) + length].strip()
        if label and end > start:
            words.append((label, start, end))
    return Synthesis(wav=wav, sample_rate=sr, phones=phones, words=words)


# --- flite --------------------------------------------------------------------------------------
def _flite(voice: Voice, text: str) -> Synthesis:
    with tempfile.TemporaryDirectory(prefix="flite_") as tmp:
        wav_path = Path(tmp) / "out.wav"
        out = _run(["flite", "-voice", voice.name, "-psdur", "-t", text, "-o", str(wav_path)])
        wav, sr = load_audio(wav_path)
    ends = []
    for tok in out.stdout.split():
        label, _, end = tok.rpartition(":")
        try:
            ends.append((label, float(end)))
        except ValueError:
            continue
    phones = _starts(ends)
    return Synthesis(wav=wav, sample_rate=sr, phones=phones, words=_flite_words(voice, text, phones))


def _flite_words(voice: Voice, text: str, phones: list[Timing]) -> list[Timing] | None:
    tokens = [w.strip(".,;:!?\"'()") for w in text.split()]
    tokens = [t for t in tokens if t]
    spaced = ". ".join(tokens) + "."
    listed = _run(["flite", "-voice", voice.name, "-ps", "-t", spaced, "-o", "none"]).stdout.split()
    counts, n = [], 0
    for p in listed + ["pau"]:
        if p == "pau":
            if n:
                counts.append(n)
            n = 0
        else:
            n += 1
    speech = [p for p in phones if p[0] != "pau"]
    if len(counts) != len(tokens) or sum(counts) != len(speech):
        return None
    words, i = [], 0
    for tok, c in zip(tokens, counts):
        words.append((tok, speech[i][1], speech[i + c - 1][2]))
        i += c
    return words
