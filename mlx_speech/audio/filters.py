"""Mel scales, mel filterbanks, analysis windows, framing helpers and resampling kernels (numpy only).

This module imports neither mlx nor torch, so :mod:`mlx_speech.audio.spectral` (MLX),
``torch_ref.audio.spectral`` (torch) and :mod:`mlx_speech.audio.metrics` (numpy) all build
their filters from the same float64 computation and therefore agree bit-for-bit on them.
The argument checks, window-envelope normalisation, Griffin-Lim start phases, mel-inversion
operators and sinc resampling kernels are here for the same reason: one copy serves both back
ends.

Two mel scales are supported:

- ``htk``: ``mel = 2595 * log10(1 + f / 700)``.
- Slaney (Auditory Toolbox, the librosa default): linear below 1 kHz (``mel = 3 f / 200``)
  and logarithmic above it, 27 mels per factor 6.4 in frequency.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mlx_speech.errors import AudioError, SpecError

__all__ = ["hz_to_mel", "mel_to_hz", "mel_frequencies", "mel_filterbank", "hann_window", "padded_window",
           "check_frame_args", "num_frames", "inverse_envelope",
           "check_gl_args", "initial_phase", "nnls_operators", "sinc_resample_kernels"]

# Slaney scale constants: the linear part has slope 3/200 mel per Hz and meets the log part
# at 1 kHz (= 15 mel); above that each factor of 6.4 in frequency spans 27 mels.
_F_SP = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(freqs, *, htk: bool = False):
    """Convert frequencies in Hz to mels.

    Args:
        freqs: scalar or array of frequencies (Hz), any shape.
        htk: use the HTK formula instead of the Slaney scale.

    Returns:
        float64 array (or Python float for scalar input) with the shape of ``freqs``.
    """
    f = np.asarray(freqs, dtype=np.float64)
    if htk:
        mels = 2595.0 * np.log10(1.0 + f / 700.0)
    else:
        # np.maximum keeps log() away from non-positive values in the branch not taken.
        log_part = _BREAK_MEL + np.log(np.maximum(f, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
        mels = np.where(f >= _BREAK_HZ, log_part, f / _F_SP)
    return float(mels) if mels.ndim == 0 else mels


def mel_to_hz(mels, *, htk: bool = False):
    """Convert mels to frequencies in Hz (inverse of :func:`hz_to_mel`).

    Args:
        mels: scalar or array of mel values, any shape.
        htk: use the HTK formula instead of the Slaney scale.

    Returns:
        float64 array (or Python float for scalar input) with the shape of ``mels``.
    """
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        freqs = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    else:
        log_part = _BREAK_HZ * np.exp(_LOG_STEP * (np.maximum(m, _BREAK_MEL) - _BREAK_MEL))
        freqs = np.where(m >= _BREAK_MEL, log_part, m * _F_SP)
    return float(freqs) if freqs.ndim == 0 else freqs


def mel_frequencies(n: int, *, f_min: float = 0.0, f_max: float = 11025.0, htk: bool = False) -> np.ndarray:
    """``n`` frequencies (Hz, float64) equally spaced on the mel scale from ``f_min`` to ``f_max``."""
    lo, hi = hz_to_mel(f_min, htk=htk), hz_to_mel(f_max, htk=htk)
    return mel_to_hz(np.linspace(lo, hi, n), htk=htk)


def _check_filter_args(sample_rate, n_fft, n_mels, f_min, f_max) -> float:
    if not (isinstance(sample_rate, (int, float)) and sample_rate > 0):
        raise SpecError(f"mel_filterbank: sample_rate must be a positive number, got {sample_rate!r}")
    if not (isinstance(n_fft, (int, np.integer)) and n_fft >= 2):
        raise SpecError(f"mel_filterbank: n_fft must be an integer >= 2, got {n_fft!r}")
    if not (isinstance(n_mels, (int, np.integer)) and n_mels >= 1):
        raise SpecError(f"mel_filterbank: n_mels must be a positive integer, got {n_mels!r}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max:
        raise SpecError(f"mel_filterbank: need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    return f_max


def mel_filterbank(
    *,
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
) -> np.ndarray:
    """Triangular mel filterbank mapping a one-sided spectrum to mel bands.

    Each band ``i`` is a triangle over the FFT-bin frequencies with corners at mel points
    ``i, i + 1, i + 2`` of ``n_mels + 2`` points spaced evenly on the mel scale between
    ``f_min`` and ``f_max``. Computed in float64, returned as float32.

    Args:
        sample_rate: sampling rate of the analysed signal (Hz).
        n_fft: FFT size; the spectrum has ``n_fft // 2 + 1`` bins.
        n_mels: number of mel bands.
        f_min, f_max: band edges in Hz (``f_max`` defaults to ``sample_rate / 2``).
        htk: HTK mel formula instead of the Slaney scale.
        norm: ``"slaney"`` divides each triangle by its width in Hz (constant energy per
            band); a number ``p`` scales each row to unit ``p``-norm; ``None`` leaves peaks at 1.

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float32 weights; ``mel = weights @ spectrum``.
    """
    f_max = _check_filter_args(sample_rate, n_fft, n_mels, f_min, f_max)
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    pts = mel_frequencies(n_mels + 2, f_min=f_min, f_max=f_max, htk=htk)
    widths = np.diff(pts)  # (n_mels + 1,)
    # dist[j, k] = corner j minus bin k (Hz); rising edge of band i uses corner i, falling edge i+2.
    dist = pts[:, None] - bin_hz[None, :]
    rise = -dist[:-2] / widths[:-1, None]
    fall = dist[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rise, fall))

    if norm == "slaney":
        weights *= (2.0 / (pts[2:] - pts[:-2]))[:, None]
    elif norm is not None and not isinstance(norm, str):
        p = float(norm)
        if p <= 0:
            raise SpecError(f"mel_filterbank: a numeric norm must be > 0, got {norm!r}")
        length = np.max(np.abs(weights), axis=1) if np.isinf(p) else np.sum(np.abs(weights) ** p, axis=1) ** (1 / p)
        weights /= np.where(length > 0, length, 1.0)[:, None]
    elif norm is not None:
        raise SpecError(f"mel_filterbank: norm must be 'slaney', a number or None, got {norm!r}")
    return weights.astype(np.float32)


def hann_window(n: int, periodic: bool = True) -> np.ndarray:
    """Hann window ``0.5 - 0.5 cos(2 pi k / M)`` of length ``n`` as float32.

    ``periodic=True`` (the STFT convention) uses ``M = n``, i.e. one period of a window of
    length ``n + 1`` with the last sample dropped; ``periodic=False`` uses ``M = n - 1`` so the
    window is symmetric and ends in zeros.

    Returns:
        ``(n,)`` float32.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 0):
        raise SpecError(f"hann_window: length must be a non-negative integer, got {n!r}")
    if n <= 1:
        return np.ones(n, dtype=np.float32)
    m = n if periodic else n - 1
    k = np.arange(n, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / m)).astype(np.float32)


