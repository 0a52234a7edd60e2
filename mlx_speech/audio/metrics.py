"""Objective audio quality metrics (numpy; PESQ / STOI through the ``pesq`` / ``pystoi`` packages).

All metrics take a reference and an estimate of the same rank, ``(T,)`` or ``(B, T)``
(array-likes: numpy, MLX and CPU torch arrays convert). If lengths differ both are trimmed to
the shorter; a rank / batch mismatch, empty or non-finite input raises
:class:`~mlx_speech.errors.AudioError`. A 1-D pair gives a Python float, a batch gives a
``(B,)`` float64 array.

Spectral metrics use a numpy STFT with the project's conventions (periodic Hann, centred
frames with reflect padding; see :mod:`mlx_speech.audio.spectral`).
"""

from __future__ import annotations

import numpy as np

from mlx_speech.audio.filters import check_frame_args, mel_filterbank, padded_window
from mlx_speech.errors import AudioError, UserError

__all__ = [
    "snr", "si_sdr", "log_spectral_distance", "mel_distance", "spectral_convergence",
    "pesq_score", "stoi_score",
]

_TINY = 1e-20  # keeps ratios finite: identical signals score ~ +200 dB instead of +inf


def _pair(ref, est, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate and trim a (ref, est) pair to float64 (B, T) arrays."""
    try:
        r = np.asarray(ref, dtype=np.float64)
        e = np.asarray(est, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise AudioError(f"{name}: inputs must be numeric arrays ({' '.join(str(err).split())})") from None
    if r.ndim != e.ndim or r.ndim not in (1, 2):
        raise AudioError(f"{name}: ref and est must both be (T,) or (B, T), got shapes {r.shape} and {e.shape}")
    if r.ndim == 2 and r.shape[0] != e.shape[0]:
        raise AudioError(f"{name}: batch sizes differ, ref {r.shape} vs est {e.shape}")
    n = min(r.shape[-1], e.shape[-1])
    if n == 0:
        raise AudioError(f"{name}: empty input (shapes {r.shape} and {e.shape})")
    r, e = r[..., :n], e[..., :n]
    if not (np.isfinite(r).all() and np.isfinite(e).all()):
        raise AudioError(f"{name}: inputs contain NaN or Inf")
    return np.atleast_2d(r), np.atleast_2d(e)


def _out(values: np.ndarray, batched: bool):
    return values if batched else float(values[0])


def _db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(num, _TINY) / np.maximum(den, _TINY))


def snr(ref, est):
    """Signal-to-noise ratio ``10 log10(|ref|^2 / |ref - est|^2)`` in dB (not scale-invariant)."""
    r, e = _pair(ref, est, "snr")
    return _out(_db((r**2).sum(-1), ((r - e) ** 2).sum(-1)), np.ndim(ref) == 2)


def si_sdr(ref, est, *, zero_mean: bool = True):
    """Scale-invariant SDR (Le Roux et al., 2019) in dB.

    ``est`` is split into ``a * ref`` (its projection on ``ref``) plus the rest; the score is
    ``10 log10(|a ref|^2 / |est - a ref|^2)``. Both are mean-removed first by default.
    """
    r, e = _pair(ref, est, "si_sdr")
    if zero_mean:
        r = r - r.mean(-1, keepdims=True)
        e = e - e.mean(-1, keepdims=True)
    a = (e * r).sum(-1, keepdims=True) / np.maximum((r**2).sum(-1, keepdims=True), _TINY)
    target = a * r
    return _out(_db((target**2).sum(-1), ((e - target) ** 2).sum(-1)), np.ndim(ref) == 2)


def _stft_mag(x: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """(B, T) float64 -> (B, frames, n_fft // 2 + 1) magnitude, centred reflect-padded frames."""
    pad = n_fft // 2
    if x.shape[-1] <= pad:
        raise AudioError(f"signal of {x.shape[-1]} samples is too short for n_fft={n_fft}")
    xp = np.pad(x, [(0, 0), (pad, pad)], mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft, axis=-1)[:, ::hop_length]
    return np.abs(np.fft.rfft(frames * padded_window(n_fft).astype(np.float64), axis=-1))


def spectral_convergence(ref, est, *, n_fft: int = 1024, hop_length: int = 256):
    """``||  |S_ref| - |S_est|  ||_F / || |S_ref| ||_F`` of STFT magnitudes (0 is perfect).

    Phase-blind, so it scores phase reconstructions (Griffin-Lim, vocoders) fairly.
    """
    check_frame_args(n_fft, hop_length, None)
    r, e = _pair(ref, est, "spectral_convergence")
    R, E = _stft_mag(r, n_fft, hop_length), _stft_mag(e, n_fft, hop_length)
    num = np.sqrt(((R - E) ** 2).sum((-2, -1)))
    return _out(num / np.maximum(np.sqrt((R**2).sum((-2, -1))), _TINY), np.ndim(ref) == 2)


def log_spectral_distance(ref, est, *, n_fft: int = 1024, hop_length: int = 256, eps: float = 1e-10):
    """Log-spectral distance in dB: per frame ``sqrt(mean_f (10 log10 P_ref / P_est)^2)``, averaged over frames.

    ``P`` is the STFT power spectrum plus ``eps``.
    """
    check_frame_args(n_fft, hop_length, None)
    r, e = _pair(ref, est, "log_spectral_distance")
    pr = _stft_mag(r, n_fft, hop_length) ** 2 + eps
    pe = _stft_mag(e, n_fft, hop_length) ** 2 + eps
    per_frame = np.sqrt(np.mean((10.0 * np.log10(pr / pe)) ** 2, axis=-1))
    return _out(per_frame.mean(-1), np.ndim(ref) == 2)


def mel_distance(
    ref,
    est,
    *,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
    floor: float = 1e-5,
):
    """Mean absolute difference of natural-log magnitude mel spectrograms (``log(max(mel, floor))``)."""
    check_frame_args(n_fft, hop_length, None)
    r, e = _pair(ref, est, "mel_distance")
    fb = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max).astype(np.float64)
    lr = np.log(np.maximum(_stft_mag(r, n_fft, hop_length) @ fb.T, floor))
    le = np.log(np.maximum(_stft_mag(e, n_fft, hop_length) @ fb.T, floor))
    return _out(np.abs(lr - le).mean((-2, -1)), np.ndim(ref) == 2)


def _single(ref, est, name: str) -> tuple[np.ndarray, np.ndarray]:
    r, e = _pair(ref, est, name)
    if r.shape[0] != 1 or np.ndim(ref) != 1:
        raise AudioError(f"{name}: expects 1-D signals (T,), got shape {np.shape(ref)}")
    return r[0], e[0]


def pesq_score(ref, est, sr: int, *, mode: str | None = None) -> float:
    """PESQ (ITU-T P.862) MOS-LQO; higher is better (about 1.0 to 4.6).

    Wide-band at 16 kHz, narrow-band at 8 kHz (``mode`` "wb" / "nb" overrides); other rates
    are resampled to 16 kHz (soxr) and scored wide-band. Signals are 1-D.
    """
    try:
        import pesq as pesq_lib
    except ImportError:
        raise UserError("pesq_score needs the 'pesq' package: pip install pesq") from None
    r, e = _single(ref, est, "pesq_score")
    for what, sig in (("reference", r), ("estimate", e)):
        if not np.abs(sig).max() > 0:
            raise AudioError(f"pesq_score: the {what} signal is silent (all zeros)")
    sr = int(sr)
    if sr not in (8000, 16000):
        import soxr

        r = soxr.resample(r, sr, 16000, quality="HQ")
        e = soxr.resample(e, sr, 16000, quality="HQ")
        sr = 16000
    mode = mode or ("wb" if sr == 16000 else "nb")
    if mode == "wb" and sr != 16000:
        raise AudioError("pesq_score: wide-band PESQ needs 16 kHz audio")
    try:
        return float(pesq_lib.pesq(sr, r, e, mode))
    except Exception as err:  # pesq raises its own types (NoUtterancesError, ...), bytes messages
        why = err.args[0] if err.args else type(err).__name__
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise AudioError(f"pesq_score: PESQ failed: {' '.join(why.split())}") from None


def stoi_score(ref, est, sr: int, *, extended: bool = False) -> float:
    """STOI (Taal et al., 2011), or ESTOI with ``extended=True``; higher is better (<= 1).

    1-D signals; pystoi resamples to 10 kHz internally. Needs ~0.4 s of non-silent speech.
    """
    try:
        from pystoi import stoi
    except ImportError:
        raise UserError("stoi_score needs the 'pystoi' package: pip install pystoi") from None
    r, e = _single(ref, est, "stoi_score")
    if r.size < _STOI_MIN_SECONDS * sr:  # pystoi fails with a numpy AxisError on short clips
        raise AudioError(f"stoi_score: {r.size / sr:.3f} s is too short for STOI "
                         f"(needs at least {_STOI_MIN_SECONDS} s)")
    return float(stoi(r, e, int(sr), extended=extended))


# pystoi frames at 10 kHz with 256-sample windows and correlates 30 frames (384 ms)
_STOI_MIN_SECONDS = 0.4
