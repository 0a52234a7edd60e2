"""Audio front-end spec: STFT / mel parameters shared by codecs, vocoders and TTS."""

from __future__ import annotations

import dataclasses
from typing import Literal

from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class MelSpec(Spec):
    """Log-mel front end. ``f_max=None`` means ``sample_rate / 2``."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0
    power: float = 1.0
    center: bool = True
    mel_scale: Literal["slaney", "htk"] = "slaney"
    norm: Literal["slaney"] | None = "slaney"
    log_floor: float = 1e-5

    def validate(self) -> None:
        w = type(self).__name__
        require(8000 <= self.sample_rate <= 192000, w, f"sample_rate {self.sample_rate} outside 8000..192000")
        require(self.n_fft > 0 and self.hop_length > 0, w, "n_fft and hop_length must be positive")
        require(0 < self.win_length <= self.n_fft, w, f"win_length {self.win_length} must be in 1..n_fft ({self.n_fft})")
        require(self.n_mels > 0, w, "n_mels must be positive")
        f_max = self.sample_rate / 2 if self.f_max is None else self.f_max
        require(0 <= self.f_min < f_max <= self.sample_rate / 2, w,
                f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min}, f_max={self.f_max}")
        require(self.power in (1.0, 2.0), w, f"power must be 1.0 or 2.0, got {self.power}")
        require(self.log_floor > 0, w, "log_floor must be positive")

    def mel_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``mlx_speech.audio`` / ``torch_ref.audio`` mel functions."""
        return {"sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop_length": self.hop_length,
                "win_length": self.win_length, "n_mels": self.n_mels, "f_min": self.f_min,
                "f_max": self.f_max, "power": self.power, "center": self.center,
                "htk": self.mel_scale == "htk", "norm": self.norm}

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


@MelSpec.preset("hifigan_22k")
def mel_hifigan_22k() -> MelSpec:
    """LJSpeech / HiFi-GAN V1 front end: 22.05 kHz, 80 mels, hop 256, fmax 8 kHz."""
    return MelSpec()


@MelSpec.preset("speech_16k")
def mel_speech_16k() -> MelSpec:
    """16 kHz, 80 mels, 10 ms hop, 25 ms window (ASR / SSL style)."""
    return MelSpec(sample_rate=16000, n_fft=512, hop_length=160, win_length=400, f_max=None)


@MelSpec.preset("speech_24k")
def mel_speech_24k() -> MelSpec:
    """24 kHz, 100 mels, hop 256 (Vocos / Mimi-rate vocoders)."""
    return MelSpec(sample_rate=24000, n_fft=1024, hop_length=256, win_length=1024, n_mels=100, f_max=None)


@MelSpec.preset("bsq_16k")
def mel_bsq_16k() -> MelSpec:
    """BSQ-ViT audio tokenizer front end: 16 kHz, n_fft 1024, 10 ms hop, 128 mels, floor 1e-3
    (-60 dB, the tokenizer's -80 dB clip with its 20 dB reference), so a HiFi-GAN trained on
    this preset vocodes the tokenizer's mel as it is."""
    return MelSpec(sample_rate=16000, n_fft=1024, hop_length=160, win_length=1024, n_mels=128,
                   f_max=None, log_floor=1e-3)
