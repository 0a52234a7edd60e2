"""MLX vs torch fp32 matmul, measured in one run; prints JSON.

Reports the MLX/torch time ratio in this process (where mlx_speech gave MLX its BLAS), torch's
time in a process without MLX (to show torch is not slowed down), and the stock-BLAS MLX time
(``MLX_SPEECH_BLAS=reference``, in a subprocess). Usage: ``python bench/blas.py [--n 1024]``.

``few_rows``: products with 1-4 rows (a streaming step's ``x @ w.T``) over a model-sized set of
weights (``--few-rows-mb``, default 192 MB, about what one Mimi frame reads, so the weights come
from memory and not from cache), in microseconds per product: MLX here (our few-row
``cblas_sgemm`` where it is built, see ``mlx_speech/_blas.py``), MLX with OpenBLAS alone
(``MLX_SPEECH_SGEMM=openblas``) and torch, each in its own subprocess, with ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import mlx_speech

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import compare_times, torch_threads
from mlx_speech import _blas

_CHILD = r"""
import os, sys, time, json
import numpy as np
n, reps, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
if which == "torch":
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    x = torch.from_numpy(a); f = lambda: x @ x
else:
    import mlx_speech
    mlx_speech.accelerate()
    import mlx.core as mx
    x = mx.array(a); f = lambda: mx.eval(x @ x)
f()
ts = []
for _ in range(reps):
    t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
print(json.dumps(sorted(ts)[len(ts) // 2]))
"""


_FEW_ROWS_SHAPES = ((2, 2048, 512), (2, 512, 2048), (1, 2048, 256), (4, 8192, 1024))

_FEW_ROWS_CHILD = r"""
import json, sys, time
shapes, mb, which = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if which == "torch":
    import torch
    normal = lambda shape: torch.randn(*shape)
    product = lambda x, w: torch.nn.functional.linear(x, w)
else:
    import mlx_speech
    mlx_speech.accelerate()
    import mlx.core as mx
    normal = lambda shape: mx.random.normal(shape)
    product = lambda x, w: mx.eval(x @ w.T)
out = {}
for m, n, k in shapes:
    count = max(2, int(mb * 1e6 // (n * k * 4)))
    ws = [normal((n, k)) for _ in range(count)]
    x = normal((m, k))
    if which != "torch":
        mx.eval(ws, x)
    ts = []
    for _ in range(max(3, 300 // count)):
        t = time.perf_counter()
        for w in ws:
            product(x, w)
        ts.append((time.perf_counter() - t) / count)
    out[f"{m}x{n}x{k}"] = sorted(ts)[len(ts) // 2]
print(json.dumps(out))
"""


def _few_rows(mb: float) -> dict:
    shapes = json.dumps(_FEW_ROWS_SHAPES)
    runs = {}
    for name, which, extra in (("mlx", "mlx", {}),
                               ("mlx_openblas_alone", "mlx", {"MLX_SPEECH_SGEMM": "openblas"}),
                               ("torch", "torch", {})):
        out = subprocess.run([sys.executable, "-c", _FEW_ROWS_CHILD, shapes, str(mb), which],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, **extra})
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
    result = {key: {name: round(r[key] * 1e6, 1) for name, r in runs.items()}
              for key in runs["mlx"]}
    for key, row in result.items():
        row["mlx_over_openblas_alone"] = round(row["mlx"] / row["mlx_openblas_alone"], 3)
        row["mlx_over_torch"] = round(row["mlx"] / row["torch"], 3)
    return {"weights_mb": mb, "us_per_product": result,
            "few_rows_sgemm": _blas.status().get("few_rows_sgemm")}


def _child(n: int, reps: int, which: str, env: dict[str, str] | None = None) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(reps), which],
                         capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--skip-stock", action="store_true", help="skip the slow stock-BLAS run")
    ap.add_argument("--few-rows-mb", type=float, default=192.0,
                    help="weights per few-row shape (0: skip the few-row products)")
    args = ap.parse_args()

    import mlx.core as mx
    import numpy as np
    import torch

    torch_threads()
    a = np.random.default_rng(0).standard_normal((args.n, args.n)).astype(np.float32)
    xm, xt = mx.array(a), torch.from_numpy(a)
    best = compare_times({"torch": lambda: xt @ xt, "mlx": lambda: mx.eval(xm @ xm)}, reps=args.reps)
    t_mlx, t_torch = best["mlx"], best["torch"]
    err = float(np.abs(np.array(xm @ xm) - (xt @ xt).numpy()).max())
    result = {
        "bench": "blas_matmul",
        "shape": [args.n, args.n, args.n],
        "dtype": "float32",
        "threads": os.cpu_count(),
        "blas": _blas.status(),
        "mlx_ms": round(t_mlx * 1e3, 3),
        "torch_ms": round(t_torch * 1e3, 3),
        "mlx_over_torch": round(t_mlx / t_torch, 3),
        "max_abs_diff": err,
        "torch_alone_ms": round(_child(args.n, args.reps, "torch") * 1e3, 3),
    }
    result["torch_slowdown_in_mlx_process"] = round(t_torch * 1e3 / result["torch_alone_ms"], 3)
    if not args.skip_stock and sys.platform == "linux":
        stock = _child(args.n, 3, "mlx", env={"MLX_SPEECH_BLAS": "reference"})
        result["mlx_stock_blas_ms"] = round(stock * 1e3, 3)
        result["speedup_vs_stock"] = round(stock / t_mlx, 1)
    if args.few_rows_mb > 0:
        result["few_rows"] = _few_rows(args.few_rows_mb)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
