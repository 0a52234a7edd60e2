"""STFT / iSTFT / mel / Griffin-Lim: against librosa (reference only), round trips, and MLX vs torch_ref parity."""

import subprocess
import sys

import librosa
import mlx.core as mx
import numpy as np
import pytest

from mlx_speech.audio import filters
from mlx_speech.audio import griffinlim as mgl
from mlx_speech.audio import spectral as msp
from mlx_speech.audio.metrics import spectral_convergence
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import AudioError, SpecError

FRAME_CFGS = [
    pytest.param(dict(n_fft=512, hop_length=128), id="512-128"),
    pytest.param(dict(n_fft=1024, hop_length=256, win_length=800), id="1024-256-w800"),
    pytest.param(dict(n_fft=400, hop_length=160), id="400-160"),
    pytest.param(dict(n_fft=512, hop_length=100, win_length=300), id="hop-not-dividing"),
]


def _signal(sr=16000, seconds=1.0, batch=1):
    x = np.stack([speechlike(sr, seconds, f0=100.0 + 25 * b, seed=b) for b in range(batch)])
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


# ---- filters ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cfg",
    [
        dict(sample_rate=16000, n_fft=512, n_mels=80),
        dict(sample_rate=22050, n_fft=1024, n_mels=80, f_max=8000.0),
        dict(sample_rate=24000, n_fft=1024, n_mels=100, htk=True, norm=None),
        dict(sample_rate=44100, n_fft=2048, n_mels=128, f_min=30.0, f_max=16000.0, norm=2),
        dict(sample_rate=8000, n_fft=256, n_mels=40, f_min=50.0, htk=True),
    ],
)
def test_mel_filterbank_matches_librosa(cfg):
    ours = filters.mel_filterbank(**cfg)
    ref = librosa.filters.mel(
        sr=cfg["sample_rate"], n_fft=cfg["n_fft"], n_mels=cfg["n_mels"], fmin=cfg.get("f_min", 0.0),
        fmax=cfg.get("f_max"), htk=cfg.get("htk", False), norm=cfg.get("norm", "slaney"),
    )
    assert ours.shape == (cfg["n_mels"], cfg["n_fft"] // 2 + 1) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_matches_librosa_and_inverts(htk):
    f = np.linspace(0, 24000, 301)
    np.testing.assert_allclose(filters.hz_to_mel(f, htk=htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
    np.testing.assert_allclose(filters.mel_to_hz(filters.hz_to_mel(f, htk=htk), htk=htk), f, atol=1e-8)
    assert isinstance(filters.hz_to_mel(1000.0, htk=htk), float)


@pytest.mark.parametrize("n", [1, 2, 400, 1024])
def test_hann_window(n):
    np.testing.assert_allclose(filters.hann_window(n), librosa.filters.get_window("hann", n, fftbins=True), atol=1e-7)
    np.testing.assert_allclose(
        filters.hann_window(n, periodic=False), librosa.filters.get_window("hann", n, fftbins=False), atol=1e-7
    )


def test_bad_filter_args_are_spec_errors():
    with pytest.raises(SpecError, match="f_min < f_max"):
        filters.mel_filterbank(sample_rate=16000, n_fft=512, n_mels=80, f_min=9000)
    with pytest.raises(SpecError, match="norm"):
        filters.mel_filterbank(sample_rate=16000, n_fft=512, n_mels=80, norm="bogus")


# ---- STFT / iSTFT ----------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", FRAME_CFGS)
@pytest.mark.parametrize("center,pad_mode", [(True, "reflect"), (True, "constant"), (False, "reflect")])
def test_stft_matches_librosa(cfg, center, pad_mode):
    x = _signal()[0]
    ours = np.array(msp.stft(mx.array(x), center=center, pad_mode=pad_mode, **cfg))
    ref = librosa.stft(x, center=center, pad_mode=pad_mode, window="hann", **cfg).T[None]
    assert ours.shape == ref.shape and ours.dtype == np.complex64
    assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize("cfg", FRAME_CFGS)
def test_istft_round_trip(cfg):
    x = _signal(batch=2)
    spec = msp.stft(mx.array(x), **cfg)
    y = np.array(msp.istft(spec, length=x.shape[1], **cfg))
    assert y.shape == x.shape
    assert np.abs(y - x).max() < 1e-5
    # default length: hop * (frames - 1), the same as librosa / torch.istft
    y_default = msp.istft(spec, **cfg)
    assert y_default.shape[1] == cfg["hop_length"] * (spec.shape[1] - 1)


def test_istft_uncentred_round_trip_inside_window_coverage():
    x = _signal()[0]
    spec = msp.stft(mx.array(x), n_fft=512, hop_length=128, center=False)
    y = np.array(msp.istft(spec, n_fft=512, hop_length=128, center=False))[0]
    assert y.shape == (512 + 128 * (spec.shape[1] - 1),)
    assert np.abs(y[256:-256] - x[256 : len(y) - 256]).max() < 1e-5


def test_stft_shapes_and_batch_rows_are_independent():
    x = _signal(batch=3)
    batch = np.array(msp.stft(mx.array(x), n_fft=512, hop_length=128))
    assert batch.shape == (3, 1 + x.shape[1] // 128, 257)
    for b in range(3):
        np.testing.assert_array_equal(batch[b : b + 1], np.array(msp.stft(mx.array(x[b]), n_fft=512, hop_length=128)))
    spec2d = msp.stft(mx.array(x[0]), n_fft=512, hop_length=128)[0]
    assert msp.istft(spec2d, n_fft=512, hop_length=128).ndim == 1


def test_stft_bad_inputs():
    with pytest.raises(AudioError, match=r"\(T,\) or \(B, T\)"):
        msp.stft(mx.zeros((1, 2, 100)), n_fft=64, hop_length=16)
    with pytest.raises(AudioError, match="too short for reflect"):
        msp.stft(mx.zeros((100,)), n_fft=512, hop_length=128)
    with pytest.raises(AudioError, match="shorter than n_fft"):
        msp.stft(mx.zeros((100,)), n_fft=512, hop_length=128, center=False)
    with pytest.raises(SpecError, match="hop_length"):
        msp.stft(mx.zeros((1000,)), n_fft=512, hop_length=0)
    with pytest.raises(AudioError, match="istft: expected"):
        msp.istft(mx.zeros((1, 10, 100), dtype=mx.complex64), n_fft=512, hop_length=128)


# ---- mel ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cfg",
    [
        dict(sample_rate=16000, n_fft=512, hop_length=128, n_mels=80, power=1.0),
        dict(sample_rate=16000, n_fft=400, hop_length=160, n_mels=80, power=2.0),
        dict(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=80, f_max=8000.0, power=1.0),
        dict(sample_rate=24000, n_fft=1024, hop_length=240, win_length=960, n_mels=100, power=1.0, htk=True),
    ],
)
def test_mel_matches_librosa(cfg):
    sr = cfg["sample_rate"]
    x = speechlike(sr, 1.0, seed=3)
    ours = np.array(msp.mel_spectrogram(mx.array(x), **cfg))[0]
    ref = librosa.feature.melspectrogram(
        y=x, sr=sr, n_fft=cfg["n_fft"], hop_length=cfg["hop_length"], win_length=cfg.get("win_length"),
        n_mels=cfg["n_mels"], fmax=cfg.get("f_max"), power=cfg["power"], htk=cfg.get("htk", False),
        center=True, pad_mode="reflect",
    ).T
    assert ours.shape == ref.shape
    rel = np.abs(ours - ref) / np.maximum(ref, 1e-12)
    assert rel.max() < 1e-4, rel.max()
    ours_log = np.array(msp.log_mel(mx.array(x), floor=1e-5, **cfg))[0]
    assert np.abs(ours_log - np.log(np.maximum(ref, 1e-5))).max() < 1e-4


def test_log_mel_floor():
    out = np.array(msp.log_mel(mx.zeros((2, 4000)), sample_rate=16000, n_fft=512, hop_length=128, n_mels=40, floor=1e-3))
    assert out.shape == (2, 1 + 4000 // 128, 40)
    np.testing.assert_allclose(out, np.log(1e-3), rtol=1e-6)


# ---- Griffin-Lim -------------------------------------------------------------------------------

def _gl_setup():
    x = _signal(seconds=1.0)[0]
    mag = msp.magnitude(msp.stft(mx.array(x), n_fft=512, hop_length=128))
    return x, mag


def test_griffin_lim_beats_random_phase_and_improves_with_iterations():
    x, mag = _gl_setup()
    frame = dict(n_fft=512, hop_length=128)
    sc = {}
    for n_iter in (0, 8, 32):
        y = np.array(mgl.griffin_lim(mag, n_iter=n_iter, init="random", seed=1, length=len(x), **frame))[0]
        assert y.shape == x.shape and np.isfinite(y).all()
        sc[n_iter] = spectral_convergence(x, y, **frame)
    # n_iter=0 is the random-phase baseline
    assert sc[0] > 0.5
    assert sc[8] < 0.6 * sc[0] and sc[32] < 0.75 * sc[8] and sc[32] < 0.15, sc
    y0 = np.array(mgl.griffin_lim(mag, n_iter=32, init="zeros", **frame))[0]
    assert spectral_convergence(x, y0, **frame) < 0.15


def test_mel_to_linear_and_audio():
    x = _signal(seconds=1.0)[0]
    cfg = dict(sample_rate=16000, n_fft=512, n_mels=80)
    mel = msp.mel_spectrogram(mx.array(x), hop_length=128, **cfg)
    fb = mx.array(filters.mel_filterbank(**cfg))
    err = {}
    for k in (0, 16):
        lin = mgl.mel_to_linear(mel, n_iter=k, **cfg)
        assert lin.shape == (1, mel.shape[1], 257) and mx.min(lin).item() >= 0
        # the NNLS steps minimise the squared mel error, so measure that one
        err[k] = (mx.sqrt(((lin @ fb.T - mel) ** 2).sum() / (mel**2).sum())).item()
    assert err[16] < 0.9 * err[0] and err[0] < 0.01, err
    y = mgl.mel_to_audio(mx.log(mel), hop_length=128, log_input=True, n_iter=16, length=len(x), **cfg)
    assert y.shape == (1, len(x))
    assert spectral_convergence(x, np.array(y)[0], n_fft=512, hop_length=128) < 0.3


def test_griffin_lim_bad_args():
    _, mag = _gl_setup()
    with pytest.raises(AudioError, match="expected magnitude"):
        mgl.griffin_lim(mag, n_fft=1024, hop_length=128)
    with pytest.raises(SpecError, match="momentum"):
        mgl.griffin_lim(mag, n_fft=512, hop_length=128, momentum=1.5)
    with pytest.raises(SpecError, match="init"):
        mgl.griffin_lim(mag, n_fft=512, hop_length=128, init="noise")
    with pytest.raises(AudioError, match="frames"):
        mgl.griffin_lim(mag, n_fft=512, hop_length=128, length=100)


# ---- MLX vs torch_ref parity -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tref():
    pytest.importorskip("torch")
    import torch_ref.audio as tref

    return tref


@pytest.mark.parametrize(
    "cfg",
    [
        dict(n_fft=512, hop_length=128),
        dict(n_fft=1024, hop_length=256, win_length=800),
        dict(n_fft=512, hop_length=100, pad_mode="constant"),
    ],
)
def test_parity_stft_mel(tref, cfg):
    import torch

    x = _signal(batch=2)
    xm, xt = mx.array(x), torch.from_numpy(x)
    a, b = np.array(msp.stft(xm, **cfg)), tref.stft(xt, **cfg).numpy()
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max()  # |X| reaches ~30 here: relative
    np.testing.assert_allclose(np.array(msp.magnitude(mx.array(a))), tref.magnitude(torch.from_numpy(a)).numpy(), atol=1e-6)
    for power in (1.0, 2.0):
        kw = dict(sample_rate=16000, n_mels=80, power=power, **cfg)
        ma, mb = np.array(msp.mel_spectrogram(xm, **kw)), tref.mel_spectrogram(xt, **kw).numpy()
        assert np.abs(ma - mb).max() <= 1e-6 * np.abs(mb).max()
        la, lb = np.array(msp.log_mel(xm, **kw)), tref.log_mel(xt, **kw).numpy()
        # log-mel error is relative mel error: float32 FFT rounding gives ~1e-5 in bins 40+ dB
        # below the peak (each back end is that far from a float64 reference), far less above.
        assert np.abs(la - lb).max() <= 5e-5
        loud = mb >= 1e-2 * mb.max(axis=(1, 2), keepdims=True)
        assert np.abs(la - lb)[loud].max() <= 1e-5


@pytest.mark.parametrize("center", [True, False])
def test_parity_istft(tref, center):
    import torch

    cfg = dict(n_fft=512, hop_length=128, win_length=400)
    spec = np.array(msp.stft(mx.array(_signal(batch=2)), center=center, **cfg))
    ya = np.array(msp.istft(mx.array(spec), center=center, **cfg))
    yb = tref.istft(torch.from_numpy(spec), center=center, **cfg).numpy()
    assert ya.shape == yb.shape
    # uncentred: the first / last few samples are divided by a near-zero window sum
    inner = slice(None) if center else slice(256, -256)
    assert np.abs(ya[:, inner] - yb[:, inner]).max() <= 1e-6


def test_parity_griffin_lim_and_mel_inversion(tref):
    import torch

    _, mag = _gl_setup()
    frame = dict(n_fft=512, hop_length=128)
    ga = np.array(mgl.griffin_lim(mag, n_iter=4, init="zeros", **frame))
    gb = tref.griffin_lim(torch.from_numpy(np.array(mag)), n_iter=4, init="zeros", **frame).numpy()
    assert np.abs(ga - gb).max() <= 1e-4
    ra = np.array(mgl.griffin_lim(mag, n_iter=2, init="random", seed=3, **frame))
    rb = tref.griffin_lim(torch.from_numpy(np.array(mag)), n_iter=2, init="random", seed=3, **frame).numpy()
    assert np.abs(ra - rb).max() <= 1e-4
    mel = np.array(msp.mel_spectrogram(mx.array(_signal()), sample_rate=16000, n_mels=80, **frame))
    kw = dict(sample_rate=16000, n_fft=512, n_mels=80, n_iter=8)
    la, lb = np.array(mgl.mel_to_linear(mx.array(mel), **kw)), tref.mel_to_linear(torch.from_numpy(mel), **kw).numpy()
    assert np.abs(la - lb).max() <= 1e-5 * np.abs(lb).max()


# ---- import hygiene ----------------------------------------------------------------------------

def test_audio_package_and_torch_ref_do_not_import_mlx():
    code = (
        "import sys, mlx_speech.audio as A; import mlx_speech.audio.filters, mlx_speech.audio.io, "
        "mlx_speech.audio.metrics; assert 'mlx.core' not in sys.modules, 'audio'; "
        "import importlib.util as u\n"
        "if u.find_spec('torch'):\n"
        "    import torch_ref.audio; assert 'mlx.core' not in sys.modules, 'torch_ref'\n"
        "A.stft; assert 'mlx.core' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
