"""Quality metrics: known values, invariances, batching, PESQ / STOI ordering, and input errors."""

import builtins

import mlx_speech  # noqa: F401
import librosa
import numpy as np
import pytest

from mlx_speech.audio import metrics
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import AudioError, UserError

SR = 16000


@pytest.fixture(scope="module")
def clean():
    return speechlike(SR, 2.0, seed=0).astype(np.float64)


def _noise_at(x, snr_db, seed=0):
    n = np.random.default_rng(seed).standard_normal(x.shape)
    return n * np.sqrt(np.sum(x**2) / np.sum(n**2) / 10 ** (snr_db / 10))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 30.0])
def test_snr_and_si_sdr_known_values(clean, snr_db):
    noisy = clean + _noise_at(clean, snr_db)
    assert metrics.snr(clean, noisy) == pytest.approx(snr_db, abs=1e-9)
    # white noise is almost orthogonal to the signal: SI-SDR ~= SNR
    assert metrics.si_sdr(clean, noisy) == pytest.approx(snr_db, abs=0.3)


def test_si_sdr_scale_invariance_and_snr_is_not(clean):
    noisy = clean + _noise_at(clean, 15.0)
    base = metrics.si_sdr(clean, noisy)
    for gain in (0.1, 3.0, -2.0):
        assert metrics.si_sdr(clean, gain * noisy) == pytest.approx(base, abs=1e-9)
    assert metrics.snr(clean, 0.5 * clean) == pytest.approx(20 * np.log10(2), abs=1e-9)
    assert metrics.si_sdr(clean, 0.5 * clean) > 150  # exact up to scale: capped, not inf
    assert np.isfinite(metrics.snr(clean, clean))


def test_batched_metrics_match_per_row(clean):
    est = np.stack([clean + _noise_at(clean, 5.0, 1), clean + _noise_at(clean, 25.0, 2)])
    ref = np.stack([clean, clean])
    for fn, kw in [
        (metrics.snr, {}), (metrics.si_sdr, {}), (metrics.spectral_convergence, {}),
        (metrics.log_spectral_distance, {}), (metrics.mel_distance, {"sample_rate": SR}),
    ]:
        out = fn(ref, est, **kw)
        assert isinstance(out, np.ndarray) and out.shape == (2,)
        np.testing.assert_allclose(out, [fn(ref[0], est[0], **kw), fn(ref[1], est[1], **kw)], rtol=1e-12)
        assert out[0] != out[1]


def test_spectral_metrics_zero_for_identical_and_grow_with_noise(clean):
    mild, strong = clean + _noise_at(clean, 30.0), clean + _noise_at(clean, 5.0)
    for fn, kw in [
        (metrics.spectral_convergence, {}), (metrics.log_spectral_distance, {}),
        (metrics.mel_distance, {"sample_rate": SR}),
    ]:
        assert fn(clean, clean, **kw) == pytest.approx(0.0, abs=1e-9)
        assert 0 < fn(clean, mild, **kw) < fn(clean, strong, **kw)
    # phase-blind: a sign flip leaves the magnitude spectrum unchanged
    assert metrics.spectral_convergence(clean, -clean) == pytest.approx(0.0, abs=1e-9)


def test_mel_distance_matches_librosa_reference(clean):
    est = clean + _noise_at(clean, 10.0)
    kw = dict(sr=SR, n_fft=1024, hop_length=256, n_mels=80, power=1.0, pad_mode="reflect")
    ref_lr = np.log(np.maximum(librosa.feature.melspectrogram(y=clean, **kw), 1e-5))
    ref_le = np.log(np.maximum(librosa.feature.melspectrogram(y=est, **kw), 1e-5))
    expected = np.abs(ref_lr - ref_le).mean()
    assert metrics.mel_distance(clean, est, sample_rate=SR) == pytest.approx(expected, rel=1e-6)


def test_length_mismatch_trims_to_shorter(clean):
    noisy = clean + _noise_at(clean, 10.0)
    assert metrics.si_sdr(clean[:-123], noisy) == pytest.approx(metrics.si_sdr(clean[:-123], noisy[:-123]))
    assert metrics.snr(clean, noisy[:-7]) == pytest.approx(metrics.snr(clean[:-7], noisy[:-7]))


@pytest.mark.parametrize(
    "ref,est,needle",
    [
        (np.zeros(100), np.zeros((1, 100)), "both be"),
        (np.zeros((2, 100)), np.zeros((3, 100)), "batch sizes"),
        (np.zeros(0), np.zeros(0), "empty"),
        (np.zeros((2, 2, 5)), np.zeros((2, 2, 5)), "both be"),
        (np.array([0.0, np.nan, 1.0]), np.zeros(3), "nan"),
    ],
    ids=["rank", "batch", "empty", "rank3", "nan"],
)
def test_bad_inputs_raise_audio_error(ref, est, needle):
    for fn in (metrics.snr, metrics.si_sdr, metrics.spectral_convergence):
        with pytest.raises(AudioError) as e:
            fn(ref, est)
        msg = str(e.value)
        assert "\n" not in msg and needle in msg.lower() and fn.__name__ in msg


def test_pesq_identical_high_noisy_lower(clean):
    pytest.importorskip("pesq")
    clean_nb = speechlike(8000, 2.0, seed=0)
    noisy = clean + _noise_at(clean, 10.0)
    same = metrics.pesq_score(clean, clean, SR)
    worse = metrics.pesq_score(clean, noisy, SR)
    assert same > 4.0 and worse < same - 1.0
    assert metrics.pesq_score(clean_nb, clean_nb, 8000) > 4.0  # narrow-band path
    x22 = speechlike(22050, 2.0, seed=0)
    assert metrics.pesq_score(x22, x22, 22050) > 4.0  # resampled to 16 kHz, wide-band
    with pytest.raises(AudioError, match="1-D"):
        metrics.pesq_score(np.stack([clean, clean]), np.stack([clean, clean]), SR)


def test_pesq_failure_is_audio_error():
    pytest.importorskip("pesq")
    with pytest.raises(AudioError) as e:
        metrics.pesq_score(np.zeros(SR), np.zeros(SR), SR)
    assert "\n" not in str(e.value) and "silent" in str(e.value)
    short = speechlike(SR, 0.1)  # pesq's own error, passed on as one line
    with pytest.raises(AudioError) as e:
        metrics.pesq_score(short, short, SR)
    assert "\n" not in str(e.value) and "PESQ failed: Buffer needs" in str(e.value)


def test_missing_metric_packages_raise_user_error(monkeypatch, clean):
    real_import = builtins.__import__

    def no_metric_packages(name, *args, **kwargs):
        if name in ("pesq", "pystoi"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_metric_packages)
    with pytest.raises(UserError, match="pip install pesq"):
        metrics.pesq_score(clean, clean, SR)
    with pytest.raises(UserError, match="pip install pystoi"):
        metrics.stoi_score(clean, clean, SR)


def test_stoi_identical_and_noisy(clean):
    pytest.importorskip("pystoi")
    noisy = clean + _noise_at(clean, -5.0)
    assert metrics.stoi_score(clean, clean, SR) == pytest.approx(1.0, abs=1e-6)
    s = metrics.stoi_score(clean, noisy, SR)
    e = metrics.stoi_score(clean, noisy, SR, extended=True)
    assert 0.0 < s < 0.95 and e < 0.95
