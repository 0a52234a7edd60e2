"""The sample-level degradations: noise at an SNR, band limits, clipping, gain, packet loss.

Framework-free (numpy, scipy, soxr). Every function takes mono audio ``(T,)`` and returns a new
float32 array of the same length, aligned with the input; the input is never modified. Random
draws come only from the ``numpy.random.Generator`` passed in, so a seeded generator gives the
same output bit for bit. Bad audio (empty, NaN / Inf, not 1-D, not numeric) is an
:class:`~mlx_speech.errors.AudioError`, a nonsense parameter a
:class:`~mlx_speech.errors.SpecError`, each one line naming the function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import soxr

from mlx_speech.audio.checks import mono
from mlx_speech.errors import AudioError, SpecError, UserError

__all__ = ["MAX_RATE", "MIN_RATE", "DegradeToolError", "add_noise", "band_limit", "clip",
           "colored_noise", "gain", "packet_loss"]

MIN_RATE, MAX_RATE = 8000, 192000  # the degradations assume at least a telephone band
_STOP_DB = 80.0  # stop-band attenuation of the low-pass filters
_SLOPES = {"white": 0.0, "pink": 0.5, "brown": 1.0}  # amplitude ~ f ** -slope


class DegradeToolError(UserError, RuntimeError):
    """A program or package a degradation needs is missing or failed (ffmpeg, pyroomacoustics)."""


# --- input checks ---------------------------------------------------------------------------
def check_wav(wav: object, what: str) -> np.ndarray:
    """``wav`` as a new float32 ``(T,)`` array, or :class:`AudioError` saying what is wrong."""
    return mono(wav, what)


def check_rate(sr: object, what: str) -> int:
    """An integer sample rate in ``MIN_RATE..MAX_RATE``, else :class:`AudioError`."""
    ok = isinstance(sr, (int, np.integer)) and not isinstance(sr, bool)
    if not ok or not MIN_RATE <= int(sr) <= MAX_RATE:
        raise AudioError(f"{what}: unsupported sample rate {sr!r} (expected an integer in "
                         f"{MIN_RATE}..{MAX_RATE} Hz)")
    return int(sr)


def check_number(value: object, what: str, lo: float, hi: float) -> float:
    """A finite real in ``[lo, hi]``, else :class:`SpecError` naming ``what``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise SpecError(f"{what} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def check_rng(rng: object, what: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{what}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def fit_length(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """``x[start:start + n]`` as float32, zero-padded where it runs out (``start`` may be < 0)."""
    out = np.zeros(n, dtype=np.float32)
    lo, hi = max(start, 0), min(start + n, x.size)
    if hi > lo:
        out[lo - start:hi - start] = x[lo:hi]
    return out


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


# --- noise -----------------------------------------------------------------------------------
def colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-power float64 noise: white, pink (power ~ 1/f) or brown (~ 1/f^2).

    Pink and brown shape white Gaussian noise in the frequency domain (amplitude
    ``f ** -1/2`` or ``f ** -1``, no DC), so their slope is exact down to the lowest bin rather
    than approximated by a filter bank.
    """
    if kind not in _SLOPES:
        raise SpecError(f"colored_noise: kind must be one of {', '.join(_SLOPES)}, got {kind!r}")
    white = rng.standard_normal(n)
    if _SLOPES[kind] and n > 2:
        spectrum = np.fft.rfft(white)
        bins = np.arange(spectrum.size, dtype=np.float64)
        bins[0] = 1.0
        spectrum *= bins ** -_SLOPES[kind]
        spectrum[0] = 0.0
        shaped = np.fft.irfft(spectrum, n)
        white = shaped if _power(shaped) > 0 else white
    return white / math.sqrt(max(_power(white), 1e-30))


def babble_noise(n: int, utterances: Sequence[np.ndarray], talkers: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``talkers`` utterances (each from a random start, looped to ``n`` samples, at unit
    power) summed: the crowd of voices behind a speaker."""
    total = np.zeros(n, dtype=np.float64)
    for _ in range(talkers):
        u = np.asarray(utterances[int(rng.integers(len(utterances)))], dtype=np.float64)
        start = int(rng.integers(u.size))
        talk = np.resize(np.roll(u, -start), n)
        p = _power(talk)
        if p > 0:
            total += talk / math.sqrt(p)
    return total


def add_noise(wav: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator,
              babble: Sequence[np.ndarray] = (), talkers: int = 4) -> np.ndarray:
    """``wav`` plus ``kind`` noise (white, pink, brown, babble) at ``snr_db``.

    The SNR is the input's mean power over the added noise's mean power, over the whole clip.
    Babble draws ``talkers`` utterances from ``babble`` (1-D arrays at the same rate). A silent
    input (power 0) has no SNR to meet and comes back unchanged.
    """
    x = check_wav(wav, "add_noise")
    snr = check_number(snr_db, "add_noise: snr_db", -100.0, 200.0)
    check_rng(rng, "add_noise")
    if kind == "babble":
        if not babble:
            raise SpecError("add_noise: babble noise needs utterances (babble=...), got none")
        if isinstance(talkers, bool) or not isinstance(talkers, (int, np.integer)) or talkers < 1:
            raise SpecError(f"add_noise: talkers must be an integer >= 1, got {talkers!r}")
        utterances = [check_wav(u, f"add_noise: babble utterance {i}")
                      for i, u in enumerate(babble)]
        noise = babble_noise(x.size, utterances, int(talkers), rng)
    elif kind in _SLOPES:
        noise = colored_noise(x.size, kind, rng)
    else:
        raise SpecError(f"add_noise: kind must be one of white, pink, brown, babble, got {kind!r}")
    signal, p_noise = _power(x), _power(noise)
    if signal == 0 or p_noise == 0:
        return x
    noise *= math.sqrt(signal / (p_noise * 10.0 ** (snr / 10.0)))
    return (x + noise).astype(np.float32)


# --- band limits ------------------------------------------------------------------------------
def _lowpass_taps(sr: int, cutoff_hz: float) -> np.ndarray:
    """A linear-phase Kaiser FIR (odd length) whose stop band starts at ``cutoff_hz``.

    The transition band lies below the cutoff (10 % of it, or less near Nyquist), so nothing
    above the stated band limit passes: the stop band is ``_STOP_DB`` down from there on.
    """
    from scipy import signal  # noqa: PLC0415

    nyquist = sr / 2
    width = min(0.1 * cutoff_hz, 0.5 * (nyquist - cutoff_hz), 0.5 * cutoff_hz)
    numtaps, beta = signal.kaiserord(_STOP_DB, width / nyquist)
    numtaps |= 1
    return signal.firwin(numtaps, cutoff_hz - width / 2, window=("kaiser", beta), fs=sr)


def band_limit(wav: np.ndarray, sr: int, cutoff_hz: float | None = None, *,
               via_rate: int | None = None) -> np.ndarray:
    """Remove everything above a band limit: a low-pass at ``cutoff_hz`` or a trip through
    ``via_rate`` (give exactly one).

    ``via_rate`` resamples down and back up with soxr HQ (what a recording stored at that rate
    would be); ``cutoff_hz`` convolves with a linear-phase FIR centred on each sample, so
    neither shifts the signal in time.
    """
    from scipy import signal  # noqa: PLC0415

    x = check_wav(wav, "band_limit")
    sr = check_rate(sr, "band_limit")
    if (cutoff_hz is None) == (via_rate is None):
        raise SpecError("band_limit: give exactly one of cutoff_hz and via_rate")
    if via_rate is not None:
        if isinstance(via_rate, bool) or not isinstance(via_rate, (int, np.integer)) \
                or not 1000 <= via_rate < sr:
            raise SpecError(f"band_limit: via_rate must be an integer rate in 1000..{sr - 1} Hz "
                            f"(below the audio's {sr} Hz), got {via_rate!r}")
        down = soxr.resample(x, sr, int(via_rate), quality="HQ")
        return fit_length(soxr.resample(down, int(via_rate), sr, quality="HQ"), x.size)
    cutoff = check_number(cutoff_hz, "band_limit: cutoff_hz", 1.0, sr / 2)
    if cutoff >= sr / 2:
        raise SpecError(f"band_limit: cutoff_hz must be below the Nyquist frequency "
                        f"{sr / 2:g} Hz, got {cutoff_hz!r}")
    taps = _lowpass_taps(sr, cutoff)
    return signal.fftconvolve(x.astype(np.float64), taps, mode="same").astype(np.float32)


# --- level, clipping, losses ---------------------------------------------------------------------
def clip(wav: np.ndarray, level: float) -> np.ndarray:
    """Hard clipping at ``level`` (in (0, 1]) times the input's peak magnitude."""
    x = check_wav(wav, "clip")
    level = check_number(level, "clip: level", 0.0, 1.0)
    if level == 0:
        raise SpecError("clip: level must be above 0 (a fraction of the peak), got 0")
    limit = np.float32(level * float(np.max(np.abs(x))))
    return np.clip(x, -limit, limit)


def gain(wav: np.ndarray, db: float) -> np.ndarray:
    """``wav`` scaled by ``db`` decibels (amplitude ``10 ** (db / 20)``); nothing is clipped."""
    x = check_wav(wav, "gain")
    db = check_number(db, "gain: db", -200.0, 200.0)
    return (x.astype(np.float64) * 10.0 ** (db / 20.0)).astype(np.float32)


def packet_loss(wav: np.ndarray, sr: int, rate: float, packet_ms: float,
                rng: np.random.Generator) -> np.ndarray:
    """Split ``wav`` into packets of ``packet_ms`` and zero ``round(rate * packets)`` of them,
    chosen at random (a jitter buffer without concealment)."""
    x = check_wav(wav, "packet_loss")
    sr = check_rate(sr, "packet_loss")
    rate = check_number(rate, "packet_loss: rate", 0.0, 1.0)
    ms = check_number(packet_ms, "packet_loss: packet_ms", 0.1, 10_000.0)
    check_rng(rng, "packet_loss")
    size = max(1, round(ms * sr / 1000))
    packets = -(-x.size // size)
    lost = rng.choice(packets, size=round(rate * packets), replace=False)
    for p in np.sort(lost):
        x[p * size:(p + 1) * size] = 0.0
    return x
