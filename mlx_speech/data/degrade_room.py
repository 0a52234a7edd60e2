"""Reverberation from simulated shoebox rooms (pyroomacoustics' image source model).

Framework-free (numpy, scipy; pyroomacoustics is imported inside the functions that use it, so
importing this module loads nothing). The walls' absorption starts from inverse Sabine for the
target RT60. The image source model of a shoebox with one absorption for every wall does not
decay as Sabine says: in a flat or long room the paths along the floor meet few walls, the tail
is slower (a third longer at the ranges the default recipe draws) and the decay curve bends.
So a shorter probe simulation measures the room's own decay time, and the absorption is
corrected once for it: with the image geometry fixed the decay rate is proportional to
``-ln(1 - a)``, so ``1 - a' = (1 - a) ** (T_probe / T_target)``. The decay time matched is the
geometric mean of T20 and T30 (Schroeder integration from -5 dB to -25 / -35 dB): the curve
bends, and matching both halves keeps either estimate of the final response within about 20 %
of the target (T20 a little short, T30 a little long).

The final simulation keeps images up to 0.7 of the order that would reach a full 60 dB decay:
what it leaves out arrives more than 40 dB down and costs most of the simulation.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from mlx_speech.data.degrade_ops import (DegradeToolError, check_number, check_rate, check_rng,
                                         check_wav, fit_length)
from mlx_speech.errors import SpecError

__all__ = ["Room", "decay_time", "design_room", "reverb"]

_DEFAULT_DIMS = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))  # length, width, height ranges (m)
_MAX_ABSORPTION = 0.9  # a room that would need more is shrunk until it needs this
_WALL_MARGIN_M = 0.5  # source and microphone stay this far from every wall
_MIN_DISTANCE_M = 0.5  # and this far from each other
_PROBE_ORDER, _FINAL_ORDER = 0.6, 0.7  # fractions of the image order of a full 60 dB decay


@dataclasses.dataclass(frozen=True)
class Room:
    """One simulated room and its impulse response.

    ``rir`` is float32 at the sample rate, scaled to unit energy (a reverberated signal keeps
    roughly its input's power), and starts shortly before the direct path, whose peak is at
    index ``direct``; ``rt60`` is the design target the absorption was set for.
    """

    dims: tuple[float, float, float]
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    rt60: float
    sabine_absorption: float
    absorption: float
    max_order: int
    rir: np.ndarray
    direct: int


def _pyroomacoustics():
    try:
        import pyroomacoustics  # noqa: PLC0415
    except ImportError:
        raise DegradeToolError("pyroomacoustics is not installed: the reverb degradation needs "
                               "it (pip install pyroomacoustics)") from None
    return pyroomacoustics


def sabine_absorption(rt60: float, dims: np.ndarray, c: float) -> float:
    """Inverse Sabine: the energy absorption of every wall that gives ``rt60`` in a shoebox."""
    volume = float(np.prod(dims))
    surface = 2.0 * sum(a * b for a, b in itertools.combinations(dims, 2))
    return 24.0 * math.log(10.0) * volume / (c * surface * rt60)


def _image_order(rt60: float, dims: np.ndarray, c: float) -> int:
    """The image order whose images cover every path up to ``c * rt60`` long: the radius of
    the largest sphere inside the pile of mirrored rooms of that order."""
    radius = min(a * b / math.hypot(a, b) for a, b in itertools.combinations(dims, 2))
    return max(1, math.ceil(c * rt60 / radius - 1))


def decay_time(rir: np.ndarray, sr: int, db: tuple[float, float] = (-5.0, -25.0)) -> float:
    """The RT60 of ``rir`` by Schroeder backward integration: the least-squares slope of the
    energy decay curve between ``db[0]`` and ``db[1]``, extrapolated to 60 dB (T20 by
    default). Integration starts at the largest sample. NaN when the curve never gets there."""
    h = np.asarray(rir, dtype=np.float64)
    h = h[int(np.argmax(np.abs(h))):]
    energy = np.cumsum(np.square(h)[::-1])[::-1]
    if energy.size == 0 or energy[0] <= 0:
        return float("nan")
    edc = 10.0 * np.log10(np.maximum(energy / energy[0], 1e-300))
    idx = np.nonzero((edc <= db[0]) & (edc >= db[1]))[0]
    if idx.size < 2:
        return float("nan")
    slope = np.polyfit(idx / sr, edc[idx], 1)[0]
    return float(-60.0 / slope) if slope < 0 else float("nan")


def _simulate(pra, dims, source, mic, sr: int, absorption: float, order: int) -> np.ndarray:
    room = pra.ShoeBox(list(dims), fs=sr, materials=pra.Material(absorption), max_order=order,
                       air_absorption=False)
    room.add_source(list(source))
    room.add_microphone(list(mic))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float64)


def _draw_dims(rng: np.random.Generator, room_dim) -> np.ndarray:
    if room_dim is None:
        return np.array([rng.uniform(lo, hi) for lo, hi in _DEFAULT_DIMS])
    if len(room_dim) != 3:
        raise SpecError(f"reverb: room_dim must be [length, width, height], got {room_dim!r}")
    return np.array([check_number(d, "reverb: room_dim sides (m)", 1.5, 50.0) for d in room_dim])


def design_room(sr: int, rt60: float, rng: np.random.Generator, room_dim=None) -> Room:
    """A shoebox room of RT60 ``rt60`` (s) with a random source and microphone, simulated.

    ``room_dim`` is ``[length, width, height]`` in metres (drawn from 3-10 x 3-8 x 2.4-4 when
    ``None``); a room too large for so short an RT60 even with absorbing walls is scaled down
    until it fits. See the module docstring for how the absorption is set.
    """
    sr = check_rate(sr, "reverb")
    rt60 = check_number(rt60, "reverb: rt60 (s)", 0.05, 2.0)
    check_rng(rng, "reverb")
    pra = _pyroomacoustics()
    c = float(pra.constants.get("c"))
    dims = _draw_dims(rng, room_dim)
    a0 = sabine_absorption(rt60, dims, c)
    if a0 > _MAX_ABSORPTION:  # absorption ~ volume / surface: linear in the room's scale
        dims = dims * (_MAX_ABSORPTION / a0)
        a0 = _MAX_ABSORPTION
        if dims.min() < 2 * _WALL_MARGIN_M + 0.1:
            raise SpecError(f"reverb: rt60 {rt60} s is too short for any room")
    for _ in range(100):
        source = rng.uniform(_WALL_MARGIN_M, dims - _WALL_MARGIN_M)
        mic = rng.uniform(_WALL_MARGIN_M, dims - _WALL_MARGIN_M)
        if np.linalg.norm(source - mic) >= _MIN_DISTANCE_M:
            break
    full = _image_order(rt60, dims, c)
    probe = _simulate(pra, dims, source, mic, sr, a0, max(1, math.ceil(full * _PROBE_ORDER)))
    tail = probe[_direct_index(pra, probe, source, mic, sr, c):]
    measured = math.sqrt(decay_time(tail, sr) * decay_time(tail, sr, (-5.0, -35.0)))
    a1 = a0
    if math.isfinite(measured) and measured > 0:
        a1 = min(max(1.0 - (1.0 - a0) ** (measured / rt60), 0.01), 0.99)
    order = max(1, math.ceil(full * _FINAL_ORDER))
    h = _simulate(pra, dims, source, mic, sr, a1, order)
    peak = _direct_index(pra, h, source, mic, sr, c)
    pre = min(peak, int(pra.constants.get("frac_delay_length")) // 2)
    h = h[peak - pre:]
    h /= math.sqrt(float(np.sum(np.square(h))))
    return Room(dims=tuple(map(float, dims)), source=tuple(map(float, source)),
                mic=tuple(map(float, mic)), rt60=rt60, sabine_absorption=a0, absorption=a1,
                max_order=order, rir=h.astype(np.float32), direct=pre)


def _direct_index(pra, h: np.ndarray, source, mic, sr: int, c: float) -> int:
    """The direct path's peak: the largest sample within 2 of where its distance puts it
    (pyroomacoustics centres each arrival's fractional-delay filter, half a filter late)."""
    distance = float(np.linalg.norm(np.asarray(source) - np.asarray(mic)))
    expect = round(distance / c * sr) + int(pra.constants.get("frac_delay_length")) // 2
    lo, hi = max(expect - 2, 0), min(expect + 3, h.size)
    if hi <= lo:
        return int(np.argmax(np.abs(h)))
    return lo + int(np.argmax(np.abs(h[lo:hi])))


def reverb(wav: np.ndarray, sr: int, rt60: float, rng: np.random.Generator,
           room_dim=None) -> tuple[np.ndarray, Room]:
    """``wav`` as heard in a simulated room of RT60 ``rt60``: ``(reverberant (T,) float32,
    room)``. The direct sound stays where it was in the input (the propagation delay is
    removed); the tail past the input's end is cut, so the length is unchanged."""
    from scipy import signal  # noqa: PLC0415

    x = check_wav(wav, "reverb")
    room = design_room(sr, rt60, rng, room_dim)
    wet = signal.fftconvolve(x.astype(np.float64), room.rir.astype(np.float64))
    return fit_length(wet, x.size, room.direct), room
