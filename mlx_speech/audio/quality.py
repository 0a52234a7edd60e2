"""Speech-quality measures: DNSMOS, speaker similarity, mel-cepstral distortion, pair alignment.

Framework-free (numpy at import; the optional packages are imported inside the functions that
use them, and a missing one raises :class:`~mlx_speech.errors.MissingDependencyError` naming
what to install):

* :func:`dnsmos` -- DNSMOS P.835 (Reddy et al., 2022) SIG / BAK / OVRL plus the P.808 MOS,
  predicted from the signal alone (non-intrusive) by the ONNX models the ``speechmos`` package
  ships; run by ``onnxruntime`` on the CPU, nothing is downloaded.
* :func:`speaker_similarity` -- cosine similarity of ``resemblyzer`` VoiceEncoder (GE2E)
  utterance embeddings; the encoder's weights ship inside the package.
* :func:`mcd` -- mel-cepstral distortion (Kubichek 1993) between two renditions of the same
  text, time-aligned by DTW, by the ``mel-cepstral-distance`` package (its defaults: 32 ms
  Hann windows, 8 ms hop, 20 mel bands, coefficients 1..16), both at 16 kHz.
* :func:`align` -- the integer lag between a reference and a processed copy (codecs and
  vocoders delay their output), and both trimmed to their overlap, so sample-wise metrics
  (SI-SDR, PESQ, STOI) compare matching samples.

Inputs are 1-D array-likes at the given rate; empty, multi-channel or non-finite input raises
:class:`~mlx_speech.errors.AudioError`. Both models work at 16 kHz: other rates are resampled
(soxr HQ, as :func:`mlx_speech.audio.io.resample`).
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

import numpy as np

from mlx_speech.audio.checks import mono
from mlx_speech.errors import AudioError, MissingDependencyError

__all__ = ["MODEL_RATE", "align", "dnsmos", "mcd", "require", "speaker_similarity"]

MODEL_RATE = 16000  # the rate both DNSMOS and the VoiceEncoder were trained at
_DNSMOS_WINDOW_S = 9.01  # speechmos' INPUT_LENGTH: the clip length its models score
_SIM_LEVEL_DBFS = -30.0  # resemblyzer's audio_norm_target_dBFS

# module that failed to import -> (pip package to name, pip arguments that provide it)
_INSTALL = {
    "speechmos": ("speechmos", "speechmos onnxruntime"),
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "requests": ("requests", "requests"),  # speechmos imports it (and never uses it)
    # resemblyzer's metadata asks for the `typing` backport and the `webrtcvad` sdist, whose
    # module imports pkg_resources (gone from setuptools >= 81): install it without its
    # dependencies, with webrtcvad-wheels (same module, no pkg_resources) beside it.
    "resemblyzer": ("resemblyzer", "--no-deps resemblyzer webrtcvad-wheels"),
    "webrtcvad": ("webrtcvad-wheels", "webrtcvad-wheels"),
    "pkg_resources": ("webrtcvad-wheels", "webrtcvad-wheels"),
    "torch": ("torch", "torch"),
    "mel_cepstral_distance": ("mel-cepstral-distance", "mel-cepstral-distance"),
}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` for ``what`` (a function or metric name), or raise one line naming
    the pip package that is missing (also when a dependency of ``module`` is the one missing)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = (err.name or module).split(".")[0]
        package, args = _INSTALL.get(missing, (missing, missing))
        raise MissingDependencyError(f"{what} needs the '{package}' package (no module named "
                                     f"'{missing}'): pip install {args}") from None


def _mono(wav: Any, name: str, what: str = "input") -> np.ndarray:
    """``wav`` as a finite, non-empty 1-D float64 array, or an AudioError naming ``name``."""
    return mono(wav, f"{name} ({what})").astype(np.float64)


def _audible(x: np.ndarray, name: str, what: str) -> None:
    if not np.abs(x).max() > 0:
        raise AudioError(f"{name}: the {what} is silent (all zeros)")


def _at_model_rate(x: np.ndarray, sr: int) -> np.ndarray:
    from mlx_speech.audio.io import resample  # noqa: PLC0415

    return np.asarray(resample(x.astype(np.float32), int(sr), MODEL_RATE), dtype=np.float32)


def align(ref: Any, est: Any, max_lag: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The lag of ``est`` against ``ref`` and the pair trimmed to its overlap.

    ``lag`` is the integer in ``[-max_lag, max_lag]`` that maximises the cross-correlation
    ``sum_n ref[n] * est[n + lag]`` (positive: ``est`` is late). Returns ``(ref_aligned,
    est_aligned, lag)``, float64 arrays of one length, so that ``est_aligned[n]`` matches
    ``ref_aligned[n]``. On a tie (silence) the smallest ``|lag|`` wins, so an unrelated or
    silent pair is left as it was; ``max_lag=0`` only trims both to the shorter length.
    The correlation is computed over all lags at once with an FFT.
    """
    r, e = _mono(ref, "align", "reference"), _mono(est, "align", "estimate")
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 0:
        raise AudioError(f"align: max_lag must be an int >= 0, got {max_lag!r}")
    reach = min(int(max_lag), r.size - 1, e.size - 1)
    if reach > 0:
        nfft = 1 << (r.size + e.size - 2).bit_length()  # >= len(r) + len(e) - 1: no wrap-around
        corr = np.fft.irfft(np.conj(np.fft.rfft(r, nfft)) * np.fft.rfft(e, nfft), nfft)
        steps = np.arange(1, reach + 1)
        lags = np.empty(2 * reach + 1, dtype=np.int64)  # 0, 1, -1, 2, -2, ...: ties go to small |lag|
        lags[0], lags[1::2], lags[2::2] = 0, steps, -steps
        lag = int(lags[np.argmax(corr[lags])])  # negative lags index from the end (circular)
    else:
        lag = 0
    if lag > 0:
        e = e[lag:]
    elif lag < 0:
        r = r[-lag:]
    n = min(r.size, e.size)
    return r[:n], e[:n], lag


