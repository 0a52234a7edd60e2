"""PyTorch mirror of :mod:`mlx_speech.train.losses` (same names, reductions and results).

See the MLX module for the definitions. The mel front ends run in float32 with autocast off.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlx_speech.errors import AudioError, SpecError
from mlx_speech.specs.audio import MelSpec
from torch_ref.audio.spectral import log_mel

__all__ = ["DEFAULT_MEL_SCALES", "mel_l1_loss", "multi_scale_mel_loss", "lsgan_discriminator_loss",
           "lsgan_generator_loss", "feature_matching_loss"]

# (n_fft, hop_length, n_mels): window = n_fft, f_min = 0, f_max = sample_rate / 2.
DEFAULT_MEL_SCALES: tuple[tuple[int, int, int], ...] = ((512, 128, 64), (1024, 256, 80), (2048, 512, 128))


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


def feature_matching_loss(real_features: Sequence[Sequence[torch.Tensor]],
                          fake_features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Sum over sub-discriminators and layers of ``mean|real - fake|``; real maps are constants."""
    _check_lists(real_features, fake_features, "feature_matching_loss")
    total = None
    for rs, fs in zip(real_features, fake_features):
        _check_lists(rs, fs, "feature_matching_loss (layers)")
        for r, f in zip(rs, fs):
            term = (r.detach().float() - f.float()).abs().mean()
            total = term if total is None else total + term
    return total
