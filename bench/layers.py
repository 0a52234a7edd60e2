"""MLX vs torch_ref time for the layer shapes Mimi, DAC and HiFi-GAN use; prints JSON.

Both sides get identical weights (convert.parity.build_pair) and the same input; each case is
timed in this one process, interleaved, best-of-rounds median, batch 1, fp32. The MLX time is
for the path `auto` picks on this device; on CPU the native-op time is reported beside it.
Usage: ``python bench/layers.py [--reps 5] [--only conv1d_k7]``.
"""

from __future__ import annotations

import argparse
import json
import platform

import mlx_speech

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import compare_times, torch_threads


def _cases():
    import mlx_speech.layers.conv as mconv
    import mlx_speech.layers.transformer as mtr
    import torch_ref.layers.conv as tconv
    import torch_ref.layers.transformer as ttr
    from mlx_speech.specs.layers import TransformerSpec

    conv = dict(mlx=mconv.Conv1d, torch=tconv.Conv1d, channels_last=True)
    tconv_ = dict(mlx=mconv.ConvTranspose1d, torch=tconv.ConvTranspose1d, channels_last=True)
    tr = TransformerSpec.from_preset("bench_12x512").to_dict()
    return {
        "conv1d_512_k7_T24000": dict(conv, kw=dict(in_channels=512, out_channels=512, kernel_size=7,
                                                    padding="causal"), cin=512, T=24000),
        "conv_transpose1d_512to256_k16_s8_T3000": dict(tconv_, kw=dict(
            in_channels=512, out_channels=256, kernel_size=16, stride=8, padding="causal"), cin=512, T=3000),
        "conv1d_dilated_256_k3_d3_T24000": dict(conv, kw=dict(in_channels=256, out_channels=256, kernel_size=3,
                                                              dilation=3, padding="same"), cin=256, T=24000),
        "conv1d_depthwise_512_k7_T24000": dict(conv, kw=dict(in_channels=512, out_channels=512, kernel_size=7,
                                                             groups=512, padding="same"), cin=512, T=24000),
        "conv1d_strided_256to512_k8_s4_T24000": dict(conv, kw=dict(in_channels=256, out_channels=512, kernel_size=8,
                                                                   stride=4, padding="causal"), cin=256, T=24000),
        "transformer_12x512_T250": dict(mlx=mtr.Transformer, torch=ttr.Transformer, channels_last=False,
                                        kw=tr, cin=512, T=250),
    }


def run_case(name: str, case: dict, reps: int) -> dict:
    import mlx.core as mx
    import numpy as np
    import torch

    from convert.parity import build_pair, compare

    m, t = build_pair(case["mlx"], case["torch"], **case["kw"])
    x = np.random.default_rng(0).standard_normal((1, case["T"], case["cin"])).astype(np.float32)
    xm = mx.array(x)
    xt = torch.from_numpy(x if not case["channels_last"] else np.ascontiguousarray(x.transpose(0, 2, 1)))

    def run_torch():
        with torch.inference_mode():
            return t(xt)

    fns = {"torch": run_torch, "mlx": lambda: mx.eval(m(xm))}
    native = None
    if case["channels_last"] and mx.default_device() == mx.cpu:
        from mlx_speech.layers.conv_kernels import conv_impl

        def run_native():
            with conv_impl("native"):
                mx.eval(m(xm))

        fns["mlx_native"] = run_native
    best = compare_times(fns, reps=reps)
    err = compare(m(xm), run_torch(), atol=1e-3, name=name,
                  transpose_torch=(0, 2, 1) if case["channels_last"] else None)
    out = {"mlx_ms": round(best["mlx"] * 1e3, 3), "torch_ms": round(best["torch"] * 1e3, 3),
           "mlx_over_torch": round(best["mlx"] / best["torch"], 3), "max_abs_err": err.max_abs}
    if "mlx_native" in best:
        native = best["mlx_native"]
        out["mlx_native_ms"] = round(native * 1e3, 3)
        out["native_over_torch"] = round(native / best["torch"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None, help="substring filter on case names")
    args = ap.parse_args()
    import mlx.core as mx

    threads = torch_threads()
    results = {}
    for name, case in _cases().items():
        if args.only and args.only not in name:
            continue
        results[name] = run_case(name, case, args.reps)
    worst = max(r["mlx_over_torch"] for r in results.values()) if results else None
    print(json.dumps({"bench": "layers", "device": str(mx.default_device()), "machine": platform.machine(),
                      "torch_threads": threads, "batch": 1, "dtype": "float32",
                      "worst_mlx_over_torch": worst, "cases": results}, indent=2))


if __name__ == "__main__":
    main()
