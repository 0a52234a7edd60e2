"""Ground-truth-aligned (GTA) mels of a TTS voice: what its acoustic model says for each corpus
utterance when given the utterance's own durations, pitch and energy, frame for frame aligned
with the recorded audio. A vocoder fine-tuned on (GTA mel, audio) pairs learns to absorb the
acoustic model's errors (the HiFi-GAN paper's fine-tuning on Tacotron 2's teacher-forced mels).

    mlx-speech data tts-gta --voice en_slt --manifest data/tts_slt/manifest.jsonl -o data/tts_slt_gta

writes one ``<wav stem>.npy`` per utterance (``(T, n_mels)`` float32 natural-log mel, ``T`` =
the centred frames of the audio, as the ``hifigan`` task's own front end gives) and a
``gta.json`` summary; the ``hifigan`` task reads them with ``model.mel_dir``. Needs a corpus with
phone timings (``alignment: corpus`` voices: festival / flite corpora); MLX.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import UserError


def gta_mels(voice: str | os.PathLike | None, manifest: str | os.PathLike, out_dir: str | os.PathLike,
             *, progress: bool = True) -> dict[str, Any]:
    """Write the GTA mel of every item of ``manifest`` (see the module docstring)."""
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.pipelines.synth import resolve_voice  # noqa: PLC0415
    from mlx_speech.text import LANGUAGES  # noqa: PLC0415
    from mlx_speech.train.tts_batch import make_batch  # noqa: PLC0415
    from mlx_speech.train.tasks_tts import numpy_log_mel  # noqa: PLC0415
    from mlx_speech.train.tts_features import feature_stats, prepare_features  # noqa: PLC0415
    from mlx_speech.utils.atomic import atomic_path, atomic_write_text  # noqa: PLC0415
    from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

    voice_dir = resolve_voice(voice)
    meta = json.loads((voice_dir / "voice.json").read_text(encoding="utf-8"))
    model, spec = load_mlx_model(voice_dir / "acoustic.safetensors")
    if type(model).__name__ != "FastSpeech2":
        raise UserError(f"{voice_dir}: acoustic.safetensors is not a fastspeech2 model")
    model.eval()
    feats = prepare_features(manifest, numpy_log_mel, meta.get("mel_preset", "hifigan_22k"), progress=progress)
    stats = feature_stats(feats)
    lang = mx.array([LANGUAGES.index(meta.get("language", "en"))], dtype=mx.int32)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    l1 = []
    for i, path in enumerate(feats["path"]):
        nb = make_batch(feats, [i], **stats)
        T = len(feats["mel"][i])
        res = model(mx.array(nb["ids"]), mx.array(nb["lengths"]), mx.array(nb["durations"]),
                    mx.array(nb["pitch"]), mx.array(nb["energy"]), mx.zeros((1,), dtype=mx.int32), lang,
                    frames=T)
        mel = np.array(res["mel"][0]).astype(np.float32)
        l1.append(float(np.abs(mel - feats["mel"][i]).mean()))
        with atomic_path(out / f"{Path(path).stem}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, mel)
    summary = {"voice": str(voice_dir), "manifest": str(manifest), "items": len(l1), "out_dir": str(out),
               "mel_l1_vs_audio": round(float(np.mean(l1)), 4), "pitch_std_used": round(spec.pitch_std, 4)}
    atomic_write_text(out / "gta.json", json.dumps(summary, indent=2) + "\n")
    return summary