def padded_window(n_fft: int, win_length: int | None = None) -> np.ndarray:
    """Periodic Hann window of ``win_length`` zero-padded (centred) to ``n_fft``: ``(n_fft,)`` float32.

    Shared by the MLX and torch STFTs so both use the same samples.
    """
    win_length = n_fft if win_length is None else win_length
    if not (isinstance(win_length, (int, np.integer)) and 1 <= win_length <= n_fft):
        raise SpecError(f"win_length must be an integer in [1, n_fft={n_fft}], got {win_length!r}")
    w = np.zeros(n_fft, dtype=np.float32)
    left = (n_fft - win_length) // 2
    w[left : left + win_length] = hann_window(win_length, periodic=True)
    return w


# ---- framing helpers shared by the MLX and torch STFTs -------------------------------------

# Overlap-added squared-window values at or below this count as "no window coverage": samples
# there are left unnormalised instead of being divided by ~0.
WSS_EPS = 1e-10


def check_frame_args(n_fft: int, hop_length: int, win_length: int | None) -> None:
    """Raise SpecError unless ``n_fft``, ``hop_length``, ``win_length`` are sensible integers."""
    for name, v in (("n_fft", n_fft), ("hop_length", hop_length)):
        if not (isinstance(v, (int, np.integer)) and v >= 1):
            raise SpecError(f"{name} must be a positive integer, got {v!r}")
    if n_fft < 2:
        raise SpecError(f"n_fft must be >= 2, got {n_fft}")
    if win_length is not None and not (isinstance(win_length, (int, np.integer)) and 1 <= win_length <= n_fft):
        raise SpecError(f"win_length must be an integer in [1, n_fft={n_fft}], got {win_length!r}")