def dnsmos(wav: Any, sr: int) -> dict[str, float]:
    """DNSMOS of one utterance: ``{"ovrl", "sig", "bak", "p808"}`` MOS predictions (about 1-5).

    P.835 SIG (speech distortion), BAK (background noise) and OVRL (overall) come from
    ``sig_bak_ovr.onnx`` with the published polynomial calibration; ``p808`` is the P.808
    overall MOS from ``model_v8.onnx``. Scored as given at 16 kHz (resampled; no level
    normalisation, so the level matters as it does to a listener), clipped to [-1, 1] as
    playback would. speechmos averages 9.01-s windows with a 1-s hop; a shorter clip is
    repeated to fill exactly one window. A silent signal raises :class:`AudioError` (DNSMOS rates silence as
    fair, which would flatter a restoration that outputs nothing).
    """
    x = _mono(wav, "dnsmos")
    _audible(x, "dnsmos", "input")
    run = require("speechmos.dnsmos", "dnsmos").run  # onnxruntime is imported there
    x16 = np.clip(_at_model_rate(x, sr), -1.0, 1.0)
    window = int(_DNSMOS_WINDOW_S * MODEL_RATE)
    if x16.size < window:  # one window of the clip repeated, rather than speechmos' doubling
        x16 = np.resize(x16, window)  # to >= 9.01 s and scoring every 1-s hop of the repeats
    scores = run(x16, MODEL_RATE)
    return {"ovrl": float(scores["ovrl_mos"]), "sig": float(scores["sig_mos"]),
            "bak": float(scores["bak_mos"]), "p808": float(scores["p808_mos"])}


def mcd(ref: Any, ref_sr: int, est: Any, est_sr: int) -> float:
    """Mean mel-cepstral distortion in dB of ``est`` against ``ref`` (same text, any lengths),
    frames paired by dynamic time warping on the mel spectrogram; lower is closer. Both signals
    are resampled to 16 kHz (32 ms = 512 samples) and peak-normalised by the package."""
    m = require("mel_cepstral_distance.api", "mcd")
    a = _at_model_rate(_mono(ref, "mcd", "reference"), ref_sr).astype(np.float64)
    b = _at_model_rate(_mono(est, "mcd"), est_sr).astype(np.float64)
    _audible(a, "mcd", "reference")
    _audible(b, "mcd", "input")
    n, hop = m.ms_to_samples(32, MODEL_RATE), m.ms_to_samples(8, MODEL_RATE)
    specs = [m.get_X_km(m.norm_audio_signal(x), n, n, hop, "hanning") for x in (a, b)]
    value, _ = m.compare_amplitude_spectrograms(specs[0], specs[1], MODEL_RATE, 32, aligning="dtw",
                                                align_target="mel")
    return float(value)


@functools.lru_cache(maxsize=1)
def _voice_encoder() -> Any:
    """The resemblyzer VoiceEncoder on the CPU, built once per process.

    Its constructor reads the ``pretrained.pt`` inside the package with ``torch.load`` and
    torch's default ``weights_only`` loading; it prints nothing with ``verbose=False``.
    """
    resemblyzer = require("resemblyzer", "speaker_similarity")
    return resemblyzer.VoiceEncoder(device="cpu", verbose=False)


def _embedding(x: np.ndarray, sr: int) -> np.ndarray:
    x16 = _at_model_rate(x, sr).astype(np.float64)
    x16 *= 10.0 ** (_SIM_LEVEL_DBFS / 20.0) / max(float(np.sqrt(np.mean(x16**2))), 1e-12)
    return np.asarray(_voice_encoder().embed_utterance(x16.astype(np.float32)), dtype=np.float64)


def speaker_similarity(ref: Any, est: Any, sr: int) -> float:
    """Cosine similarity (<= 1; 1 is the same voice) of the VoiceEncoder embeddings of two
    utterances at ``sr``.

    Each is resampled to 16 kHz and set to the encoder's training level, -30 dBFS RMS,
    before embedding. The encoder reads linear mel energies, so the level moves the embedding:
    resemblyzer's ``preprocess_wav`` only raises quiet input, while here louder input is
    lowered too, so that a pair differing only in level scores 1. ``preprocess_wav`` would
    also cut long pauses with a voice-activity detector; that is skipped so both signals of a
    pair are embedded over the same span, whatever noise the detector hears in one of them.
    Silent input raises :class:`AudioError` (it has no level to set).
    """
    r = _mono(ref, "speaker_similarity", "reference")
    e = _mono(est, "speaker_similarity", "estimate")
    _audible(r, "speaker_similarity", "reference")
    _audible(e, "speaker_similarity", "estimate")
    require("resemblyzer", "speaker_similarity")
    a, b = _embedding(r, sr), _embedding(e, sr)
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
