"""Degradations for restoration training (mlx_speech/data/degrade.py): every step is checked by
a measured property (SNR, spectral slope, RT60, stop-band energy, codec alignment, clip / gain /
loss figures), the chain by its contract (length, dtype, range, determinism), and bad input by
the one-line errors of docs/ARCHITECTURE.md section 9.

The codec tests need the ``ffmpeg`` binary: they skip without it on a developer machine and fail
under CI, which installs it (.ci/run).
"""

import dataclasses
import math
import os
import shutil

import numpy as np
import pytest
from scipy import signal

from mlx_speech.audio.synth import speechlike
from mlx_speech.data import degrade as dg
from mlx_speech.errors import AudioError, SpecError, UserError
from mlx_speech.specs.base import Spec

SR = 16000


@pytest.fixture(scope="module")
def ffmpeg():
    if shutil.which("ffmpeg") is None:
        if os.environ.get("CI"):
            pytest.fail("ffmpeg is not installed; CI must install it (.ci/run) for these tests")
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")


def _power(x) -> float:
    return float(np.mean(np.square(np.asarray(x, dtype=np.float64))))


def _babble(sr: int) -> list[np.ndarray]:
    return [speechlike(sr, 0.7 + 0.2 * i, f0=90.0 + 35 * i, seed=10 + i) for i in range(5)]


def _lag(ref: np.ndarray, out: np.ndarray, max_lag: int) -> int:
    """Cross-correlation peak: how many samples ``out`` runs behind ``ref``."""
    n = ref.size + out.size
    corr = np.fft.irfft(np.fft.rfft(out.astype(np.float64), n)
                        * np.conj(np.fft.rfft(ref.astype(np.float64), n)), n)
    lags = np.r_[0:max_lag + 1, -max_lag:0]
    return int(lags[np.argmax(corr[lags])])


def _stopband_db(y: np.ndarray, sr: int, limit_hz: float) -> float:
    """Welch PSD energy above ``limit_hz`` relative to the energy below it, in dB."""
    f, p = signal.welch(y.astype(np.float64), sr, nperseg=8192)
    return 10 * math.log10(p[f > limit_hz].sum() / p[f < limit_hz].sum())


# --- noise -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
def test_noise_is_added_at_the_target_snr(kind):
    x = speechlike(SR, 2.0, seed=1)
    rng = np.random.default_rng(0)
    for target in (-5.0, 0.0, 7.3, 20.0, 40.0):
        y = dg.add_noise(x, target, kind, rng, babble=_babble(SR), talkers=5)
        assert y.dtype == np.float32 and y.shape == x.shape
        measured = 10 * math.log10(_power(x) / _power(y.astype(np.float64) - x))
        assert abs(measured - target) < 0.5, (kind, target, measured)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(1)
    for kind, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        f, p = signal.welch(dg.colored_noise(8 * SR, kind, rng), SR, nperseg=4096)
        band = (f >= 50) & (f <= 6000)
        fitted = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
        assert abs(fitted - slope) < 0.15, (kind, fitted)


# --- reverb ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rt60, dims", [(0.3, None), (0.6, [9.5, 7.0, 2.4]), (0.9, None)])
def test_reverb_rt60_matches_the_room_design(rt60, dims):
    from pyroomacoustics.experimental import measure_rt60

    room = dg.design_room(SR, rt60, np.random.default_rng(2), dims)
    assert room.rt60 == rt60 and 0 < room.absorption < 1
    t30 = measure_rt60(room.rir, fs=SR, decay_db=30)  # pyroomacoustics' own Schroeder T30
    t20 = dg.decay_time(room.rir, SR)
    assert abs(t30 / rt60 - 1) < 0.2, (rt60, t30)
    assert abs(t20 / rt60 - 1) < 0.2, (rt60, t20)
    assert abs(_power(room.rir) * room.rir.size - 1) < 1e-3  # unit energy


def test_reverb_keeps_the_direct_sound_in_place_and_the_length():
    x = np.zeros(SR, dtype=np.float32)
    x[4000] = 1.0
    y, room = dg.reverb(x, SR, 0.5, np.random.default_rng(3))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    first = int(np.nonzero(np.abs(y) >= 0.5 * np.abs(y).max())[0][0])
    assert abs(first - 4000) <= 1  # the direct path, not delayed by the source's distance
    assert abs(y[4000]) == pytest.approx(abs(room.rir[room.direct]), rel=1e-5)


