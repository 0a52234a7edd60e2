"""Vocoder / codec training losses (MLX): mel reconstruction, least-squares GAN, feature matching.

Mirrored with the same names and semantics in ``torch_ref.train.losses``. Waveforms are
``(B, T)`` float32; discriminator outputs are lists (one entry per sub-discriminator) of
arrays of any shape; feature maps are lists (per sub-discriminator) of lists (per layer).

Reductions (the HiFi-GAN paper's):

* ``mel_l1_loss``: mean absolute difference of natural-log mels over all elements.
* ``multi_scale_mel_loss``: the mean over scales of each scale's mean log-mel L1.
* ``lsgan_discriminator_loss``: sum over sub-discriminators of
  ``mean((1 - D(real))^2) + mean(D(fake)^2)``.
* ``lsgan_generator_loss``: sum over sub-discriminators of ``mean((1 - D(fake))^2)``.
* ``feature_matching_loss``: sum over sub-discriminators and layers of ``mean|real - fake|``
  (unweighted: the paper's factor 2 is applied by the caller). Real features are constants.

The mels come from :mod:`mlx_speech.audio.spectral` (the one STFT of the package).
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from mlx_speech.audio.spectral import log_mel
from mlx_speech.errors import AudioError, SpecError
from mlx_speech.specs.audio import MelSpec

__all__ = ["DEFAULT_MEL_SCALES", "mel_l1_loss", "multi_scale_mel_loss", "lsgan_discriminator_loss",
           "lsgan_generator_loss", "feature_matching_loss"]

# (n_fft, hop_length, n_mels): window = n_fft, f_min = 0, f_max = sample_rate / 2.
DEFAULT_MEL_SCALES: tuple[tuple[int, int, int], ...] = ((512, 128, 64), (1024, 256, 80), (2048, 512, 128))


def _check_pair(pred: mx.array, target: mx.array, name: str) -> None:
    if pred.ndim != 2 or tuple(pred.shape) != tuple(target.shape):
        raise AudioError(f"{name}: expected two (B, T) waveforms of the same shape, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")


def mel_l1_loss(pred_wav: mx.array, target_wav: mx.array, *, mel: MelSpec) -> mx.array:
    """Mean ``|log_mel(pred) - log_mel(target)|`` with the front end ``mel``; scalar float32.

    The target's mel carries no gradient.
    """
    _check_pair(pred_wav, target_wav, "mel_l1_loss")
    kw = {**mel.mel_kwargs(), "floor": mel.log_floor}
    p = log_mel(pred_wav.astype(mx.float32), **kw)
    t = mx.stop_gradient(log_mel(target_wav.astype(mx.float32), **kw))
    return mx.abs(p - t).mean()


def multi_scale_mel_loss(pred_wav: mx.array, target_wav: mx.array, *, sample_rate: int,
                         scales: Sequence[tuple[int, int, int]] = DEFAULT_MEL_SCALES,
                         floor: float = 1e-5) -> mx.array:
    """Mean over ``scales`` of the log-mel L1 at ``(n_fft, hop_length, n_mels)``; scalar.

    Each scale uses a Hann window of ``n_fft``, centred frames, magnitude mels (slaney scale
    and norm) from 0 Hz to ``sample_rate / 2``, and ``log(max(mel, floor))``.
    """
    _check_pair(pred_wav, target_wav, "multi_scale_mel_loss")
    if not scales:
        raise SpecError("multi_scale_mel_loss: scales must not be empty")
    total = mx.array(0.0)
    for n_fft, hop, n_mels in scales:
        kw = {"sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop, "win_length": n_fft,
              "n_mels": n_mels, "f_max": None, "floor": floor}
        p = log_mel(pred_wav.astype(mx.float32), **kw)
        t = mx.stop_gradient(log_mel(target_wav.astype(mx.float32), **kw))
        total = total + mx.abs(p - t).mean()
    return total / len(scales)


def _check_lists(a: Sequence, b: Sequence, name: str) -> None:
    if len(a) != len(b) or not a:
        raise SpecError(f"{name}: expected two non-empty lists of equal length, got {len(a)} and {len(b)}")


def lsgan_discriminator_loss(real_outputs: Sequence[mx.array],
                             fake_outputs: Sequence[mx.array]) -> tuple[mx.array, list[mx.array]]:
    """``(total, per sub-discriminator)`` with each term ``mean((1 - r)^2) + mean(f^2)``."""
    _check_lists(real_outputs, fake_outputs, "lsgan_discriminator_loss")
    per = [mx.square(1.0 - r.astype(mx.float32)).mean() + mx.square(f.astype(mx.float32)).mean()
           for r, f in zip(real_outputs, fake_outputs)]
    return sum(per[1:], per[0]), per


def lsgan_generator_loss(fake_outputs: Sequence[mx.array]) -> tuple[mx.array, list[mx.array]]:
    """``(total, per sub-discriminator)`` with each term ``mean((1 - f)^2)``."""
    if not fake_outputs:
        raise SpecError("lsgan_generator_loss: expected a non-empty list of outputs")
    per = [mx.square(1.0 - f.astype(mx.float32)).mean() for f in fake_outputs]
    return sum(per[1:], per[0]), per


def feature_matching_loss(real_features: Sequence[Sequence[mx.array]],
                          fake_features: Sequence[Sequence[mx.array]]) -> mx.array:
    """Sum over sub-discriminators and layers of ``mean|real - fake|``; real maps are constants."""
    _check_lists(real_features, fake_features, "feature_matching_loss")
    total = mx.array(0.0)
    for rs, fs in zip(real_features, fake_features):
        _check_lists(rs, fs, "feature_matching_loss (layers)")
        for r, f in zip(rs, fs):
            total = total + mx.abs(mx.stop_gradient(r).astype(mx.float32) - f.astype(mx.float32)).mean()
    return total
