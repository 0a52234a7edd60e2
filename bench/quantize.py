"""Quantizer speed, MLX vs torch_ref, measured in one run; prints JSON.

Two workloads, 10 s of latents each, batch 1, fp32, random codebooks (identical on both sides):

* ``mimi``: Mimi's split RVQ (``SplitRVQSpec`` preset ``mimi``: 512 -> 256, 1 + 7 codebooks
  of 2048) on 125 frames x 512 (12.5 Hz);
* ``dac``: a DAC-style RVQ (``RVQSpec`` preset ``dac_44k``: 9 codebooks of 1024, 8-d
  L2-normalised factorised codes) on 862 frames x 1024 (44.1 kHz / 512 = 86.1 Hz).

For each: ``encode`` (latents -> codes) and ``decode`` (codes -> latents) times, their MLX/torch
ratios, whether both sides produced identical codes, and the max abs decode difference.
Timings interleave MLX and torch rounds (``bench/_timing.py``); on a shared machine they are
noisy, so compare ratios from one run. Usage: ``python bench/quantize.py [--reps 10]``.
"""

from __future__ import annotations

import argparse
import json
import os

import mlx_speech

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import compare_times, torch_threads
from mlx_speech import _blas


def _workloads() -> dict[str, tuple[object, object, tuple[int, int, int]]]:
    from mlx_speech.specs.quantize import RVQSpec, SplitRVQSpec  # noqa: PLC0415

    random_codebooks = {"kmeans_init": False}
    mimi = SplitRVQSpec.from_preset("mimi")
    mimi = mimi.replace(ema={**mimi.ema.to_dict(), **random_codebooks})
    dac = RVQSpec.from_preset("dac_44k")
    dac = dac.replace(ema={**dac.ema.to_dict(), **random_codebooks})
    return {
        "mimi": ("split_residual_vq", mimi, (1, 125, 512)),
        "dac": ("residual_vq", dac, (1, round(10 * 44100 / 512), 1024)),
    }


def _bench_one(model: str, spec: object, shape: tuple[int, int, int], reps: int) -> dict[str, object]:
    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from convert.parity import copy_mlx_to_torch  # noqa: PLC0415
    from mlx_speech.registry import get_model  # noqa: PLC0415

    entry = get_model(model)
    mx.random.seed(0)
    m = entry.build_mlx(spec)
    t = entry.build_torch(spec)
    copy_mlx_to_torch(m, t)
    m.eval()
    t.eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xm, xt = mx.array(x), torch.from_numpy(x)
    codes_m = m.encode(xm)
    mx.eval(codes_m)
    with torch.inference_mode():
        codes_t = t.encode(xt)
        codes_equal = bool(np.array_equal(np.array(codes_m), codes_t.numpy()))
        dec_err = float(np.abs(np.array(m.decode(codes_m)) - t.decode(codes_t).numpy()).max())
        best = compare_times({
            "mlx_encode": lambda: mx.eval(m.encode(xm)),
            "torch_encode": lambda: t.encode(xt),
            "mlx_decode": lambda: mx.eval(m.decode(codes_m)),
            "torch_decode": lambda: t.decode(codes_t),
        }, reps=reps)
    ms = {k: round(v * 1e3, 3) for k, v in best.items()}
    return {
        "model": model,
        "latents": list(shape),
        "codebooks": " + ".join(f"{n} x {s}" for s, n in _runs(m.codebook_sizes)),
        **{f"{k}_ms": v for k, v in ms.items()},
        "encode_mlx_over_torch": round(best["mlx_encode"] / best["torch_encode"], 3),
        "decode_mlx_over_torch": round(best["mlx_decode"] / best["torch_decode"], 3),
        "codes_equal": codes_equal,
        "decode_max_abs_diff": dec_err,
    }


def _runs(sizes: list[int]) -> list[tuple[int, int]]:
    """Run-length encoding of codebook sizes: [2048, 1024, 1024] -> [(2048, 1), (1024, 2)]."""
    out: list[tuple[int, int]] = []
    for s in sizes:
        if out and out[-1][0] == s:
            out[-1] = (s, out[-1][1] + 1)
        else:
            out.append((s, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    threads = torch_threads()
    result: dict[str, object] = {
        "bench": "quantize_10s",
        "dtype": "float32",
        "threads": threads,
        "cpus": os.cpu_count(),
        "blas": _blas.status(),
    }
    for name, (model, spec, shape) in _workloads().items():
        result[name] = _bench_one(model, spec, shape, args.reps)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