def num_frames(n_samples: int, *, n_fft: int, hop_length: int, center: bool = True) -> int:
    """Number of STFT frames for a signal of ``n_samples`` (0 if it is too short)."""
    padded = n_samples + 2 * (n_fft // 2) if center else n_samples
    return 0 if padded < n_fft else 1 + (padded - n_fft) // hop_length


@lru_cache(maxsize=64)
def inverse_envelope(n_frames: int, *, n_fft: int, hop_length: int, win_length: int | None) -> np.ndarray:
    """``1 / sum_t w^2[n - t * hop]`` where that sum exceeds WSS_EPS, else 1.

    Returns:
        ``(n_fft + hop_length * (n_frames - 1),)`` float32, read-only (cached: Griffin-Lim
        calls the inverse STFT with the same shape every iteration).
    """
    w2 = padded_window(n_fft, win_length).astype(np.float64) ** 2
    env = np.zeros(n_fft + hop_length * (n_frames - 1))
    idx = np.arange(n_frames)[:, None] * hop_length + np.arange(n_fft)[None, :]
    np.add.at(env, idx.ravel(), np.broadcast_to(w2, idx.shape).ravel())
    covered = env > WSS_EPS
    inv = np.where(covered, 1.0 / np.where(covered, env, 1.0), 1.0).astype(np.float32)
    inv.setflags(write=False)
    return inv


# ---- Griffin-Lim / mel-inversion helpers shared by the MLX and torch back ends -------------


def initial_phase(shape: tuple[int, ...], *, init: str, seed: int) -> np.ndarray:
    """Unit-modulus complex64 starting phases of ``shape`` (numpy, shared with torch_ref).

    ``"zeros"``: all phases 0 (angles = 1). ``"random"``: uniform phases from
    ``np.random.default_rng(seed)``.
    """
    if init == "zeros":
        return np.ones(shape, dtype=np.complex64)
    if init == "random":
        phase = np.random.default_rng(seed).random(shape) * (2.0 * np.pi)
        return np.exp(1j * phase).astype(np.complex64)
    raise SpecError(f"griffin_lim: init must be 'zeros' or 'random', got {init!r}")


def check_gl_args(magnitude_shape, *, n_fft, hop_length, win_length, n_iter, momentum, length) -> int:
    """Validate Griffin-Lim arguments; return the output length (shared with torch_ref)."""
    check_frame_args(n_fft, hop_length, win_length)
    if len(magnitude_shape) not in (2, 3) or magnitude_shape[-1] != n_fft // 2 + 1:
        raise AudioError(
            f"griffin_lim: expected magnitude (B, frames, {n_fft // 2 + 1}) for n_fft={n_fft}, "
            f"got shape {tuple(magnitude_shape)}"
        )
    if not (isinstance(n_iter, (int, np.integer)) and n_iter >= 0):
        raise SpecError(f"griffin_lim: n_iter must be a non-negative integer, got {n_iter!r}")
    if not 0.0 <= momentum < 1.0:
        raise SpecError(f"griffin_lim: momentum must be in [0, 1), got {momentum}")
    n = magnitude_shape[-2]
    length = hop_length * (n - 1) if length is None else int(length)
    if num_frames(length, n_fft=n_fft, hop_length=hop_length, center=True) != n:
        raise AudioError(
            f"griffin_lim: length={length} gives {num_frames(length, n_fft=n_fft, hop_length=hop_length)} "
            f"frames but the magnitude has {n}"
        )
    if length <= n_fft // 2:
        raise AudioError(f"griffin_lim: output length {length} must exceed n_fft // 2 = {n_fft // 2}")
    return length


def nnls_operators(
    *, sample_rate, n_fft, n_mels, f_min, f_max, htk, norm
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Numpy pieces of the mel inversion: ``(M^T, pinv(M)^T, M, step)`` as float32.

    ``M`` is the ``(n_mels, F)`` filterbank, ``step = 1 / sigma_max(M)^2`` is a safe projected
    gradient step for ``0.5 ||S M^T - mel||^2``.
    """
    fb = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max, htk=htk, norm=norm)
    m64 = fb.astype(np.float64)
    pinv_t = np.linalg.pinv(m64).T  # (n_mels, F)
    step = 1.0 / float(np.linalg.norm(m64, 2) ** 2)
    return np.ascontiguousarray(fb.T), pinv_t.astype(np.float32), fb, step


# ---- band-limited (sinc) resampling kernels shared by the MLX and torch back ends ----------


@lru_cache(maxsize=16)
def sinc_resample_kernels(old_sr: int, new_sr: int, *, zeros: int = 24,
                          rolloff: float = 0.945) -> tuple[np.ndarray, int, int, int]:
    """Polyphase kernels of julius' ``resample_frac`` (J. O. Smith's windowed-sinc method).

    After dividing both rates by their gcd, output sample ``n * new + i`` is the dot product of
    ``kernels[i]`` with input samples ``n * old - width ... n * old + width + old - 1`` of the
    signal padded by ``width`` (left) and ``width + old`` (right) repeated edge samples; the
    output keeps ``floor(T * new / old)`` samples. Each kernel is ``sinc`` low-passed at
    ``rolloff * min(old, new) / 2`` under a ``cos^2`` window of ``zeros`` zero crossings,
    normalised to sum 1 (a constant signal stays constant). Computed in float64.

    Returns:
        ``(kernels (new, 2 * width + old) float32 read-only, width, old, new)`` with the
        reduced rates; ``kernels`` is empty and ``width`` 0 when the rates are equal.
    """
    for name, v in (("old_sr", old_sr), ("new_sr", new_sr)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise SpecError(f"sinc_resample_kernels: {name} must be a positive integer, got {v!r}")
    g = int(np.gcd(old_sr, new_sr))
    old, new = int(old_sr) // g, int(new_sr) // g
    if old == new:
        return np.zeros((0, 0), dtype=np.float32), 0, old, new
    cutoff = min(old, new) * rolloff
    width = int(np.ceil(zeros * old / cutoff))
    idx = np.arange(-width, width + old, dtype=np.float64)
    t = (-np.arange(new, dtype=np.float64)[:, None] / new + idx[None, :] / old) * cutoff
    t = np.clip(t, -zeros, zeros) * np.pi
    window = np.cos(t / zeros / 2.0) ** 2
    safe = np.where(t == 0.0, 1.0, t)
    kernels = np.where(t == 0.0, 1.0, np.sin(safe) / safe) * window
    kernels /= kernels.sum(axis=1, keepdims=True)
    kernels = kernels.astype(np.float32)
    kernels.setflags(write=False)
    return kernels, width, old, new
