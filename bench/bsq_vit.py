"""BSQ-ViT speed, one run, prints JSON: MLX vs torch_ref on the same weights.

Workloads (``--preset``, default ``bsq_vit_small_b18``; fp32):

* ``train``: one ``bsq_vit`` training step of each trainer (discriminator step + generator
  step: mel front end, tokenizer forward and backward, PatchGAN, hinge + L1 + L2 + BSQ losses,
  AdamW, EMA) on the same prepared batch of ``--batch`` windows of a synthetic corpus, the GAN
  switched on, both trainers starting from the same weights (MLX copied into torch). The
  first-step losses of both are reported beside the times. ``parts`` splits the step: the
  gradients of the discriminator step (generator forward without gradient + PatchGAN forward
  and backward on real and reconstructed mels), those of the generator step (tokenizer forward
  and backward through the PatchGAN); what is left of the step is the two AdamW updates and
  the EMA.
* ``codec``: ``--seconds`` (10) of a speech-like signal, batch 1: ``encode`` then ``decode_mel``
  (the tokenizer alone), and ``decode`` through Griffin-Lim, as RTF = compute seconds / audio
  seconds.

Each timing is the best of ``--rounds`` interleaved rounds (``bench/_timing.py``); ``paired``
ratios come from back-to-back pairs (steadier on a shared machine). Compare the ratios, taken
within this one run. The target (issue 22): MLX at most 1.1x torch_ref on the CPU.

Usage: ``python bench/bsq_vit.py [--preset bsq_vit_small_b18] [--batch 4] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import mlx_speech

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare_times, paired_ratio, torch_threads  # noqa: E402

LIMIT = 1.1
TERMS = ("loss", "d_loss", "l1", "l2", "adv", "quantizer")


def _recipe(corpus: str, out: str, args: argparse.Namespace):
    from mlx_speech.specs.train import TrainSpec  # noqa: PLC0415

    return TrainSpec.from_dict({
        "task": "bsq_vit", "steps": 1000, "out_dir": out, "seed": 0,
        "model": {"preset": args.preset, "disc_start": 0,
                  "spec_augment": {"enabled": True, "time_masks": 2, "time_width": 16,
                                   "freq_masks": 2, "freq_width": 16}},
        "data": {"sources": [{"kind": "manifest", "path": corpus}], "batch_size": args.batch,
                 "sample_rate": 16000, "crop_seconds": None},
        "optimizer": {"lr": 1e-4, "betas": [0.9, 0.99], "warmup_steps": 0, "grad_clip": 1.0},
        "ema": {"decay": 0.999},
        "monitor": {"progress": False},
    })


def _train(tmp: str, args: argparse.Namespace) -> dict:
    import numpy as np  # noqa: PLC0415

    from convert.parity import copy_mlx_to_torch  # noqa: PLC0415
    from mlx_speech.data.loader import Loader  # noqa: PLC0415
    from mlx_speech.data.toy import write_toy_corpus  # noqa: PLC0415
    from mlx_speech.train.loop import split_rows  # noqa: PLC0415
    from mlx_speech.train.trainer import Trainer as MLXTrainer  # noqa: PLC0415
    from torch_ref.train.trainer import Trainer as TorchTrainer  # noqa: PLC0415

    from mlx_speech.models.bsq_vit.spec import BSQViTSpec  # noqa: PLC0415

    window = BSQViTSpec.from_preset(args.preset).window_samples / 16000
    corpus = str(write_toy_corpus(os.path.join(tmp, "corpus"), n=max(4, args.batch),
                                  sample_rate=16000, seconds=(window, window)))
    m = MLXTrainer(_recipe(corpus, os.path.join(tmp, "m"), args))
    t = TorchTrainer(_recipe(corpus, os.path.join(tmp, "t"), args))
    copy_mlx_to_torch(m.model, t.model)
    t.ema.weights = {k: v.detach().clone() for k, v in t.model.named_parameters()}
    with Loader(m.corpus.items, m.plan, sample_rate=16000, crop_seconds=None, seed=0,
                prefetch=1, workers=1) as loader:
        batch = next(loader)
    rngs = [np.random.default_rng([0, i]) for i in range(len(batch.items))]
    micro = split_rows(m.task.prepare(batch, rngs, train=True), 1)
    first_m, first_t = m._train_step(micro, 1.0, 0), t._train_step(micro, 1.0, 0)
    fns = {"mlx": lambda: m._train_step(micro, 1.0, 1), "torch": lambda: t._train_step(micro, 1.0, 1)}
    best = compare_times(fns, reps=args.reps, rounds=args.rounds)
    paired = paired_ratio(fns["mlx"], fns["torch"], pairs=args.pairs)
    parts = _parts(m, t, micro, args)
    met = lambda r: {k: round(r.loss if k == "loss" else r.metrics[k], 6) for k in TERMS}  # noqa: E731
    return {"batch": args.batch, "window_seconds": window, "compiled_mlx": m.compiled,
            "parameters": int(sum(v.size for v in m.params.values())),
            "mlx_step_ms": round(best["mlx"] * 1e3, 1), "torch_step_ms": round(best["torch"] * 1e3, 1),
            "mlx_over_torch": round(best["mlx"] / best["torch"], 3),
            "mlx_over_torch_paired": paired,
            "parts": parts,
            "first_step_mlx": met(first_m), "first_step_torch": met(first_t),
            "target": {"limit": LIMIT, "met": paired["median"] <= LIMIT}}


def _parts(m, t, micro: list, args: argparse.Namespace) -> dict:
    """The step's parts (module docstring), each side's best time and the ratio."""
    import mlx.core as mx  # noqa: PLC0415

    mt, tt, nets = m.task, t.task, t.nets
    gen, disc = m.model.generator, m.model.discriminator
    fns = {
        "discriminator_grads": (
            lambda: mx.eval(m._grads("disc", lambda x: mt.discriminator_loss(gen, disc, x),
                                     m.optims["doptim"].names, micro)),
            lambda: t._backward(lambda x: tt.discriminator_loss(nets["generator"], nets["discriminator"], x),
                                micro)),
        "generator_grads": (
            lambda: mx.eval(m._grads("gen", lambda x: mt.generator_loss(gen, disc, x),
                                     m.optims["optim"].names, micro)),
            lambda: t._backward(lambda x: tt.generator_loss(nets["generator"], nets["discriminator"], x),
                                micro)),
    }
    out = {}
    for name, (f_m, f_t) in fns.items():
        best = compare_times({"mlx": f_m, "torch": f_t}, reps=args.reps, rounds=args.rounds)
        out[name] = {"mlx_ms": round(best["mlx"] * 1e3, 1), "torch_ms": round(best["torch"] * 1e3, 1),
                     "mlx_over_torch": round(best["mlx"] / best["torch"], 3)}
    return out


def _codec(args: argparse.Namespace) -> dict:
    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from convert.parity import copy_mlx_to_torch  # noqa: PLC0415
    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415
    from mlx_speech.models.bsq_vit.model import BSQViTModel  # noqa: PLC0415
    from mlx_speech.models.bsq_vit.spec import BSQViTSpec  # noqa: PLC0415
    from torch_ref.models.bsq_vit.model import BSQViTModel as TorchBSQViT  # noqa: PLC0415

    spec = BSQViTSpec.from_preset(args.preset)
    mx.random.seed(0)
    m = BSQViTModel(spec)
    m.eval()
    t = TorchBSQViT(spec).eval()
    copy_mlx_to_torch(m, t)
    wav = (0.5 * speechlike(sr=16000, seconds=args.seconds, f0=140.0, seed=0)).astype("float32")
    x_m, x_t = mx.array(wav[None]), torch.from_numpy(wav[None])

    def mlx_tok() -> None:
        mx.eval(m.decode_mel(m.encode(x_m)))

    def torch_tok() -> None:
        with torch.inference_mode():
            t.decode_mel(t.encode(x_t))

    def mlx_gl() -> None:
        mx.eval(m.decode(m.encode(x_m)))

    def torch_gl() -> None:
        with torch.inference_mode():
            t.decode(t.encode(x_t))

    codes_m = np.array(m.encode(x_m))
    with torch.inference_mode():
        codes_t = t.encode(x_t).numpy()
    best = compare_times({"mlx_tokenizer": mlx_tok, "torch_ref_tokenizer": torch_tok,
                          "mlx_griffin_lim": mlx_gl, "torch_ref_griffin_lim": torch_gl},
                         reps=1, rounds=args.rounds)
    rtf = {k: round(v / args.seconds, 4) for k, v in best.items()}
    paired = paired_ratio(mlx_tok, torch_tok, pairs=2 * args.rounds + 1)
    return {"seconds": args.seconds, "codes_agree": float((codes_m == codes_t).mean()), "rtf": rtf,
            "mlx_over_torch_ref_tokenizer": round(rtf["mlx_tokenizer"] / rtf["torch_ref_tokenizer"], 3),
            "mlx_over_torch_ref_griffin_lim":
                round(rtf["mlx_griffin_lim"] / rtf["torch_ref_griffin_lim"], 3),
            "paired_mlx_over_torch_ref_tokenizer": paired,
            "target": {"limit": LIMIT, "met": paired["median"] <= LIMIT}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="bsq_vit_small_b18")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--skip", choices=["train", "codec", "none"], default="none")
    args = ap.parse_args()
    from mlx_speech.models.bsq_vit.spec import BSQViTSpec  # noqa: PLC0415

    spec = BSQViTSpec.from_preset(args.preset)
    out = {"bench": "bsq_vit", "preset": args.preset, "bitrate_bps": spec.bitrate,
           "frame_rate": spec.frame_rate, "dtype": "float32", "torch_threads": torch_threads(),
           "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip != "codec":
            out["codec"] = _codec(args)
        if args.skip != "train":
            out["train"] = _train(tmp, args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
