"""The degradation recipe for restoration training: which steps, how likely, which parameters.

Framework-neutral and numpy-free, so a training recipe can hold a ``degrade:`` mapping that is
read strictly (an unknown key is a :class:`~mlx_speech.errors.SpecError` naming it). The steps
themselves live in :mod:`mlx_speech.data.degrade`, which also exports this class.

Every step has a probability of being applied to an utterance and parameter ranges; a
``[lo, hi]`` range is drawn uniformly, a list of choices (codecs, bit rates, resampling rates)
uniformly among its entries. The steps run in ``order``; when more than ``max_steps`` are drawn,
a random subset of ``max_steps`` of them (in ``order``) is kept, so one utterance is not buried
under every degradation at once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from mlx_speech.specs.base import Spec, require

STEPS = ("reverb", "noise", "clip", "band", "codec", "packet_loss", "gain")
NOISE_KINDS = ("white", "pink", "brown", "babble")
CODEC_NAMES = ("mp3", "opus", "vorbis", "mulaw", "gsm")
# The bit rates (kbps) each encoder accepts at some sample rate; which rate is used for a given
# bit rate is the codec module's choice (mlx_speech/data/degrade_codecs.py).
KBPS_LIMITS = {"mp3": (8.0, 320.0), "opus": (6.0, 510.0), "vorbis": (8.0, 192.0)}

NoiseKind = Literal["white", "pink", "brown", "babble"]
CodecName = Literal["mp3", "opus", "vorbis", "mulaw", "gsm"]
StepName = Literal["reverb", "noise", "clip", "band", "codec", "packet_loss", "gain"]


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


def _range(value: list[float], where: str, name: str, lo: float, hi: float,
           *, open_lo: bool = False) -> None:
    """``value`` is ``[a, b]`` with ``lo <= a <= b <= hi`` (``lo < a`` when ``open_lo``)."""
    require(len(value) == 2, where, f"{name} must be [low, high], got {value}")
    a, b = value
    require(math.isfinite(a) and math.isfinite(b), where, f"{name} must be finite, got {value}")
    first_ok = lo < a if open_lo else lo <= a
    bound = f"({lo}, {hi}]" if open_lo else f"[{lo}, {hi}]"
    require(first_ok and a <= b <= hi, where,
            f"{name} must be [low, high] with low <= high, both in {bound}; got {value}")


@dataclasses.dataclass
class DegradeSpec(Spec):
    """Probabilities and parameter ranges of the degradation chain (see the module docstring).

    - noise: additive ``noise_kinds`` at an SNR (dB, signal power over noise power) drawn from
      ``snr_db``; babble mixes ``babble_talkers`` utterances of the corpus handed to the
      ``Degrader`` (the kind is never chosen without one).
    - reverb: a shoebox room with sides drawn from ``room_*_m`` and an RT60 from ``rt60``.
    - band: resampling through one of ``band_rates`` (those below the audio's rate), or a
      low-pass at a cutoff drawn from ``lowpass_hz`` (those below its Nyquist frequency);
      ``band_resample_share`` of band steps resample when both are possible.
    - codec: one of ``codecs`` through ffmpeg; mp3 / opus / vorbis at a bit rate chosen from
      ``*_kbps``, mu-law (G.711) and GSM 06.10 at their fixed rates (8 kHz).
    - clip: hard clipping at a fraction ``clip_level`` of the peak.
    - gain: a level change of ``gain_db``.
    - packet_loss: packets of ``packet_ms`` zeroed at a ``loss_rate`` (fraction of packets).
    """

    noise_prob: float = 0.6
    snr_db: list[float] = _field(lambda: [0.0, 30.0])
    noise_kinds: list[NoiseKind] = _field(lambda: list(NOISE_KINDS))
    babble_talkers: list[int] = _field(lambda: [3, 8])
    reverb_prob: float = 0.4
    rt60: list[float] = _field(lambda: [0.2, 1.0])
    room_length_m: list[float] = _field(lambda: [3.0, 10.0])
    room_width_m: list[float] = _field(lambda: [3.0, 8.0])
    room_height_m: list[float] = _field(lambda: [2.4, 4.0])
    band_prob: float = 0.3
    band_rates: list[int] = _field(lambda: [8000, 16000])
    lowpass_hz: list[float] = _field(lambda: [2000.0, 8000.0])
    band_resample_share: float = 0.5
    codec_prob: float = 0.3
    codecs: list[CodecName] = _field(lambda: list(CODEC_NAMES))
    mp3_kbps: list[float] = _field(lambda: [16.0, 24.0, 32.0, 48.0, 64.0])
    opus_kbps: list[float] = _field(lambda: [6.0, 8.0, 12.0, 16.0, 24.0])
    vorbis_kbps: list[float] = _field(lambda: [16.0, 24.0, 32.0, 48.0])
    clip_prob: float = 0.1
    clip_level: list[float] = _field(lambda: [0.1, 0.7])
    gain_prob: float = 0.3
    gain_db: list[float] = _field(lambda: [-24.0, 6.0])
    packet_loss_prob: float = 0.1
    loss_rate: list[float] = _field(lambda: [0.02, 0.2])
    packet_ms: list[float] = _field(lambda: [10.0, 40.0])
    max_steps: int = 4
    order: list[StepName] = _field(lambda: list(STEPS))

    def prob(self, step: str) -> float:
        """The probability of ``step`` (one of ``STEPS``)."""
        return float(getattr(self, f"{step}_prob"))

    def validate(self) -> None:
        w = type(self).__name__
        for step in STEPS:
            p = self.prob(step)
            require(0.0 <= p <= 1.0, w, f"{step}_prob must be in [0, 1], got {p}")
        require(sorted(self.order) == sorted(STEPS), w,
                f"order must list each step once ({', '.join(STEPS)}), got {self.order}")
        require(self.max_steps >= 1, w, f"max_steps must be >= 1, got {self.max_steps}")
        _range(self.snr_db, w, "snr_db", -30.0, 100.0)
        require(len(set(self.noise_kinds)) == len(self.noise_kinds), w,
                f"noise_kinds lists a kind twice: {self.noise_kinds}")
        require(bool(self.noise_kinds) or self.noise_prob == 0, w,
                "noise_kinds is empty but noise_prob > 0")
        t = self.babble_talkers
        require(len(t) == 2 and 1 <= t[0] <= t[1] <= 64, w,
                f"babble_talkers must be [low, high] in 1..64, got {t}")
        _range(self.rt60, w, "rt60", 0.05, 2.0, open_lo=True)
        for name, lo in (("room_length_m", 1.5), ("room_width_m", 1.5), ("room_height_m", 1.5)):
            _range(getattr(self, name), w, name, lo, 50.0)
        require(all(4000 <= r <= 96000 for r in self.band_rates), w,
                f"band_rates must be in 4000..96000 Hz, got {self.band_rates}")
        _range(self.lowpass_hz, w, "lowpass_hz", 500.0, 48000.0)
        require(0.0 <= self.band_resample_share <= 1.0, w,
                f"band_resample_share must be in [0, 1], got {self.band_resample_share}")
        require(len(set(self.codecs)) == len(self.codecs), w,
                f"codecs lists a codec twice: {self.codecs}")
        require(bool(self.codecs) or self.codec_prob == 0, w, "codecs is empty but codec_prob > 0")
        for name, (lo, hi) in KBPS_LIMITS.items():
            rates = getattr(self, f"{name}_kbps")
            require(bool(rates) or name not in self.codecs, w, f"{name}_kbps is empty")
            require(all(lo <= r <= hi for r in rates), w,
                    f"{name}_kbps must be in {lo:g}..{hi:g}, got {rates}")
        _range(self.clip_level, w, "clip_level", 0.0, 1.0, open_lo=True)
        _range(self.gain_db, w, "gain_db", -60.0, 40.0)
        _range(self.loss_rate, w, "loss_rate", 0.0, 0.9)
        _range(self.packet_ms, w, "packet_ms", 1.0, 1000.0)


@DegradeSpec.preset("default")
def degrade_default() -> DegradeSpec:
    """A realistic mix for speech restoration: each step at its own probability, at most four."""
    return DegradeSpec()


@DegradeSpec.preset("none")
def degrade_none() -> DegradeSpec:
    """Nothing is applied: the ``Degrader`` returns its input (clean runs, tests)."""
    return DegradeSpec(noise_prob=0.0, reverb_prob=0.0, band_prob=0.0, codec_prob=0.0,
                       clip_prob=0.0, gain_prob=0.0, packet_loss_prob=0.0)
