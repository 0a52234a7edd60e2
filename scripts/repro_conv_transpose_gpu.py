"""Minimal reproduction: ``mx.conv_transpose1d`` against a numpy reference (only mlx + numpy).

Written as an upstream report for MLX. On an NVIDIA H200 (mlx-cuda-13 0.32.4, with
``MLX_ENABLE_TF32=0``, so not a precision effect) the GPU op was wrong in 77 of the cases of
mlx-speech's test grid, by up to 2.6 absolute in 81% of the elements (for example k16-s2-g1,
k4-s2-gC, k3-s8-g2, k1-s4-g1); the CPU op is right in all of them. mlx-speech routes its
``ConvTranspose1d`` around the GPU op (``mlx_speech/layers/conv_kernels.py``,
``native_conv_transpose_trusted``) until a fixed MLX version is known.

    python scripts/repro_conv_transpose_gpu.py --device gpu   # the report
    python scripts/repro_conv_transpose_gpu.py --device cpu   # the control: passes

Each case: input ``x (B=2, T=11, C_in=4)`` channels-last, weight ``(C_out, K, C_in/groups)``
(MLX's layout), stride ``S``, no padding, so the output is ``(B, (T-1)*S + K, C_out)`` with
``out[b, t*S + k, g*Og + o] += x[b, t, g*Ig + i] * w[g*Og + o, k, i]``. Prints one line per case
and a summary; exits 1 when any case differs by more than ``--atol``, 2 when the device is
missing.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("MLX_ENABLE_TF32", "0")  # compare fp32 with fp32 (read when mlx loads)

import mlx.core as mx
import numpy as np

C_IN, B, T = 4, 2, 11


def reference(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """Transposed conv by its definition, in float64."""
    b, t_in, _ = x.shape
    c_out, k_size, ig = w.shape
    og = c_out // groups
    out = np.zeros((b, (t_in - 1) * stride + k_size, c_out))
    for g in range(groups):
        xg = x[:, :, g * ig:(g + 1) * ig].astype(np.float64)
        wg = w[g * og:(g + 1) * og].astype(np.float64)  # (og, K, ig)
        for k in range(k_size):
            # every input step t adds x[t] @ w[:, k].T at output step t*S + k
            out[:, k:k + (t_in - 1) * stride + 1:stride, g * og:(g + 1) * og] += xg @ wg[:, k].T
    return out


def cases() -> list[tuple[int, int, int | str]]:
    return [(k, s, g) for k in (1, 3, 4, 7, 16) for s in (1, 2, 4, 8) for g in (1, 2, "C")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    device = mx.gpu if args.device == "gpu" else mx.cpu
    if not mx.is_available(device):
        print(f"no {args.device} device in this MLX build ({mx.__version__})")
        return 2
    rng = np.random.default_rng(0)
    wrong = 0
    all_cases = cases()
    for k, s, g in all_cases:
        groups = C_IN if g == "C" else g
        c_out = 8 if g == "C" and k % 2 else (4 if g == "C" else 6)
        x = rng.standard_normal((B, T, C_IN)).astype(np.float32)
        w = rng.standard_normal((c_out, k, C_IN // groups)).astype(np.float32)
        with mx.stream(device):
            y = mx.conv_transpose1d(mx.array(x), mx.array(w), stride=s, groups=groups)
            y = np.array(y)
        ref = reference(x, w, s, groups)
        if y.shape != ref.shape:
            err, frac = float("inf"), 1.0
        else:
            diff = np.abs(y - ref)
            err, frac = float(diff.max()), float((diff > args.atol).mean())
        bad = not err <= args.atol
        wrong += bad
        print(f"k{k}-s{s}-g{g} c_in={C_IN} c_out={c_out} groups={groups}: "
              f"max_abs_err={err:.3g} wrong_elements={frac:.0%} {'FAIL' if bad else 'ok'}")
    print(f"{wrong} of {len(all_cases)} cases wrong on {args.device} "
          f"(mlx {mx.__version__}, MLX_ENABLE_TF32={os.environ.get('MLX_ENABLE_TF32')}, "
          f"atol {args.atol})")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
