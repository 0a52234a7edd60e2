"""Degradations for speech restoration training (Miipher-2 style): clean audio in, a plausibly
damaged copy out, with a short note of every step applied.

Framework-free: numpy, scipy, soxr, pyroomacoustics (imported when a room is simulated) and the
``ffmpeg`` binary (run when a codec step is). Importing this module loads none of those.

- :class:`DegradeSpec` (from :mod:`mlx_speech.specs.degrade`): probabilities and ranges, read
  strictly from a recipe's ``degrade:`` mapping; presets ``default`` and ``none``.
- :class:`Degrader`: draws a chain from the spec for each utterance and applies it.
- the steps, each usable on its own: :func:`add_noise`, :func:`reverb` (and
  :func:`design_room`, :func:`decay_time`), :func:`band_limit`, :func:`codec`, :func:`clip`,
  :func:`gain`, :func:`packet_loss`.

Level: a step can push the signal past full scale (noise, reverb, a positive gain). The chain
then scales the whole signal down to a peak of exactly 1 after that step rather than clipping
it, so the only flattened peaks are those of the clip step (and the codecs see in-range input).
An input already beyond full scale is scaled the same way after the first step; with no step
applied, the input comes back as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlx_speech.data.degrade_codecs import codec, codec_rate, ffmpeg_path
from mlx_speech.data.degrade_ops import (MAX_RATE, MIN_RATE, DegradeToolError, add_noise,
                                         band_limit, check_rate, check_rng, check_wav, clip,
                                         colored_noise, gain, packet_loss)
from mlx_speech.data.degrade_room import Room, decay_time, design_room, reverb
from mlx_speech.errors import SpecError
from mlx_speech.specs.degrade import KBPS_LIMITS, DegradeSpec

__all__ = ["MAX_RATE", "MIN_RATE", "DegradeSpec", "DegradeToolError", "Degrader", "Room",
           "add_noise", "band_limit", "clip", "codec", "codec_rate", "colored_noise", "decay_time",
           "design_room", "ffmpeg_path", "gain", "packet_loss", "reverb"]

_LOWPASS_MAX = 0.9  # of the Nyquist frequency: the highest low-pass cutoff drawn


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _choice(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


class Degrader:
    """Applies a random chain of degradations drawn from ``spec`` to mono audio at
    ``sample_rate``.

    ``babble`` holds clean utterances (1-D, at ``sample_rate``) to mix babble noise from; with
    none, babble is never chosen. Steps that cannot apply at this rate are never chosen either
    (resampling through a rate not below it, low-pass cutoffs above 0.9 of its Nyquist). The
    spec's codec bit rates are checked against the rate here, and ffmpeg's presence when a
    codec step can be drawn, so a recipe fails before training rather than in a worker.
    """

    def __init__(self, spec: DegradeSpec, *, sample_rate: int,
                 babble: Sequence[np.ndarray] = ()) -> None:
        if not isinstance(spec, DegradeSpec):
            raise SpecError(f"Degrader: expected a DegradeSpec, got {type(spec).__name__}")
        spec.validate()
        self.spec = spec
        self.sample_rate = sr = check_rate(sample_rate, "Degrader")
        self.babble = [check_wav(u, f"Degrader: babble utterance {i}")
                       for i, u in enumerate(babble)]
        self.noise_kinds = [k for k in spec.noise_kinds if k != "babble" or self.babble]
        self.band_rates = sorted(r for r in spec.band_rates if r < sr)
        top = min(spec.lowpass_hz[1], _LOWPASS_MAX * sr / 2)
        self.lowpass_hz = [spec.lowpass_hz[0], top] if spec.lowpass_hz[0] <= top else []
        if spec.codec_prob > 0 and spec.codecs:
            for name in spec.codecs:
                for kbps in getattr(spec, f"{name}_kbps") if name in KBPS_LIMITS else [None]:
                    try:
                        codec_rate(name, sr, kbps)
                    except SpecError as exc:
                        raise SpecError(f"DegradeSpec.{name}_kbps at {sr} Hz: {exc}") from None
            ffmpeg_path()

    def _available(self, step: str) -> bool:
        if step == "noise":
            return bool(self.noise_kinds)
        if step == "band":
            return bool(self.band_rates or self.lowpass_hz)
        if step == "codec":
            return bool(self.spec.codecs)
        return True

    def plan(self, rng: np.random.Generator) -> list[str]:
        """The steps to apply, in order: each drawn with its probability, then at most
        ``max_steps`` of them kept at random."""
        spec = self.spec
        steps = [s for s in spec.order if rng.random() < spec.prob(s) and self._available(s)]
        if len(steps) > spec.max_steps:
            keep = np.sort(rng.choice(len(steps), size=spec.max_steps, replace=False))
            steps = [steps[i] for i in keep]
        return steps

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """``(degraded (T,) float32, notes)``: same length as ``wav``, finite, and for the same
        generator state the same output bit for bit. ``notes`` has one short description per
        step applied (``"noise pink 7.3dB"``, ``"codec opus 12k"``)."""
        x = check_wav(wav, "Degrader")
        check_rng(rng, "Degrader")
        notes: list[str] = []
        for step in self.plan(rng):
            x, note = getattr(self, f"_{step}")(x, rng)
            notes.append(note)
            peak = float(np.max(np.abs(x)))
            if peak > 1.0:
                x = (x.astype(np.float64) / peak).astype(np.float32)
        return x, notes

    # -- the steps: each draws its parameters, applies, and describes itself ----------------
    def _noise(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        kind = _choice(rng, self.noise_kinds)
        snr = _uniform(rng, self.spec.snr_db)
        if kind == "babble":
            lo, hi = self.spec.babble_talkers
            talkers = int(rng.integers(lo, hi + 1))
            return (add_noise(x, snr, kind, rng, self.babble, talkers),
                    f"noise babble x{talkers} {snr:.1f}dB")
        return add_noise(x, snr, kind, rng), f"noise {kind} {snr:.1f}dB"

    def _reverb(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        spec = self.spec
        rt60 = _uniform(rng, spec.rt60)
        dims = [_uniform(rng, r) for r in (spec.room_length_m, spec.room_width_m,
                                           spec.room_height_m)]
        y, room = reverb(x, self.sample_rate, rt60, rng, dims)
        size = "x".join(f"{d:.1f}" for d in room.dims)
        return y, f"reverb rt60 {rt60:.2f}s room {size}m"

    def _band(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        resample = bool(self.band_rates) and (
            not self.lowpass_hz or rng.random() < self.spec.band_resample_share)
        if resample:
            rate = int(_choice(rng, self.band_rates))
            return band_limit(x, self.sample_rate, via_rate=rate), f"band {rate / 1000:g}kHz"
        cutoff = _uniform(rng, self.lowpass_hz)
        return band_limit(x, self.sample_rate, cutoff), f"lowpass {cutoff / 1000:.1f}kHz"

    def _codec(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        name = _choice(rng, self.spec.codecs)
        if name not in KBPS_LIMITS:
            return codec(x, self.sample_rate, name), f"codec {name}"
        kbps = float(_choice(rng, getattr(self.spec, f"{name}_kbps")))
        return codec(x, self.sample_rate, name, kbps), f"codec {name} {kbps:g}k"

    def _clip(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        level = _uniform(rng, self.spec.clip_level)
        return clip(x, level), f"clip {level:.2f}"

    def _gain(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        db = _uniform(rng, self.spec.gain_db)
        return gain(x, db), f"gain {db:+.1f}dB"

    def _packet_loss(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        rate = _uniform(rng, self.spec.loss_rate)
        ms = _uniform(rng, self.spec.packet_ms)
        return (packet_loss(x, self.sample_rate, rate, ms, rng),
                f"packet_loss {100 * rate:.0f}% {ms:.0f}ms")
