"""Miipher-2 restoration speed and memory, one run, prints JSON.

Workloads (``--preset``, default ``small``: the CPU-sized w2v-BERT stand-in; random weights
saved in a temp folder, nothing downloaded; fp32, batch 1):

* ``rtf``: ``restore`` of ``--seconds`` (30) of a speech-like 16 kHz signal by the MLX model
  and by torch_ref on the same weights (MLX copied into torch), as RTF = compute seconds /
  audio seconds, best of ``--rounds`` interleaved rounds, with their ratio. The outputs of the
  two are compared (max abs difference) so a fast wrong path cannot pass. For reference the
  Miipher-2 paper reports RTF 0.0078 for USM + WaveFit on a TPU.
* ``memory``: ``mlx-speech restore`` of a ``--short`` (10 s) and a ``--long`` (600 s) file,
  each in a fresh process (``ru_maxrss``, the process's peak RSS): the file is streamed, so
  target ``long_over_short <= 1.2`` (issue 21).

Usage: ``python bench/restore.py [--preset small] [--seconds 30] [--short 10] [--long 600]
[--skip-memory]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlx_speech

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import torch_threads  # noqa: E402
from codec_memory import write_speechlike_wav  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 1.2

_CHILD = r"""
import json, resource, sys, time
import mlx_speech
mlx_speech.accelerate()
from mlx_speech.pipelines.restore import restore_file
src, dst, weights = sys.argv[1:4]
t = time.perf_counter()
restore_file(src, dst, weights=weights)
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "seconds": round(time.perf_counter() - t, 2)}))
"""


def _models(preset: str, tmp: Path):
    import mlx.core as mx  # noqa: PLC0415

    from convert.parity import copy_mlx_to_torch  # noqa: PLC0415
    from mlx_speech.models.miipher2.model import Miipher2Model  # noqa: PLC0415
    from mlx_speech.models.miipher2.spec import Miipher2Spec  # noqa: PLC0415
    from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415
    from torch_ref.models.miipher2.model import Miipher2Model as TorchModel  # noqa: PLC0415

    mx.random.seed(0)
    spec = Miipher2Spec.from_preset(preset)
    m = Miipher2Model(spec)
    m.eval()
    weights = tmp / "restorer.safetensors"
    save_mlx_model(weights, m, model="miipher2", spec=spec)
    t = TorchModel(spec).eval()
    copy_mlx_to_torch(m, t)
    return m, t, weights


def _rtf(m, t, args: argparse.Namespace) -> dict:
    import numpy as np  # noqa: PLC0415

    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415

    wav = np.asarray(speechlike(16000, args.seconds, seed=1), np.float32)
    best = {"mlx": float("inf"), "torch_ref": float("inf")}
    outs = {}
    m.restore(wav[:32000], 16000)  # warm-up: kernels, compiled graphs
    t.restore(wav[:32000], 16000)
    for _ in range(args.rounds):
        for name, model in (("mlx", m), ("torch_ref", t)):
            t0 = time.perf_counter()
            outs[name] = model.restore(wav, 16000)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {"seconds": args.seconds,
            "rtf": {k: round(v / args.seconds, 4) for k, v in best.items()},
            "mlx_over_torch": round(best["mlx"] / best["torch_ref"], 3),
            "max_abs_diff": float(np.abs(outs["mlx"] - outs["torch_ref"]).max())}


def _memory(weights: Path, tmp: Path, args: argparse.Namespace) -> dict:
    out = {}
    for name, seconds in (("short", args.short), ("long", args.long)):
        src = tmp / f"{name}.wav"
        write_speechlike_wav(src, seconds)
        res = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(tmp / f"{name}_out.wav"),
                              str(weights)], capture_output=True, text=True, cwd=ROOT, check=True)
        out[name] = {"audio_s": seconds, **json.loads(res.stdout.strip().splitlines()[-1])}
    ratio = out["long"]["peak_rss_mb"] / out["short"]["peak_rss_mb"]
    out["long_over_short"] = round(ratio, 3)
    out["target"] = MEMORY_LIMIT
    out["met"] = ratio <= MEMORY_LIMIT
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--short", type=float, default=10.0)
    ap.add_argument("--long", type=float, default=600.0)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    import torch  # noqa: PLC0415

    torch.set_num_threads(torch_threads())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        m, t, weights = _models(args.preset, tmp)
        report = {"preset": args.preset, "torch_threads": torch.get_num_threads(),
                  "rtf": _rtf(m, t, args)}
        if not args.skip_memory:
            report["memory"] = _memory(weights, tmp, args)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
