"""GAN discriminator training speed, MLX vs torch_ref, same weights, one run; prints JSON.

Each case times forward + backward of a discriminator on one batch, fp32, with the gradients
of every parameter (the discriminator's update) and of the input (what the generator's update
back-propagates through it): the part of a GAN step that runs through ``Conv2d``. The MLX time is for the path
``auto`` picks on this device (on the CPU the rewrite of ``mlx_speech/layers/conv2d_kernels.py``);
on the CPU the native-op time (``mx.conv2d``) is reported beside it. The loss touches the scores
and every feature map, as the adversarial and feature-matching losses do. Rounds interleave the
sides (``bench/_timing.py``); compare the ratios, taken within this one run.

Cases (``--only`` filters by substring):

* ``patchgan``: the BSQ-ViT PatchGAN of ``bsq_vit_small_cpu`` (32 channels, 3 layers, max 256)
  on a log-mel batch ``(8, 128, 128)``;
* ``dac_cpu``: the DAC discriminator of ``dac_hybrid50_cpu`` (16 kHz, MPD channels 16..64, MRD
  8) on 8 crops of 5120 samples;
* ``dac_descript``: Descript's full-width discriminator (44.1 kHz) on one 0.25 s crop; its
  native time takes minutes, so it is skipped unless ``--native-all``.

Usage: ``python bench/discriminators.py [--reps 3] [--rounds 3] [--only patchgan] [--native-all]``.
"""

from __future__ import annotations

import argparse
import json
import platform

import mlx_speech

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import compare_times, torch_threads


def _build(name: str):
    """``(mlx module, torch module, input array)`` with identical weights."""
    import numpy as np

    from convert.parity import build_pair

    rng = np.random.default_rng(0)
    if name == "patchgan":
        from mlx_speech.models.bsq_vit.gan_spec import PatchGANSpec
        from mlx_speech.train.bsq_vit_discriminator import PatchGANDiscriminator
        from torch_ref.train.bsq_vit_discriminator import PatchGANDiscriminator as TPatchGAN

        m, t = build_pair(PatchGANDiscriminator, TPatchGAN,
                          spec=PatchGANSpec(channels=32, layers=3, max_channels=256))
        return m, t, rng.standard_normal((8, 128, 128)).astype(np.float32)
    from mlx_speech.models.dac.gan_spec import DACDiscriminatorSpec
    from mlx_speech.train.dac_discriminators import DACDiscriminator
    from torch_ref.train.dac_discriminators import DACDiscriminator as TDACDiscriminator

    if name == "dac_cpu":
        spec = DACDiscriminatorSpec(sample_rate=16000, mpd_channels=[16, 32, 64, 64, 64], mrd_channels=8)
        shape = (8, 5120)
    else:
        spec, shape = DACDiscriminatorSpec(), (1, 11025)
    m, t = build_pair(DACDiscriminator, TDACDiscriminator, spec=spec)
    return m, t, (0.3 * rng.standard_normal(shape)).astype(np.float32)


def _loss(out) -> object:
    """Mean square of every score plus the mean of every feature map (nested lists allowed)."""
    scores, feats = out
    total = 0.0
    for s in scores if isinstance(scores, list) else [scores]:
        total = total + (s * s).mean()
    stack = list(feats)
    while stack:
        f = stack.pop()
        if isinstance(f, list):
            stack.extend(f)
        else:
            total = total + f.mean()
    return total


def run_case(name: str, reps: int, rounds: int, native: bool) -> dict:
    import mlx.core as mx
    import torch

    from mlx_speech.layers.conv_kernels import conv_impl

    m, t, x = _build(name)
    xm, xt = mx.array(x), torch.from_numpy(x).requires_grad_(True)

    def loss(params, x):
        m.update(params)
        return _loss(m(x))

    step = mx.value_and_grad(loss, argnums=(0, 1))
    params = m.trainable_parameters()

    def run_torch():
        t.zero_grad()
        xt.grad = None
        _loss(t(xt)).backward()

    fns = {"mlx": lambda: mx.eval(step(params, xm)), "torch": run_torch}
    if native and mx.default_device() == mx.cpu:
        def run_native():
            with conv_impl("native"):
                mx.eval(step(params, xm))

        fns["mlx_native"] = run_native
    best = compare_times(fns, reps=reps, rounds=rounds)
    out = {"input": "x".join(map(str, x.shape)), "mlx_ms": round(best["mlx"] * 1e3, 1),
           "torch_ms": round(best["torch"] * 1e3, 1), "mlx_over_torch": round(best["mlx"] / best["torch"], 3)}
    if "mlx_native" in best:
        out["mlx_native_ms"] = round(best["mlx_native"] * 1e3, 1)
        out["native_over_mlx"] = round(best["mlx_native"] / best["mlx"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=None, help="substring filter on case names")
    ap.add_argument("--native-all", action="store_true", help="time native ops on dac_descript too")
    args = ap.parse_args()
    import mlx.core as mx

    threads = torch_threads()
    results = {}
    for name in ("patchgan", "dac_cpu", "dac_descript"):
        if args.only and args.only not in name:
            continue
        results[name] = run_case(name, args.reps, args.rounds, args.native_all or name != "dac_descript")
    print(json.dumps({"bench": "discriminators", "device": str(mx.default_device()),
                      "machine": platform.machine(), "torch_threads": threads, "dtype": "float32",
                      "cases": results}, indent=2))


if __name__ == "__main__":
    main()
