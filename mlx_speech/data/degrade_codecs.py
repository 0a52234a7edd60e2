"""Lossy codec round trips through the ``ffmpeg`` binary, aligned with their input.

Framework-free (numpy, soxr, subprocess). Audio goes to ``ffmpeg`` as raw float32 PCM on
stdin and the encoded stream comes back on stdout; a second ``ffmpeg`` decodes it the same
way, so no file is written anywhere.

Each codec runs at a sample rate it supports (chosen from the input's rate and the bit rate;
see :func:`codec_rate`); soxr resamples to it and back, and soxr's one-shot resampling is
linear-phase with its delay removed, so it adds no offset. What the codec itself adds (LAME's
encoder priming and decoder delay, which a piped MP3 stream has no header to undo; the SILK
layer of low-rate Opus) is measured once per process and per (codec, rate, bit rate) by
cross-correlating a fixed speech-like probe with its decoded copy, then removed from every
output. Measuring on a fixed probe rather than on each utterance makes the shift independent
of the content: a noisy or silent input cannot move it.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import soxr

from mlx_speech.data.degrade_ops import DegradeToolError, check_rate, check_wav, fit_length
from mlx_speech.errors import SpecError
from mlx_speech.specs.degrade import CODEC_NAMES, KBPS_LIMITS

__all__ = ["codec", "codec_rate", "ffmpeg_path"]

# The rates each encoder accepts, and for MP3 and Vorbis the bit rates (kbps) they accept
# there: MPEG-1/2/2.5 layer III tables; libvorbis's managed-bitrate modes as its setup accepts
# them (probed with Debian's ffmpeg 5.1 / libvorbis 1.3.7).
_MP3_RATES = ((48000, 32, 320), (44100, 32, 320), (32000, 32, 320), (24000, 8, 160),
              (22050, 8, 160), (16000, 8, 160), (12000, 8, 64), (11025, 8, 64), (8000, 8, 64))
_VORBIS_RATES = ((48000, 32, 192), (44100, 32, 192), (32000, 32, 160), (24000, 16, 80),
                 (22050, 16, 80), (16000, 16, 96), (12000, 12, 48), (11025, 12, 48),
                 (8000, 8, 40))
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_TELEPHONE_RATE = 8000  # mu-law (G.711) and GSM 06.10 are defined at 8 kHz
# encoder, muxer / demuxer format of each codec
_FFMPEG = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg"),
           "vorbis": ("libvorbis", "ogg"), "mulaw": ("pcm_mulaw", "mulaw"),
           "gsm": ("libgsm", "gsm")}
_PROBE_SECONDS = 1.0
_MAX_DELAY_S = 0.25  # the probe's search window; LAME's 1105 samples at 8 kHz are 0.14 s
_DELAYS: dict[tuple[str, int, float | None], int] = {}  # filled on first use, per process


def ffmpeg_path() -> str:
    """The ``ffmpeg`` executable on ``PATH``, or :class:`DegradeToolError` saying how to get it."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DegradeToolError("ffmpeg not found on PATH: the codec degradations run it "
                               "(Debian/Ubuntu: apt-get install ffmpeg)")
    return exe


def _check_kbps(name: str, kbps: float | None) -> float | None:
    if name not in CODEC_NAMES:
        raise SpecError(f"codec: unknown codec {name!r}; known: {', '.join(CODEC_NAMES)}")
    if name not in KBPS_LIMITS:
        if kbps is not None:
            raise SpecError(f"codec {name}: its bit rate is fixed, got kbps={kbps!r}")
        return None
    lo, hi = KBPS_LIMITS[name]
    if kbps is None:
        kbps = {"mp3": 32.0, "opus": 12.0, "vorbis": 32.0}[name]
    if (isinstance(kbps, bool) or not isinstance(kbps, (int, float, np.integer, np.floating))
            or not lo <= float(kbps) <= hi):
        raise SpecError(f"codec {name}: kbps must be a number in {lo:g}..{hi:g}, got {kbps!r}")
    return float(kbps)


