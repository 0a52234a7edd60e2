"""PyTorch mirror of :mod:`mlx_speech.audio.griffinlim` (same names, signatures and arithmetic).

Start phases, argument checks and the mel-inversion operators come from the numpy module
:mod:`mlx_speech.audio.filters`, so both back ends begin from identical values; the ``"pghi"``
start phases (:func:`pghi_phase`) are recomputed here with the same formula, all in float64
(the MLX side takes the log-magnitude term in float32).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from mlx_speech.audio.filters import check_gl_args, initial_phase, nnls_operators
from mlx_speech.errors import AudioError, SpecError
from torch_ref.audio.spectral import istft, stft

__all__ = ["griffin_lim", "mel_to_linear", "mel_to_audio", "pghi_phase"]

GL_INITS = ("zeros", "random", "pghi")
# the pseudo-inverse SVD costs ~0.1 s: once per filterbank (read-only use below)
_nnls_operators = lru_cache(maxsize=16)(nnls_operators)
PGHI_LAMBDA = 0.25645
PGHI_FLOOR_DB = -60.0


def pghi_phase(magnitude: torch.Tensor, *, n_fft: int, hop_length: int, win_length: int | None = None,
               floor_db: float = PGHI_FLOOR_DB) -> torch.Tensor:
    """Time-direction PGHI start phases ``(..., frames, F)`` complex64 (see the MLX version)."""
    mag = torch.as_tensor(magnitude).to(torch.float64)
    lam = PGHI_LAMBDA * float(win_length or n_fft) ** 2
    peak = mag.amax(dim=(-2, -1), keepdim=True)
    logm = torch.log(torch.maximum(mag, peak.clamp_min(1e-30) * 10.0 ** (floor_db / 20.0)))
    bins = torch.arange(mag.shape[-1], dtype=torch.float64, device=mag.device)
    omega = (2.0 * math.pi / n_fft) * bins + (n_fft / lam) * torch.gradient(logm, dim=-1)[0]
    step = 0.5 * hop_length * (omega[..., 1:, :] + omega[..., :-1, :])
    phase = torch.cat([torch.zeros_like(omega[..., :1, :]), torch.cumsum(step, dim=-2)], dim=-2)
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


def griffin_lim(
    magnitude: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: int | None = None,
    init: str = "zeros",
    seed: int = 0,
) -> torch.Tensor:
    """Fast Griffin-Lim: ``(B, frames, n_fft // 2 + 1)`` magnitude -> ``(B, T)`` float32.

    A 2-D ``(frames, F)`` magnitude gives ``(T,)``. See the MLX version for the arguments.
    """
    mag = torch.as_tensor(magnitude)
    length = check_gl_args(
        tuple(mag.shape), n_fft=n_fft, hop_length=hop_length, win_length=win_length,
        n_iter=n_iter, momentum=momentum, length=length,
    )
    squeeze = mag.ndim == 2
    mag = (mag[None] if squeeze else mag).to(torch.float32)
    frame = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length)
    if init not in GL_INITS:
        raise SpecError(f"griffin_lim: init must be one of {', '.join(GL_INITS)}, got {init!r}")
    if init == "pghi":
        angles = pghi_phase(mag, **frame)
    else:
        angles = torch.from_numpy(initial_phase(tuple(mag.shape), init=init, seed=seed)).to(mag.device)
    beta = momentum / (1.0 + momentum)
    prev = None
    for _ in range(n_iter):
        rebuilt = stft(istft(mag * angles, length=length, **frame), **frame)
        angles = rebuilt if prev is None else rebuilt - beta * prev
        angles = angles / (angles.abs() + 1e-16)
        prev = rebuilt
    y = istft(mag * angles, length=length, **frame)
    return y[0] if squeeze else y


def mel_to_linear(
    mel: torch.Tensor,
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    power: float = 1.0,
    n_iter: int = 16,
) -> torch.Tensor:
    """Mel ``(B, frames, n_mels)`` -> non-negative linear magnitude ``(B, frames, n_fft // 2 + 1)``.

    Clamped pseudo-inverse followed by ``n_iter`` projected-gradient NNLS steps, then the
    ``1 / power`` root.
    """
    mel = torch.as_tensor(mel)
    if mel.ndim not in (2, 3) or mel.shape[-1] != n_mels:
        raise AudioError(f"mel_to_linear: expected (B, frames, {n_mels}) mel, got shape {tuple(mel.shape)}")
    if power <= 0:
        raise SpecError(f"mel_to_linear: power must be > 0, got {power}")
    fb_t, pinv_t, fb, step = _nnls_operators(
        sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max, htk=htk, norm=norm
    )
    mel = mel.to(torch.float32)
    fb_t, fb, pinv_t = (torch.from_numpy(a).to(mel.device) for a in (fb_t, fb, pinv_t))
    spec = torch.clamp(mel @ pinv_t, min=0.0)
    for _ in range(n_iter):
        grad = (spec @ fb_t - mel) @ fb
        spec = torch.clamp(spec - step * grad, min=0.0)
    return spec if power == 1.0 else spec ** (1.0 / power)


def mel_to_audio(
    mel: torch.Tensor,
    *,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    power: float = 1.0,
    log_input: bool = False,
    nnls_iter: int = 16,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: int | None = None,
    init: str = "zeros",
    seed: int = 0,
) -> torch.Tensor:
    """Mel (natural-log if ``log_input``) ``(B, frames, n_mels)`` -> waveform ``(B, T)``."""
    mel = torch.as_tensor(mel)
    if log_input:
        mel = torch.exp(mel)
    mag = mel_to_linear(
        mel, sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max,
        htk=htk, norm=norm, power=power, n_iter=nnls_iter,
    )
    return griffin_lim(
        mag, n_fft=n_fft, hop_length=hop_length, win_length=win_length, n_iter=n_iter,
        momentum=momentum, length=length, init=init, seed=seed,
    )
