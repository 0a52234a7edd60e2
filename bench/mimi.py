"""Mimi speed and streaming memory, one run, prints JSON.

Workload: 10 s of a speech-like signal at 24 kHz, batch 1, fp32, ``--codebooks`` (8) codebooks,
full-size Mimi with random weights and random codebooks (moshi's ``get_mimi(None)`` saved in
moshi's format and loaded through ``mlx_speech/models/mimi/formats.py`` when moshi is installed; otherwise our
own random init). Times are encode + decode, reported as RTF = compute seconds / audio seconds:

* ``mlx_batch``: ``model.decode(model.encode(wav))``;
* ``mlx_stream``: frame by frame (1920 samples = 80 ms): ``decode_step(encode_step(frame))``,
  each frame's audio evaluated before the next frame is fed;
* ``torch_ref_batch`` / ``torch_ref_stream``: the same on our PyTorch mirror;
* ``moshi_batch`` / ``moshi_stream``: moshi's ``MimiModel`` (``encode``/``decode``, and the
  same frame loop inside ``mimi.streaming(1)``) as the reference; skipped with a note if moshi
  is not installed.

Each timing is the best of ``--rounds`` interleaved rounds (``bench/_timing.py``); on a shared
machine compare the ratios, which are taken within this one run. ``peak_rss_mb`` runs the MLX
streaming loop in fresh subprocesses over 10 s and ``--long-seconds`` (600) of audio generated
chunk by chunk and reports the peak RSS sampled while streaming (and the process peak,
``ru_maxrss``, which loading the weights dominates).

``--device gpu`` runs MLX on ``mx.gpu`` and torch_ref / moshi on CUDA in the same run (the
default, ``cpu``, is the CPU bench, whose output this option leaves as it was). The stream
loops then synchronise CUDA after every frame, as ``mx.eval`` does for MLX, so both sides
measure the latency of a frame, and the batch calls synchronise at their end. The GPU run also
times ``mlx_stream_compiled``: the same loop with ``MimiModel.set_compiled_steps(True)`` (each
direction's frame step as one compiled graph). Without an MLX GPU it prints one line and exits
2; with an MLX GPU but no CUDA (a Mac) torch stays on the CPU with a note and the MLX-vs-moshi
targets are left out (they would compare devices). On the GPU the RSS subprocesses are skipped
(host RSS says little there). TF32 stays at each framework's default, as in a user's run.

``--batch N`` (N > 1) adds ``mlx_batchN`` / ``torch_ref_batchN`` / ``moshi_batchN``: N different
signals encoded and decoded in one call, reported per item (compute seconds / (N x audio
seconds)); issue 19's batch-8 target is ``mlx_batchN_over_moshi_batchN`` <= 1.0 on the GPU.

Usage: ``python bench/mimi.py [--device cpu|gpu] [--rounds 3] [--codebooks 8] [--batch 8]
[--long-seconds 600] [--no-rss] [--blas-thread-timeout N]``. The JSON records
``openblas_thread_timeout``: with N = 4 OpenBLAS's idle worker sleeps at once instead of
spinning ~0.1 s after each threaded GEMM, which changes the streaming figure (see README,
"Mimi codec").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and "--threads" in sys.argv:  # before any BLAS is loaded
    _n = sys.argv[sys.argv.index("--threads") + 1]
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = _n
    os.environ["MKL_NUM_THREADS"] = _n
if __name__ == "__main__" and "--blas-thread-timeout" in sys.argv:  # read when OpenBLAS loads
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = sys.argv[sys.argv.index("--blas-thread-timeout") + 1]

import mlx_speech  # noqa: E402

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import compare_times, torch_threads  # noqa: E402
from mlx_speech import _blas  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # name: (numerator, denominator, limit)
    "mlx_batch_over_moshi_batch": ("mlx_batch", "moshi_batch", 1.5),
    "mlx_stream_over_moshi_stream": ("mlx_stream", "moshi_stream", 1.0),
    "torch_ref_batch_over_moshi_batch": ("torch_ref_batch", "moshi_batch", 1.1),
    # --device gpu only (issue 19): MimiModel.set_compiled_steps
    "mlx_stream_compiled_over_moshi_stream": ("mlx_stream_compiled", "moshi_stream", 1.0),
}


def _write_weights(path: Path) -> str:
    """Random full-size Mimi weights at ``path``; returns their source."""
    import torch  # noqa: PLC0415

    try:
        from moshi.models import loaders  # noqa: PLC0415
    except ImportError:
        loaders = None
    if loaders is not None:
        from safetensors.torch import save_file  # noqa: PLC0415

        torch.manual_seed(0)
        model = loaders.get_mimi(None, device="cpu", num_codebooks=8)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name.endswith("embedding_sum"):
                    buf.copy_(torch.randn(buf.shape, generator=gen))
                elif name.endswith(("cluster_usage", "_initialized")):
                    buf.fill_(1.0)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        return "moshi get_mimi(None), random codebooks, moshi format"
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.models.mimi.load import save_mimi  # noqa: PLC0415
    from mlx_speech.models.mimi.model import build_mimi  # noqa: PLC0415
    from mlx_speech.models.mimi.spec import mimi_202407  # noqa: PLC0415

    mx.random.seed(0)
    model = build_mimi(mimi_202407())
    for group in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
        for level in group.levels:
            cb = level.codebook
            cb.embedding_sum = mx.random.normal(cb.embedding_sum.shape)
            cb.initialized = mx.ones((1,))
    save_mimi(path, model)
    return "mlx-speech random init, random codebooks"


def _frames(wav, frame: int) -> list:
    return [wav[:, i:i + frame] for i in range(0, wav.shape[1] - frame + 1, frame)]


def _devices(device: str) -> tuple[str | None, str | None]:
    """``(torch device, note)`` for ``--device``; ``(None, line)`` when the run cannot go on."""
    if device == "cpu":
        return "cpu", None
    import mlx.core as mx  # noqa: PLC0415
    import torch  # noqa: PLC0415

    if not mx.is_available(mx.gpu):
        return None, (f"bench/mimi.py --device gpu: this MLX ({mx.__version__}) has no GPU "
                      f"device; install mlx[cuda] (Linux) or run on Apple silicon")
    if not torch.cuda.is_available():
        return "cpu", ("torch has no CUDA: torch_ref and moshi ran on the CPU, MLX on the GPU; "
                       "the moshi targets are left out")
    return "cuda", None


def _timings(weights: Path, seconds: float, codebooks: int, rounds: int,
             device: str = "cpu", torch_device: str = "cpu", batch: int = 1) -> tuple[dict, list]:
    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from mlx_speech.models.mimi.load import load_mimi  # noqa: PLC0415
    from torch_ref.models.mimi.load import load_mimi_torch  # noqa: PLC0415
    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415

    notes = []
    if device == "gpu":
        mx.set_default_device(mx.gpu)
    cuda = torch_device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    ours = load_mimi(weights, num_codebooks=codebooks)
    tref = load_mimi_torch(weights, num_codebooks=codebooks).to(torch_device)
    wav = speechlike(sr=24000, seconds=seconds, f0=140.0)[None]
    frame = ours.frame_size
    wm, wt = mx.array(wav), torch.from_numpy(wav).to(torch_device)
    frames_m = [mx.array(f) for f in _frames(wav, frame)]
    frames_t = [torch.from_numpy(np.ascontiguousarray(f)).to(torch_device)
                for f in _frames(wav, frame)]

    def mlx_stream() -> None:
        ours.reset_state()
        for f in frames_m:
            mx.eval(ours.decode_step(ours.encode_step(f)))

    def tref_stream() -> None:
        tref.reset_state()
        for f in frames_t:
            tref.decode_step(tref.encode_step(f))
            sync()

    def tref_batch() -> None:
        tref.decode(tref.encode(wt))
        sync()

    fns = {
        "mlx_batch": lambda: mx.eval(ours.decode(ours.encode(wm))),
        "mlx_stream": mlx_stream,
        "torch_ref_batch": tref_batch,
        "torch_ref_stream": tref_stream,
    }
    per_item = {}  # workload -> items per call (its time is divided by them)
    if batch > 1:
        wavs = np.concatenate([speechlike(sr=24000, seconds=seconds, f0=110.0 + 10.0 * i)[None]
                               for i in range(batch)])
        bm, bt = mx.array(wavs), torch.from_numpy(wavs).to(torch_device)

        def tref_batch_n() -> None:
            tref.decode(tref.encode(bt))
            sync()

        fns[f"mlx_batch{batch}"] = lambda: mx.eval(ours.decode(ours.encode(bm)))
        fns[f"torch_ref_batch{batch}"] = tref_batch_n
        per_item.update({f"mlx_batch{batch}": batch, f"torch_ref_batch{batch}": batch})
    if device == "gpu":  # the whole-frame compiled steps, next to the default step
        compiled = load_mimi(weights, num_codebooks=codebooks)
        compiled.set_compiled_steps(True)

        def mlx_stream_compiled() -> None:
            compiled.reset_state()
            for f in frames_m:
                mx.eval(compiled.decode_step(compiled.encode_step(f)))

        fns["mlx_stream_compiled"] = mlx_stream_compiled
    try:
        from moshi.models import loaders  # noqa: PLC0415
    except ImportError:
        notes.append("moshi not installed: moshi_batch / moshi_stream skipped "
                     "(pip install --no-deps moshi==0.2.13 sentencepiece einops)")
    else:
        ref = loaders.get_mimi(str(weights), device=torch_device, num_codebooks=codebooks)

        def moshi_batch() -> None:
            with torch.no_grad():
                ref.decode(ref.encode(wt[:, None]))
            sync()

        def moshi_stream() -> None:
            with torch.no_grad(), ref.streaming(1):
                for f in frames_t:
                    ref.decode(ref.encode(f[:, None]))
                    sync()

        fns["moshi_batch"] = moshi_batch
        fns["moshi_stream"] = moshi_stream
        if batch > 1:
            def moshi_batch_n() -> None:
                with torch.no_grad():
                    ref.decode(ref.encode(bt[:, None]))
                sync()

            fns[f"moshi_batch{batch}"] = moshi_batch_n
            per_item[f"moshi_batch{batch}"] = batch
    best = compare_times(fns, reps=1, rounds=rounds)
    audio = wav.shape[1] / 24000
    return {k: round(v / audio / per_item.get(k, 1), 5 if k in per_item else 4)
            for k, v in best.items()}, notes


def _rss_child(weights: str, seconds: float, codebooks: int) -> None:
    """Stream ``seconds`` of generated audio through MLX Mimi; print memory figures as JSON.

    ``stream_peak_rss_mb`` is the largest RSS sampled after every frame of the stream (what a
    long stream could grow); ``process_peak_rss_mb`` (``ru_maxrss``) also covers loading the
    weights, which dominates it.
    """
    import resource  # noqa: PLC0415

    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import psutil  # noqa: PLC0415

    from mlx_speech.models.mimi.load import load_mimi  # noqa: PLC0415

    proc = psutil.Process()
    model = load_mimi(weights, num_codebooks=codebooks)
    frame = model.frame_size
    rng = np.random.default_rng(0)
    t = np.arange(frame) / 24000.0
    n = int(seconds * 24000) // frame
    checksum, before = 0.0, proc.memory_info().rss
    peak = before
    start = time.perf_counter()
    for i in range(n):  # audio made frame by frame: nothing of size ~ the stream is kept
        chunk = 0.3 * np.sin(2 * np.pi * (120 + i % 50) * (t + i * frame / 24000.0))
        chunk = (chunk + 0.01 * rng.standard_normal(frame)).astype(np.float32)[None]
        out = model.decode_step(model.encode_step(mx.array(chunk)))
        checksum += float(mx.abs(out).sum().item())
        peak = max(peak, proc.memory_info().rss)
    mib = 1024 * 1024
    print(json.dumps({
        "seconds": n * frame / 24000.0, "rss_before_stream_mb": round(before / mib, 1),
        "stream_peak_rss_mb": round(peak / mib, 1),
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rtf": round((time.perf_counter() - start) / (n * frame / 24000.0), 4),
        "checksum": checksum}))


def _rss(weights: Path, seconds: float, codebooks: int, threads: int | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(weights),
           "--seconds", str(seconds), "--codebooks", str(codebooks)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio length for the RTFs")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                    help="gpu: MLX on its GPU and torch on CUDA in one run (default: cpu)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--codebooks", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1,
                    help="N > 1 adds per-item RTFs of N signals coded in one call")
    ap.add_argument("--long-seconds", type=float, default=600.0, help="long stream for RSS")
    ap.add_argument("--no-rss", action="store_true", help="skip the RSS subprocesses")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for torch and MLX's BLAS (default: torch's default, all cores)")
    ap.add_argument("--blas-thread-timeout", type=int, default=None,
                    help="OPENBLAS_THREAD_TIMEOUT for MLX's OpenBLAS (4..30; default: OpenBLAS's "
                         "own, 28): idle workers spin 2**N cycles before sleeping")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child, args.seconds, args.codebooks)
        return
    torch_device, note = _devices(args.device)
    if torch_device is None:
        print(note, file=sys.stderr)
        sys.exit(2)
    threads = torch_threads()
    if args.threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads)
        threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "mimi.safetensors"
        source = _write_weights(weights)
        rtf, notes = _timings(weights, args.seconds, args.codebooks, args.rounds,
                              args.device, torch_device, args.batch)
        result: dict[str, object] = {
            "bench": f"mimi_{args.seconds:g}s_24khz", "weights": source, "dtype": "float32",
            "num_codebooks": args.codebooks, "torch_threads": threads, "cpus": os.cpu_count(),
            "blas": _blas.status().get("backend"),
            "openblas_thread_timeout": _blas.thread_timeout(), "rtf": rtf,
        }
        if args.device == "gpu":
            result["device"] = {"mlx": "gpu", "torch": torch_device}
            if note:
                notes.append(note)
        ratios, targets = {}, {}
        mixed = args.device == "gpu" and torch_device != "cuda"
        wanted = dict(TARGETS)
        if args.batch > 1:
            n = args.batch
            wanted[f"mlx_batch{n}_over_moshi_batch{n}"] = (f"mlx_batch{n}", f"moshi_batch{n}",
                                                           1.0)
        for name, (num, den, limit) in wanted.items():
            if num in rtf and den in rtf and not (mixed and num.startswith("mlx")):
                ratios[name] = round(rtf[num] / rtf[den], 3)
                targets[name] = {"limit": limit, "met": ratios[name] <= limit}
        result["ratios"] = ratios
        if args.device == "gpu" and not args.no_rss:
            notes.append("peak_rss_mb skipped on the GPU")
        elif not args.no_rss:
            short = _rss(weights, 10.0, args.codebooks, args.threads)
            long = _rss(weights, args.long_seconds, args.codebooks, args.threads)
            ratio = round(long["stream_peak_rss_mb"] / short["stream_peak_rss_mb"], 3)
            result["peak_rss_mb"] = {
                "stream_10s": short["stream_peak_rss_mb"],
                f"stream_{args.long_seconds:g}s": long["stream_peak_rss_mb"],
                "long_over_short": ratio,
                "process_peak_10s": short["process_peak_rss_mb"],
                f"process_peak_{args.long_seconds:g}s": long["process_peak_rss_mb"],
                "process_long_over_short": round(long["process_peak_rss_mb"]
                                                 / short["process_peak_rss_mb"], 3),
                "long_stream_rtf": long["rtf"]}
            targets["rss_long_over_short"] = {"limit": 1.2, "met": ratio <= 1.2}
        result["targets"] = targets
        result["notes"] = notes
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
