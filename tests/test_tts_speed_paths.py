"""The fast synthesis paths: Griffin-Lim's numpy / pocketfft CPU loop, PGHI start phases, device choice."""

from __future__ import annotations

import numpy as np
import pytest

import mlx.core as mx

from mlx_speech.audio import griffinlim as mgl
from mlx_speech.audio import spectral as msp
from mlx_speech.audio.metrics import spectral_convergence
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import SpecError

FRAMES = [
    dict(n_fft=512, hop_length=128, win_length=None),
    dict(n_fft=1024, hop_length=256, win_length=800),
    dict(n_fft=512, hop_length=100, win_length=300),  # hop does not divide n_fft
]


def _signal(sr=16000, seconds=1.0, batch=1):
    x = np.stack([speechlike(sr, seconds, f0=110.0 + 30 * b, seed=b) for b in range(batch)])
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _mag(x, **frame):
    return msp.magnitude(msp.stft(mx.array(x), **frame))


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: f"{f['n_fft']}-{f['hop_length']}-{f['win_length']}")
def test_numpy_stft_istft_match_mlx(frame):
    x = _signal(batch=2)
    n = msp.stft(mx.array(x), **frame).shape[1]
    for length in (x.shape[1], frame["hop_length"] * (n - 1)):
        ops = mgl._NumpySTFT(n_frames=n, length=length, **frame)
        spec = ops.stft(x[:, :length] if length < x.shape[1] else x)
        ref = np.array(msp.stft(mx.array(x[:, :length]), **frame))
        assert spec.dtype == np.complex64 and spec.shape == ref.shape
        assert np.abs(spec - ref).max() <= 1e-5 * np.abs(ref).max()
        y = ops.istft(ref)
        y_ref = np.array(msp.istft(mx.array(ref), length=length, **frame))
        assert y.dtype == np.float32 and y.shape == y_ref.shape == (2, length)
        assert np.abs(y - y_ref).max() <= 1e-5
        np.testing.assert_allclose(y, x[:, :length], atol=1e-5)  # perfect reconstruction


@pytest.mark.parametrize("init", mgl.GL_INITS)
def test_cpu_loop_matches_mlx_loop(init):
    x = _signal(batch=2)
    frame = dict(n_fft=512, hop_length=128)
    mag = _mag(x, **frame)
    kw = dict(n_iter=6, init=init, seed=2, length=x.shape[1], **frame)
    a = np.array(mgl.griffin_lim(mag, numpy_path=True, **kw))
    b = np.array(mgl.griffin_lim(mag, numpy_path=False, **kw))
    assert a.shape == b.shape == x.shape and a.dtype == np.float32
    assert np.abs(a - b).max() <= 1e-4
    # 2-D magnitude gives 1-D audio on both paths
    assert mgl.griffin_lim(mag[0], numpy_path=True, **kw).shape == (x.shape[1],)


def test_pghi_start_beats_zero_phase():
    x = _signal()[0]
    frame = dict(n_fft=512, hop_length=128)
    mag = _mag(x, **frame)

    def sc(init, n_iter):
        y = np.array(mgl.griffin_lim(mag, n_iter=n_iter, init=init, length=len(x), **frame))[0]
        return spectral_convergence(x, y, **frame)

    zero0, pghi0, pghi8, zero8, zero32 = sc("zeros", 0), sc("pghi", 0), sc("pghi", 8), sc("zeros", 8), sc("zeros", 32)
    assert pghi0 < 0.7 * zero0, (pghi0, zero0)
    assert pghi8 < 0.6 * zero8 and pghi8 < 1.25 * zero32, (pghi8, zero8, zero32)


def test_pghi_phase_tracks_a_sinusoid_between_bins():
    # A stationary sinusoid between bins: the phase advance per hop is its true frequency.
    sr, f0, n_fft, hop = 16000, 1043.0, 512, 128  # 0.38 bins off bin 33
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    spec = np.array(msp.stft(mx.array(x), n_fft=n_fft, hop_length=hop))[0]
    ph = mgl.pghi_phase(np.abs(spec), n_fft=n_fft, hop_length=hop)
    assert ph.shape == spec.shape and ph.dtype == np.complex64
    k = int(round(f0 / sr * n_fft))
    est = np.angle(ph[11, k] / ph[10, k])
    true = np.angle(spec[11, k] / spec[10, k])
    assert abs(np.angle(np.exp(1j * (est - true)))) < 0.05
    # the bin-centre phase advance alone would be off by (k - f0 n_fft / sr) * 2 pi hop / n_fft
    centre = 2 * np.pi * k * hop / n_fft
    assert abs(np.angle(np.exp(1j * (centre - true)))) > 0.3


