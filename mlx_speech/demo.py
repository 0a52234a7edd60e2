"""The main job until a bundled TTS model lands: speech -> log-mel -> Griffin-Lim -> WAV.

Runs the MLX DSP path end to end on real input (``--input``) or on a built-in synthetic
speech-like signal, writes the reconstruction, and reports how close it is. Griffin-Lim
cannot recover the original phase, so waveform metrics (SNR, SI-SDR) are expected to be poor;
magnitude-domain metrics (mel distance, spectral convergence) and PESQ/STOI tell the quality.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.specs import MelSpec


def run_demo(*, input_path: Path | None, output: Path, preset: str = "hifigan_22k",
             n_iter: int = 64) -> dict[str, Any]:
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.audio import metrics  # noqa: PLC0415
    from mlx_speech.audio.griffinlim import griffin_lim, mel_to_linear  # noqa: PLC0415
    from mlx_speech.audio.io import load, save  # noqa: PLC0415
    from mlx_speech.audio.spectral import log_mel  # noqa: PLC0415
    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415

    spec = MelSpec.from_preset(preset)
    sr = spec.sample_rate
    if input_path is not None:
        wav, _ = load(input_path, sr=sr, mono=True)
        source = str(input_path)
    else:
        wav = speechlike(sr=sr, seconds=3.0)
        source = "synthetic speech-like signal (3 s)"

    t0 = time.perf_counter()
    kw = spec.mel_kwargs()
    logmel = log_mel(mx.array(wav), **kw, floor=spec.log_floor)
    linear = mel_to_linear(mx.exp(logmel), sample_rate=sr, n_fft=spec.n_fft, n_mels=spec.n_mels,
                           f_min=spec.f_min, f_max=spec.f_max, htk=kw["htk"], norm=spec.norm,
                           power=spec.power)
    rec = griffin_lim(linear, n_fft=spec.n_fft, hop_length=spec.hop_length,
                      win_length=spec.win_length, n_iter=n_iter, length=wav.shape[-1])
    rec = np.array(rec[0])
    elapsed = time.perf_counter() - t0
    save(output, rec, sr)

    duration = wav.shape[-1] / sr
    result: dict[str, Any] = {
        "input": source,
        "output": str(output),
        "sample_rate": sr,
        "duration_s": round(duration, 3),
        "mel": f"{spec.n_mels} mels, n_fft {spec.n_fft}, hop {spec.hop_length}",
        "griffin_lim_iters": n_iter,
        "rtf": round(elapsed / duration, 4),
        "snr_db": round(metrics.snr(wav, rec), 2),
        "si_sdr_db": round(metrics.si_sdr(wav, rec), 2),
        "mel_distance": round(metrics.mel_distance(wav, rec, sample_rate=sr), 4),
        "spectral_convergence": round(metrics.spectral_convergence(wav, rec), 4),
        "log_spectral_distance_db": round(metrics.log_spectral_distance(wav, rec), 3),
    }
    for name, fn in (("pesq", metrics.pesq_score), ("stoi", metrics.stoi_score)):
        try:
            result[name] = round(float(fn(wav, rec, sr)), 3)
        except Exception as exc:  # noqa: BLE001 - optional metrics: report why they are absent
            result[name] = f"unavailable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return result
