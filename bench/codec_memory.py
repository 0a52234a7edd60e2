"""Peak memory of ``mlx-speech codec encode`` on a short and a long file, one run, prints JSON.

Each encode runs in a fresh process (``ru_maxrss``: the process's peak RSS, which the model's
weights dominate for a short file). The codec file is read block by block
(``mlx_speech.audio.stream``) and encoded in pieces through ``encode_step`` (with look-ahead for
a non-causal DAC), so the long file should cost about what the short one does: target
``long_over_short <= 1.15``. ``--whole-file`` also times the old way (read the whole file,
resample, encode from one array) for comparison.

Usage: ``python bench/codec_memory.py [--model mimi|dac] [--preset NAME] [--short 10]
[--long 480] [--size full|tiny] [--whole-file]``. The model is a random-init preset saved in a
temp folder (nothing is downloaded): Mimi ``mimi_202407`` (``--size tiny``: ``mimi_tiny``) or
DAC ``dac_44khz`` (``dac_tiny``); ``--preset`` names another, e.g. ``dac_speech_50hz``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
import mlx_speech
mlx_speech.accelerate()
from mlx_speech.pipelines import codec
src, dst, weights, mode, name = sys.argv[1:6]
t = time.perf_counter()
if mode == "stream":
    codec.encode_file(src, dst, model_name=name, weights=weights)
else:
    model = codec.load_codec(name, weights)
    codec.encode_wav(model, codec.read_audio(src, model.sample_rate))
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "seconds": round(time.perf_counter() - t, 2)}))
"""


def write_speechlike_wav(path: Path, seconds: float, sr: int = 16000) -> None:
    """Speech-like audio at ``sr`` written in 10 s pieces, so the writer never holds the whole
    file (16 kHz by default, so a codec also resamples; bench/restore.py uses it too)."""
    import soundfile as sf  # noqa: PLC0415

    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415

    piece = speechlike(sr=sr, seconds=10.0)
    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as fh:
        left = int(seconds * sr)
        while left > 0:
            fh.write(piece[:left])
            left -= min(left, piece.size)


DEFAULT_PRESETS = {("mimi", "full"): "mimi_202407", ("mimi", "tiny"): "mimi_tiny",
                   ("dac", "full"): "dac_44khz", ("dac", "tiny"): "dac_tiny"}


def _weights(path: Path, model: str, preset: str) -> None:
    """A random-init ``preset`` of ``model`` saved where ``codec encode --weights`` reads it."""
    import mlx_speech  # noqa: PLC0415

    mlx_speech.accelerate()
    if model == "mimi":
        from mlx_speech.models.mimi.load import save_mimi  # noqa: PLC0415
        from mlx_speech.models.mimi.model import MimiModel  # noqa: PLC0415
        from mlx_speech.models.mimi.spec import MimiSpec  # noqa: PLC0415

        save_mimi(path, MimiModel(MimiSpec.from_preset(preset)))
        return
    from mlx_speech.models.dac.model import DACModel  # noqa: PLC0415
    from mlx_speech.models.dac.spec import DACSpec  # noqa: PLC0415
    from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415

    spec = DACSpec.from_preset(preset)
    save_mlx_model(path, DACModel(spec), model="dac", spec=spec)


def _run(src: Path, dst: Path, weights: Path, mode: str, model: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(dst), str(weights), mode,
                          model], capture_output=True, text=True, cwd=ROOT, timeout=3 * 3600)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", type=float, default=10.0, help="seconds of the short file")
    ap.add_argument("--long", type=float, default=480.0, help="seconds of the long file")
    ap.add_argument("--model", choices=["mimi", "dac"], default="mimi")
    ap.add_argument("--preset", default=None, help="a preset of the model's spec (default: "
                    "mimi_202407 / dac_44khz, or mimi_tiny / dac_tiny with --size tiny)")
    ap.add_argument("--size", choices=["full", "tiny"], default="full")
    ap.add_argument("--whole-file", action="store_true", help="also measure whole-file reading")
    args = ap.parse_args()
    preset = args.preset or DEFAULT_PRESETS[args.model, args.size]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / f"{args.model}.safetensors"
        _weights(weights, args.model, preset)
        res: dict = {"bench": "codec_encode_peak_rss", "model": args.model, "preset": preset,
                     "short_seconds": args.short, "long_seconds": args.long}
        for name, seconds in (("short", args.short), ("long", args.long)):
            write_speechlike_wav(tmp / f"{name}.wav", seconds)
            res[name] = _run(tmp / f"{name}.wav", tmp / f"{name}.safetensors", weights, "stream",
                             args.model)
            if args.whole_file:
                res[f"{name}_whole_file"] = _run(tmp / f"{name}.wav", tmp / "x.safetensors", weights,
                                                 "whole", args.model)
        ratio = res["long"]["peak_rss_mb"] / res["short"]["peak_rss_mb"]
        res["long_over_short"] = round(ratio, 3)
        res["target"] = {"limit": 1.15, "met": bool(ratio <= 1.15)}
        if args.whole_file:
            res["whole_file_long_over_short"] = round(
                res["long_whole_file"]["peak_rss_mb"] / res["short_whole_file"]["peak_rss_mb"], 3)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