def test_pghi_parity_with_torch_ref():
    torch = pytest.importorskip("torch")
    from torch_ref.audio import griffinlim as tgl

    x = _signal()
    frame = dict(n_fft=512, hop_length=128)
    mag = np.array(_mag(x, **frame))
    pa = mgl.pghi_phase(mag, **frame)
    pb = tgl.pghi_phase(torch.from_numpy(mag), **frame).numpy()
    assert np.abs(pa - pb).max() <= 1e-5
    ga = np.array(mgl.griffin_lim(mx.array(mag), n_iter=4, init="pghi", **frame))
    gb = tgl.griffin_lim(torch.from_numpy(mag), n_iter=4, init="pghi", **frame).numpy()
    assert np.abs(ga - gb).max() <= 1e-4
    with pytest.raises(SpecError, match="init"):
        tgl.griffin_lim(torch.from_numpy(mag), n_iter=1, init="noise", **frame)


def test_device_picks_the_loop(monkeypatch):
    mag = _mag(_signal(), n_fft=512, hop_length=128)
    kw = dict(n_fft=512, hop_length=128, n_iter=1)
    calls = []
    real = mgl._griffin_lim_numpy

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(mgl, "_griffin_lim_numpy", spy)
    assert mgl.use_numpy_path() == (mx.default_device().type == mx.DeviceType.cpu)
    monkeypatch.setattr(mgl.mx, "default_device", lambda: mx.Device(mx.cpu))
    assert mgl.use_numpy_path()
    mgl.griffin_lim(mag, **kw)
    assert calls == [1]
    monkeypatch.setattr(mgl.mx, "default_device", lambda: mx.Device(mx.gpu))
    assert not mgl.use_numpy_path()
    mx.eval(mgl.griffin_lim(mag, **kw))  # a GPU default device: MLX loop (mx.fft)
    assert calls == [1]
    mgl.griffin_lim(mag, numpy_path=True, **kw)  # explicit override
    assert calls == [1, 1]


def test_synthesizer_gl_defaults_and_bad_init():
    from mlx_speech.pipelines.synth import GL_INIT, GL_ITERS, SynthError, Synthesizer

    syn = Synthesizer()
    assert (syn.gl_iters, syn.gl_init) == (GL_ITERS, GL_INIT) and GL_INIT in mgl.GL_INITS
    with pytest.raises(SynthError, match="init"):
        Synthesizer(gl_init="noise")


@pytest.mark.parametrize("cfg", [
    dict(sample_rate=22050, n_fft=1024, n_mels=80, f_max=8000.0),  # the voices' filterbank
    dict(sample_rate=16000, n_fft=512, n_mels=40, f_min=300.0, htk=True, norm=None),  # support from bin > 0
])
def test_mel_inversion_numpy_path_matches_mlx(cfg):
    x = _signal(sr=cfg["sample_rate"], batch=2)
    mel = msp.mel_spectrogram(mx.array(x), hop_length=256, **cfg)
    F = cfg["n_fft"] // 2 + 1
    for power, n_iter in ((1.0, 0), (1.0, 16), (2.0, 4)):
        m = mel if power == 1.0 else mel ** 2
        a = np.array(mgl.mel_to_linear(m, power=power, n_iter=n_iter, numpy_path=True, **cfg))
        b = np.array(mgl.mel_to_linear(m, power=power, n_iter=n_iter, numpy_path=False, **cfg))
        assert a.shape == b.shape == (2, mel.shape[1], F) and a.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), (power, n_iter)
    a2 = mgl.mel_to_linear(mel[0], n_iter=2, numpy_path=True, **cfg)  # 2-D in, 2-D out
    assert a2.shape == (mel.shape[1], F)
    y = mgl.mel_to_audio(mx.log(mel), hop_length=256, log_input=True, n_iter=4, init="pghi",
                         length=x.shape[1], **cfg)
    assert y.shape == x.shape and np.isfinite(np.array(y)).all()


def test_cli_synth_default_iterations_follow_the_library():
    from cli import cli
    from mlx_speech.pipelines.synth import GL_ITERS

    opt = {p.name: p for p in cli.commands["synth"].params}["gl_iters"]
    assert opt.default == GL_ITERS


@pytest.mark.cpu_only  # the private OpenBLAS of CPU installs
def test_blas_threads_scope_restores_the_count():
    from mlx_speech import _blas
    from mlx_speech._blas import blas_threads

    lib = getattr(_blas, "_HANDLE", None)
    with blas_threads(None):  # no-op
        pass
    if lib is None or not hasattr(lib, "openblas_set_num_threads"):
        pytest.skip("MLX runs on a BLAS without a thread setting here")
    before = lib.openblas_get_num_threads()
    with pytest.raises(RuntimeError):
        with blas_threads(1):
            assert lib.openblas_get_num_threads() == 1
            raise RuntimeError("restore on errors too")
    assert lib.openblas_get_num_threads() == before