# --- band limits --------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", [16000, 22050, 24000, 44100])
def test_band_limits_stop_everything_above_the_limit(sr):
    x = (0.1 * np.random.default_rng(4).standard_normal(3 * sr)).astype(np.float32)
    cases = [({"via_rate": r}, r / 2) for r in (8000, 16000) if r < sr]
    cases += [({"cutoff_hz": c}, c) for c in (3400.0, 0.4 * sr)]
    for kwargs, limit in cases:
        y = dg.band_limit(x, sr, **kwargs)
        assert y.shape == x.shape and y.dtype == np.float32
        assert _stopband_db(y, sr, limit) < -40, (sr, kwargs, _stopband_db(y, sr, limit))
        assert _lag(x, y, 200) == 0  # neither the FIR nor soxr shifts the signal


# --- codecs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sr", [16000, 44100])
@pytest.mark.parametrize("name, kbps", [("mp3", 16), ("mp3", 64), ("opus", 6), ("opus", 16),
                                        ("vorbis", 32), ("mulaw", None), ("gsm", None)])
def test_codecs_keep_the_length_and_alignment(ffmpeg, name, kbps, sr):
    x = speechlike(sr, 1.5, f0=140.0, seed=3)
    y = dg.codec(x, sr, name, kbps)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert _lag(x, y, int(0.3 * sr)) in (-1, 0, 1)
    assert not np.allclose(x, y, atol=1e-4)  # the codec did something


def test_missing_ffmpeg_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(dg.DegradeToolError, match="ffmpeg.*apt-get install ffmpeg") as err:
        dg.codec(speechlike(SR, 0.2), SR, "opus", 8.0)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    with pytest.raises(dg.DegradeToolError, match="ffmpeg"):  # a recipe fails before training
        dg.Degrader(dg.DegradeSpec(), sample_rate=SR)
    dg.Degrader(dg.DegradeSpec(codec_prob=0.0), sample_rate=SR)  # without codecs it is not needed


# --- clip, gain, packet loss -------------------------------------------------------------------
def test_clip_gain_and_packet_loss_do_what_they_say():
    x = speechlike(SR, 1.0, seed=5)
    y = dg.clip(x, 0.3)
    limit = np.float32(0.3 * np.abs(x).max())
    assert np.abs(y).max() == pytest.approx(float(limit), rel=1e-6)
    hit = np.abs(x) >= limit
    assert np.array_equal(np.abs(y) == limit, hit) and np.array_equal(y[~hit], x[~hit])

    y = dg.gain(x, -6.0)
    assert np.array_equal(y, (x.astype(np.float64) * 10 ** (-6.0 / 20)).astype(np.float32))
    assert 10 * math.log10(_power(y) / _power(x)) == pytest.approx(-6.0, abs=1e-4)

    noise = (0.1 * np.random.default_rng(6).standard_normal(10 * SR)).astype(np.float32) + 0.5
    y = dg.packet_loss(noise, SR, 0.2, 20.0, np.random.default_rng(7))
    packets = (y.reshape(-1, 320) == 0)
    assert np.array_equal(packets.all(axis=1), packets.any(axis=1))  # whole packets only
    assert abs(packets.all(axis=1).mean() - 0.2) <= 1 / packets.shape[0]


# --- the spec -------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Recipe(Spec):
    """A recipe holding a ``degrade:`` mapping, as the restoration recipes will."""

    degrade: dg.DegradeSpec = dataclasses.field(default_factory=dg.DegradeSpec)


def test_spec_is_read_strictly_and_checked():
    assert dg.DegradeSpec.presets() == ["default", "none"]
    default = dg.DegradeSpec.from_preset("default")
    assert dg.DegradeSpec.from_yaml(default.to_yaml()) == default
    got = _Recipe.from_yaml("degrade:\n  noise_prob: 0.2\n  codecs: [opus, gsm]\n")
    assert got.degrade.noise_prob == 0.2 and got.degrade.codecs == ["opus", "gsm"]
    with pytest.raises(SpecError, match="degrade: unknown key 'reverb_rt60'"):
        _Recipe.from_yaml("degrade:\n  noise_prob: 0.2\n  reverb_rt60: [0.3, 0.5]\n")
    for bad, where in [("noise_prob: 1.5", "noise_prob"), ("snr_db: [10, 5]", "snr_db"),
                       ("codecs: [aac]", "codecs"), ("opus_kbps: [2]", "opus_kbps"),
                       ("rt60: [0, 1]", "rt60"), ("order: [noise, gain]", "order"),
                       ("noise_kinds: [pink, pink]", "noise_kinds"), ("max_steps: 0", "max_steps"),
                       ("clip_level: [0.5, 1.5]", "clip_level")]:
        with pytest.raises(SpecError, match=where) as err:
            dg.DegradeSpec.from_yaml(bad + "\n")
        assert "\n" not in str(err.value)


