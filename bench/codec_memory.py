"""Peak memory of ``mlx-speech codec encode`` on a short and a long file, one run, prints JSON.

Each encode runs in a fresh process (``ru_maxrss``: the process's peak RSS, which the model's
weights dominate for a short file). The codec file is read block by block
(``mlx_speech.audio.stream``), so the long file should cost about what the short one does:
target ``long_over_short <= 1.15``. ``--whole-file`` also times the old way (read the whole file,
resample, encode from one array) for comparison.

Usage: ``python bench/codec_memory.py [--short 10] [--long 480] [--size full|tiny] [--whole-file]``.
Full size is Mimi ``mimi_202407`` with random weights (nothing is downloaded).
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
src, dst, weights, mode = sys.argv[1:5]
t = time.perf_counter()
if mode == "stream":
    codec.encode_file(src, dst, model_name="mimi", weights=weights)
else:
    model = codec.load_codec("mimi", weights)
    codec.encode_wav(model, codec.read_audio(src, model.sample_rate))
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "seconds": round(time.perf_counter() - t, 2)}))
"""


def _write_wav(path: Path, seconds: float, sr: int = 16000) -> None:
    """Speech-like audio at 16 kHz (so the encoder also resamples), written in 10 s pieces."""
    import soundfile as sf  # noqa: PLC0415

    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415

    piece = speechlike(sr=sr, seconds=10.0)
    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as fh:
        left = int(seconds * sr)
        while left > 0:
            fh.write(piece[:left])
            left -= min(left, piece.size)


def _weights(path: Path, size: str) -> None:
    import mlx_speech  # noqa: PLC0415

    mlx_speech.accelerate()
    from mlx_speech.models.mimi.load import save_mimi  # noqa: PLC0415
    from mlx_speech.models.mimi.model import MimiModel  # noqa: PLC0415
    from mlx_speech.models.mimi.spec import mimi_202407, mimi_tiny  # noqa: PLC0415

    save_mimi(path, MimiModel(mimi_202407() if size == "full" else mimi_tiny()))


def _run(src: Path, dst: Path, weights: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(dst), str(weights), mode],
                         capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", type=float, default=10.0, help="seconds of the short file")
    ap.add_argument("--long", type=float, default=480.0, help="seconds of the long file")
    ap.add_argument("--size", choices=["full", "tiny"], default="full")
    ap.add_argument("--whole-file", action="store_true", help="also measure whole-file reading")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "mimi.safetensors"
        _weights(weights, args.size)
        res: dict = {"bench": "codec_encode_peak_rss", "size": args.size,
                     "short_seconds": args.short, "long_seconds": args.long}
        for name, seconds in (("short", args.short), ("long", args.long)):
            _write_wav(tmp / f"{name}.wav", seconds)
            res[name] = _run(tmp / f"{name}.wav", tmp / f"{name}.safetensors", weights, "stream")
            if args.whole_file:
                res[f"{name}_whole_file"] = _run(tmp / f"{name}.wav", tmp / "x.safetensors", weights,
                                                 "whole")
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
