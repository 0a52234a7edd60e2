"""PyTorch mirror of :mod:`mlx_speech.train.losses` (same names, reductions and results).

See the MLX module for the definitions. The mel front ends run in float32 with autocast off.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mlx_speech.errors import AudioError, SpecError
from mlx_speech.specs.audio import MelSpec
from torch_ref.audio.spectral import log_mel, mel_spectrogram

__all__ = ["DEFAULT_MEL_SCALES", "DAC_MEL_WINDOWS", "DAC_MEL_BANDS", "mel_l1_loss", "multi_scale_mel_loss",
           "dac_mel_loss", "lsgan_discriminator_loss", "lsgan_generator_loss", "feature_matching_loss",
           "hinge_discriminator_loss", "hinge_generator_loss"]

# (n_fft, hop_length, n_mels): window = n_fft, f_min = 0, f_max = sample_rate / 2.
DEFAULT_MEL_SCALES: tuple[tuple[int, int, int], ...] = ((512, 128, 64), (1024, 256, 80), (2048, 512, 128))
# DAC's mel loss scales: window (= n_fft, hop window // 4) and mel bands, paired by position.
DAC_MEL_WINDOWS: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
DAC_MEL_BANDS: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)


def _check_pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if pred.ndim != 2 or tuple(pred.shape) != tuple(target.shape):
        raise AudioError(f"{name}: expected two (B, T) waveforms of the same shape, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")


def _log_mel_l1(pred: torch.Tensor, target: torch.Tensor, kw: dict) -> torch.Tensor:
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p = log_mel(pred.float(), **kw)
        with torch.no_grad():
            t = log_mel(target.float(), **kw)
        return (p - t).abs().mean()


def mel_l1_loss(pred_wav: torch.Tensor, target_wav: torch.Tensor, *, mel: MelSpec) -> torch.Tensor:
    """Mean ``|log_mel(pred) - log_mel(target)|`` with the front end ``mel``; scalar float32."""
    _check_pair(pred_wav, target_wav, "mel_l1_loss")
    return _log_mel_l1(pred_wav, target_wav, {**mel.mel_kwargs(), "floor": mel.log_floor})


def multi_scale_mel_loss(pred_wav: torch.Tensor, target_wav: torch.Tensor, *, sample_rate: int,
                         scales: Sequence[tuple[int, int, int]] = DEFAULT_MEL_SCALES,
                         floor: float = 1e-5) -> torch.Tensor:
    """Mean over ``scales`` of the log-mel L1 at ``(n_fft, hop_length, n_mels)``; scalar."""
    _check_pair(pred_wav, target_wav, "multi_scale_mel_loss")
    if not scales:
        raise SpecError("multi_scale_mel_loss: scales must not be empty")
    total = pred_wav.new_zeros((), dtype=torch.float32)
    for n_fft, hop, n_mels in scales:
        kw = {"sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop, "win_length": n_fft,
              "n_mels": n_mels, "f_max": None, "floor": floor}
        total = total + _log_mel_l1(pred_wav, target_wav, kw)
    return total / len(scales)


def _check_dac_mel_args(window_lengths: Sequence[int], n_mels: Sequence[int], clamp_eps: float,
                        pow: float) -> None:
    """The argument checks of :func:`dac_mel_loss` (the MLX twin makes the same)."""
    if not window_lengths or len(window_lengths) != len(n_mels):
        raise SpecError(f"dac_mel_loss: window_lengths and n_mels must be non-empty and of equal length, "
                        f"got {len(window_lengths)} and {len(n_mels)}")
    if any(w < 4 for w in window_lengths):
        raise SpecError(f"dac_mel_loss: window lengths must be >= 4, got {list(window_lengths)}")
    if not clamp_eps > 0 or not pow > 0:
        raise SpecError(f"dac_mel_loss: clamp_eps and pow must be positive, got {clamp_eps} and {pow}")


def _clamp_pow(mel: torch.Tensor, eps: float, pow: float) -> torch.Tensor:
    c = mel.clamp(min=eps)
    return c if pow == 1.0 else c.pow(pow)


def dac_mel_loss(pred_wav: torch.Tensor, target_wav: torch.Tensor, *, sample_rate: int,
                 window_lengths: Sequence[int] = DAC_MEL_WINDOWS, n_mels: Sequence[int] = DAC_MEL_BANDS,
                 clamp_eps: float = 1e-5, pow: float = 1.0, log_weight: float = 1.0,
                 mag_weight: float = 0.0, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """DAC's multi-scale mel loss (the sum over scales); scalar float32. See the MLX twin."""
    _check_pair(pred_wav, target_wav, "dac_mel_loss")
    _check_dac_mel_args(window_lengths, n_mels, clamp_eps, pow)
    total = pred_wav.new_zeros((), dtype=torch.float32)
    with torch.autocast(device_type=pred_wav.device.type, enabled=False):
        pred, target = pred_wav.float(), target_wav.float()
        for win, n in zip(window_lengths, n_mels):
            kw = {"sample_rate": sample_rate, "n_fft": win, "hop_length": win // 4, "n_mels": n,
                  "f_min": f_min, "f_max": f_max}
            p = mel_spectrogram(pred, **kw)
            with torch.no_grad():
                t = mel_spectrogram(target, **kw)
            if log_weight:
                lp, lt = (_clamp_pow(m, clamp_eps, pow).log10() for m in (p, t))
                total = total + log_weight * (lp - lt).abs().mean()
            if mag_weight:
                total = total + mag_weight * (p - t).abs().mean()
    return total