# --- the chain ------------------------------------------------------------------------------------
def test_degrader_is_deterministic_for_a_seed(ffmpeg):
    spec = dg.DegradeSpec(noise_prob=1.0, reverb_prob=1.0, band_prob=1.0, codec_prob=1.0,
                          clip_prob=1.0, gain_prob=1.0, packet_loss_prob=1.0, max_steps=7,
                          rt60=[0.2, 0.4], codecs=["opus", "mp3"])
    degrader = dg.Degrader(spec, sample_rate=SR, babble=_babble(SR))
    x = speechlike(SR, 1.0, seed=8)
    a, notes_a = degrader(x, np.random.default_rng(11))
    b, notes_b = degrader(x, np.random.default_rng(11))
    c, notes_c = degrader(x, np.random.default_rng(12))
    assert np.array_equal(a, b) and notes_a == notes_b and len(notes_a) == 7
    assert not np.array_equal(a, c) and notes_a != notes_c


def test_degrader_output_contract(ffmpeg):
    sr = 22050
    x = speechlike(sr, 1.0, seed=9) * 1.8  # beyond full scale on purpose
    degrader = dg.Degrader(dg.DegradeSpec.from_preset("default"), sample_rate=sr,
                           babble=_babble(sr))
    seen = set()
    for seed in range(6):
        y, notes = degrader(x, np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
        assert np.abs(y).max() <= 1.0 if notes else np.array_equal(y, x)
        assert all(isinstance(n, str) and n for n in notes) and len(notes) <= 4
        seen.update(n.split()[0] for n in notes)
    assert len(seen) >= 3

    clean = dg.Degrader(dg.DegradeSpec.from_preset("none"), sample_rate=sr)
    y, notes = clean(x, np.random.default_rng(0))
    assert notes == [] and np.array_equal(y, x)
    # a gain that would overflow is scaled back to full scale, not clipped
    loud = dg.DegradeSpec.from_preset("none").replace(gain_prob=1.0, gain_db=[6.0, 6.0])
    y, notes = dg.Degrader(loud, sample_rate=sr)(x, np.random.default_rng(0))
    assert notes == ["gain +6.0dB"] and np.abs(y).max() == 1.0
    np.testing.assert_allclose(y, x / np.abs(x).max(), atol=1e-6)


# --- bad input ------------------------------------------------------------------------------------
_RNG = np.random.default_rng(0)
_STEPS = {
    "add_noise": lambda w: dg.add_noise(w, 10.0, "white", _RNG),
    "reverb": lambda w: dg.reverb(w, SR, 0.3, _RNG),
    "band_limit": lambda w: dg.band_limit(w, SR, 3000.0),
    "codec": lambda w: dg.codec(w, SR, "mulaw"),
    "clip": lambda w: dg.clip(w, 0.5),
    "gain": lambda w: dg.gain(w, 3.0),
    "packet_loss": lambda w: dg.packet_loss(w, SR, 0.1, 20.0, _RNG),
    "Degrader": lambda w: dg.Degrader(dg.DegradeSpec(codec_prob=0.0), sample_rate=SR)(w, _RNG),
}


@pytest.mark.parametrize("step", sorted(_STEPS))
def test_bad_audio_is_an_audio_error(step):
    for bad in ([], [0.1, float("nan")], np.zeros((2, 100)), np.array(["a", "b"]),
                np.full(10, 1e300)):
        with pytest.raises(AudioError, match=step) as err:
            _STEPS[step](bad)
        assert "\n" not in str(err.value)


def test_nonsense_parameters_are_spec_errors():
    x = speechlike(SR, 0.3)
    calls = [lambda: dg.add_noise(x, 10.0, "purple", _RNG),
             lambda: dg.add_noise(x, float("nan"), "white", _RNG),
             lambda: dg.add_noise(x, 10.0, "babble", _RNG),
             lambda: dg.band_limit(x, SR, via_rate=SR),
             lambda: dg.band_limit(x, SR, 9000.0),
             lambda: dg.band_limit(x, SR),
             lambda: dg.codec(x, SR, "aac"),
             lambda: dg.codec(x, SR, "opus", 1000.0),
             lambda: dg.codec(x, SR, "gsm", 13.0),
             lambda: dg.clip(x, 0.0),
             lambda: dg.clip(x, 2.0),
             lambda: dg.packet_loss(x, SR, 1.5, 20.0, _RNG),
             lambda: dg.reverb(x, SR, -1.0, _RNG),
             lambda: dg.reverb(x, SR, 0.5, _RNG, room_dim=[4.0, 3.0]),
             lambda: dg.Degrader(dg.DegradeSpec(vorbis_kbps=[96.0]), sample_rate=8000)]
    for call in calls:
        with pytest.raises(SpecError) as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(AudioError, match="sample rate"):
        dg.Degrader(dg.DegradeSpec(), sample_rate=100)
    with pytest.raises(AudioError, match="babble utterance 1"):
        dg.Degrader(dg.DegradeSpec(), sample_rate=SR, babble=[x, np.array([np.nan])])