def codec_rate(name: str, sr: int, kbps: float | None = None) -> int:
    """The sample rate ``name`` runs at for audio at ``sr`` and ``kbps``.

    MP3 and Vorbis: the highest rate at or below ``sr`` whose encoder mode accepts ``kbps``, so
    a low bit rate also lowers the bandwidth as those encoders would; Opus: the lowest of its
    rates at or above ``sr`` (48 kHz at most), its bandwidth follows the bit rate by itself;
    mu-law and GSM: 8 kHz. :class:`SpecError` when no rate fits.
    """
    kbps = _check_kbps(name, kbps)
    if name in ("mulaw", "gsm"):
        return _TELEPHONE_RATE
    if name == "opus":
        return next((r for r in _OPUS_RATES if r >= sr), _OPUS_RATES[-1])
    table = _MP3_RATES if name == "mp3" else _VORBIS_RATES
    for rate, lo, hi in table:
        if rate <= sr and lo <= kbps <= hi:
            return rate
    raise SpecError(f"codec {name}: {kbps:g} kbps is not possible at or below {sr} Hz")


def _run(args: list[str], data: bytes, what: str, seconds: float) -> bytes:
    cmd = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    try:
        out = subprocess.run(cmd, input=data, capture_output=True, check=False,
                             timeout=60 + 10 * seconds)
    except subprocess.TimeoutExpired:
        raise DegradeToolError(f"ffmpeg timed out while {what}") from None
    except OSError as exc:
        reason = exc.strerror or exc
        raise DegradeToolError(f"could not run ffmpeg ({reason}) while {what}") from None
    if out.returncode != 0:
        lines = out.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[0] if lines else f"exit status {out.returncode}"
        raise DegradeToolError(f"ffmpeg failed while {what}: {reason}")
    return out.stdout


def _round_trip(x: np.ndarray, name: str, rate: int, kbps: float | None) -> np.ndarray:
    """Encode ``x`` (float32 at ``rate``) with ``name`` and decode it; unaligned, any length."""
    encoder, fmt = _FFMPEG[name]
    seconds = x.size / rate
    raw = ["-f", "f32le", "-ar", str(rate), "-ac", "1"]
    bitrate = [] if kbps is None else ["-b:a", f"{round(kbps * 1000)}"]
    what = f"encoding {name}" + ("" if kbps is None else f" at {kbps:g} kbps")
    coded = _run([*raw, "-i", "pipe:0", "-c:a", encoder, *bitrate, "-f", fmt, "pipe:1"],
                 np.ascontiguousarray(x, dtype="<f4").tobytes(), what, seconds)
    # Raw telephone streams carry no header: their rate and channels are given to the demuxer.
    head = ["-f", fmt] + (["-ar", str(rate), "-ac", "1"] if name in ("mulaw", "gsm") else [])
    pcm = _run([*head, "-i", "pipe:0", *raw, "pipe:1"], coded, f"decoding {name}", seconds)
    return np.frombuffer(pcm, dtype="<f4").astype(np.float32)


def _lag(ref: np.ndarray, out: np.ndarray, max_lag: int) -> int:
    """The shift of ``out`` against ``ref`` (positive: ``out`` is late) at the correlation peak."""
    n = ref.size + out.size
    corr = np.fft.irfft(np.fft.rfft(out, n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.r_[0:max_lag + 1, -max_lag:0]
    return int(lags[np.argmax(corr[lags])])


def _delay(name: str, rate: int, kbps: float | None) -> int:
    """The codec's own delay in samples at ``rate``, measured once on a fixed probe."""
    key = (name, rate, kbps)
    if key not in _DELAYS:
        from mlx_speech.audio.synth import speechlike  # noqa: PLC0415

        probe = speechlike(rate, _PROBE_SECONDS, seed=0).astype(np.float64)
        decoded = _round_trip(probe.astype(np.float32), name, rate, kbps).astype(np.float64)
        _DELAYS[key] = _lag(probe, decoded, int(_MAX_DELAY_S * rate)) if decoded.size else 0
    return _DELAYS[key]


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)


def codec(wav: np.ndarray, sr: int, name: str, kbps: float | None = None) -> np.ndarray:
    """``wav`` (T,) float32 at ``sr`` through codec ``name`` and back: (T,) float32, aligned.

    ``name`` is one of mp3, opus, vorbis (at ``kbps``, a default when ``None``), mulaw, gsm
    (fixed rates; ``kbps`` must be ``None``). Samples beyond [-1, 1] are clipped by the
    encoders that work on integers (mu-law, GSM). The output has the input's length and is
    aligned with it (the codec's delay removed, see the module docstring).
    """
    x = check_wav(wav, "codec")
    sr = check_rate(sr, "codec")
    kbps = _check_kbps(name, kbps)
    rate = codec_rate(name, sr, kbps)
    delay = _delay(name, rate, kbps)
    inner = _resample(x, sr, rate)
    decoded = _round_trip(inner, name, rate, kbps)
    aligned = fit_length(decoded, inner.size, delay)
    out = fit_length(_resample(aligned, rate, sr), x.size)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