def _check_lists(a: Sequence, b: Sequence, name: str) -> None:
    if len(a) != len(b) or not a:
        raise SpecError(f"{name}: expected two non-empty lists of equal length, got {len(a)} and {len(b)}")


def lsgan_discriminator_loss(real_outputs: Sequence[torch.Tensor],
                             fake_outputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(total, per sub-discriminator)`` with each term ``mean((1 - r)^2) + mean(f^2)``."""
    _check_lists(real_outputs, fake_outputs, "lsgan_discriminator_loss")
    per = [(1.0 - r.float()).square().mean() + f.float().square().mean()
           for r, f in zip(real_outputs, fake_outputs)]
    return sum(per[1:], per[0]), per


def lsgan_generator_loss(fake_outputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(total, per sub-discriminator)`` with each term ``mean((1 - f)^2)``."""
    if not fake_outputs:
        raise SpecError("lsgan_generator_loss: expected a non-empty list of outputs")
    per = [(1.0 - f.float()).square().mean() for f in fake_outputs]
    return sum(per[1:], per[0]), per


def _check_scores(x: torch.Tensor, name: str) -> torch.Tensor:
    """One non-empty score tensor as float32; a list (several score maps) is a TypeError."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected one score tensor, got {type(x).__name__} "
                        "(reduce a list of score maps in the caller)")
    if x.numel() == 0:
        raise SpecError(f"{name}: the score tensor is empty (shape {tuple(x.shape)})")
    return x.float()


def hinge_discriminator_loss(real_scores: torch.Tensor,
                             fake_scores: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(d_real + d_fake, {"d_real": mean(relu(1 - real)), "d_fake": mean(relu(1 + fake))})``;
    each mean over its own tensor (shapes may differ)."""
    r = _check_scores(real_scores, "hinge_discriminator_loss (real)")
    f = _check_scores(fake_scores, "hinge_discriminator_loss (fake)")
    d_real, d_fake = F.relu(1.0 - r).mean(), F.relu(1.0 + f).mean()
    return d_real + d_fake, {"d_real": d_real, "d_fake": d_fake}


def hinge_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """``-mean(fake_scores)``."""
    return -_check_scores(fake_scores, "hinge_generator_loss").mean()


def feature_matching_loss(real_features: Sequence[Sequence[torch.Tensor]],
                          fake_features: Sequence[Sequence[torch.Tensor]], *,
                          exclude_last: bool = False) -> torch.Tensor:
    """Sum over sub-discriminators and layers of ``mean|real - fake|``; real maps are constants.

    ``exclude_last`` leaves out each sub-discriminator's last map (DAC's rule).
    """
    _check_lists(real_features, fake_features, "feature_matching_loss")
    total = None
    for rs, fs in zip(real_features, fake_features):
        _check_lists(rs, fs, "feature_matching_loss (layers)")
        if exclude_last:
            rs, fs = rs[:-1], fs[:-1]
        for r, f in zip(rs, fs):
            term = (r.detach().float() - f.float()).abs().mean()
            total = term if total is None else total + term
    if total is None:  # exclude_last with one map per sub-discriminator: nothing to match
        total = fake_features[0][0].new_zeros((), dtype=torch.float32)
    return total


def _stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    from torch_ref.audio.spectral import stft  # noqa: PLC0415

    s = stft(x, n_fft=n_fft, hop_length=hop, win_length=win)
    return torch.sqrt(torch.clamp(s.real ** 2 + s.imag ** 2, min=1e-7))


def multi_resolution_stft_loss(pred_wav: torch.Tensor, target_wav: torch.Tensor,
                               resolutions: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror of ``mlx_speech.train.losses.multi_resolution_stft_loss``."""
    _check_pair(pred_wav, target_wav, "multi_resolution_stft_loss")
    if not resolutions:
        raise SpecError("multi_resolution_stft_loss: no resolutions")
    sc = pred_wav.new_zeros((), dtype=torch.float32)
    mag = pred_wav.new_zeros((), dtype=torch.float32)
    for n_fft, hop, win in resolutions:
        p = _stft_magnitude(pred_wav.float(), n_fft, hop, win)
        t = _stft_magnitude(target_wav.float(), n_fft, hop, win).detach()
        num = torch.sqrt(torch.clamp((t - p).square().sum(dim=(1, 2)), min=1e-12))
        den = torch.sqrt(t.square().sum(dim=(1, 2)))
        sc = sc + (num / den).mean()
        mag = mag + (torch.log(t) - torch.log(p)).abs().mean()
    n = len(resolutions)
    return sc / n, mag / n


def normalised_feature_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
                            ) -> dict[str, torch.Tensor]:
    """Mirror of ``mlx_speech.train.losses.normalised_feature_loss``."""
    if pred.shape != target.shape or pred.ndim != 3 or mask.shape != pred.shape[:2]:
        raise AudioError(f"normalised_feature_loss: shapes {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}, mask {tuple(mask.shape)} do not match "
                         f"(B, F, D) / (B, F)")
    m = mask.float()[..., None]
    t = target.float().detach()
    d = (pred.float() - t) * m
    t = t * m
    sq = d.square().sum(dim=(1, 2))
    tsq = torch.clamp(t.square().sum(dim=(1, 2)), min=1e-12)
    l1 = d.abs().sum(dim=(1, 2)) / torch.clamp(t.abs().sum(dim=(1, 2)), min=1e-12)
    return {"l1": l1.mean(), "l2": (sq / tsq).mean(), "sc": torch.sqrt(torch.clamp(sq / tsq, min=1e-12)).mean()}
