"""Training step time, MLX trainer vs torch_ref trainer, same recipe, measured in one run; JSON.

Workload: the ``mel_denoise`` task (log-mel front end + transformer denoiser + masked L1) at
``--dim`` / ``--layers`` (default 256 x 4, ffn 4x, 80 mels), a global batch of ``--batch``
one-second crops at 16 kHz from a synthetic corpus, fp32, AdamW with clipping and EMA; once per
feed-forward activation (``--activations gelu,relu``: GELU's erf is the costliest op on MLX's
CPU backend). Both trainers start from the same weights (MLX copied into torch) and time
``_train_step`` on the same prepared batch: forward, backward, optimiser, EMA. Data loading is
excluded (background threads in both). Rounds interleave MLX and torch (``bench/_timing.py``);
on a shared machine compare the ratio from one run, and prefer the CPU-time ratio
(``mlx_over_torch_cpu``), which other jobs on the cores barely disturb, or the paired ratio
(``mlx_over_torch_paired``: median and quartiles of per-pair ratios over ``--pairs``
back-to-back MLX / torch steps, which see the same machine conditions).

A second workload (``--mimi9 tiny|mid``, ``none`` to skip) times the ``mimi9`` distillation
step (9-codebook Mimi forward with frozen encoder / decoder, straight-through quantizers,
multi-scale mel + commitment + Qwen / WavLM distillation losses, backward, grouped AdamW) on
random weights copied MLX -> torch and targets from random tiny teachers: ``tiny`` is
``mlx_speech/configs/mimi9_tiny.yaml`` (mimi9_tiny, 0.1 s crops), ``mid`` the released Mimi's
architecture (mimi9_202407, 1 s crops = 12 frames) with 1-layer random teachers of the real
widths (Qwen 1536, WavLM 1024). Reported under ``"mimi9"``, with the first-step losses of both.

The MLX trainer runs with the recipe default ``cpu_shards: auto`` (the batch as row shards on
one CPU stream per core, see :mod:`mlx_speech.train.trainer`; ``--cpu-shards 1`` for one stream);
torch_ref uses all cores through its intra-op threads.

Usage: ``python bench/train.py [--reps 5] [--threads N] [--mimi9 tiny|mid|none] [--cpu-shards K]``
(``--threads 1`` keeps both sides off contended cores on a machine shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def _threads_arg() -> int | None:
    """``--threads N`` must reach OpenBLAS (MLX) through the environment before it loads."""
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return None


if _threads_arg() is not None:
    os.environ["OPENBLAS_NUM_THREADS"] = str(_threads_arg())

import mlx_speech  # noqa: E402

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import compare_times, paired_ratio, torch_threads  # noqa: E402
from mlx_speech import _blas  # noqa: E402


def _spec(corpus: str, out: str, args: argparse.Namespace, activation: str):
    from mlx_speech.specs.train import TrainSpec  # noqa: PLC0415

    mel = {"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "win_length": 400,
           "n_mels": 80, "f_max": None}
    return TrainSpec.from_dict({
        "task": "mel_denoise", "steps": 1000, "out_dir": out, "seed": 0,
        "model": {"mel": mel, "dim": args.dim, "num_layers": args.layers, "num_heads": 4,
                  "ffn_dim": 4 * args.dim, "activation": activation},
        "data": {"sources": [{"kind": "manifest", "path": corpus}], "batch_size": args.batch,
                 "crop_seconds": 1.0},
        "optimizer": {"lr": 1e-4, "warmup_steps": 0, "grad_clip": 1.0},
        "ema": {"decay": 0.999},
        "monitor": {"progress": False},
        "cpu_shards": args.cpu_shards if args.cpu_shards == "auto" else int(args.cpu_shards),
    })


def _cpu_times(fns: dict, *, reps: int, rounds: int) -> dict[str, float]:
    """Median process CPU seconds per call, best of interleaved rounds: unlike wall time it
    hardly moves when other jobs share the cores (with one thread it is the compute time)."""
    import time  # noqa: PLC0415

    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            ts = []
            for _ in range(reps):
                t = time.process_time()
                fn()
                ts.append(time.process_time() - t)
            best[k] = min(best[k], sorted(ts)[len(ts) // 2])
    return best


def _bench_one(corpus: str, tmp: str, args: argparse.Namespace, activation: str) -> dict[str, object]:
    import numpy as np  # noqa: PLC0415

    from convert.parity import copy_mlx_to_torch  # noqa: PLC0415
    from mlx_speech.data.loader import Loader  # noqa: PLC0415
    from mlx_speech.train.loop import split_rows  # noqa: PLC0415
    from mlx_speech.train.trainer import Trainer as MLXTrainer  # noqa: PLC0415
    from torch_ref.train.trainer import Trainer as TorchTrainer  # noqa: PLC0415

    m = MLXTrainer(_spec(corpus, os.path.join(tmp, f"m_{activation}"), args, activation))
    t = TorchTrainer(_spec(corpus, os.path.join(tmp, f"t_{activation}"), args, activation))
    copy_mlx_to_torch(m.model, t.model)
    t.ema.weights = {k: v.detach().clone() for k, v in t.model.named_parameters()}
    with Loader(m.corpus.items, m.plan, sample_rate=16000, crop_seconds=1.0, seed=0,
                prefetch=1, workers=1) as loader:
        batch = next(loader)
    rngs = [np.random.default_rng([0, i]) for i in range(len(batch.items))]
    micro = split_rows(m.task.prepare(batch, rngs, train=True), 1)
    loss_m = m._train_step(micro, 1.0, 0).loss
    loss_t = t._train_step(micro, 1.0, 0).loss
    fns = {"mlx": lambda: m._train_step(micro, 1.0, 1), "torch": lambda: t._train_step(micro, 1.0, 1)}
    best = compare_times(fns, reps=args.reps, rounds=args.rounds)
    cpu = _cpu_times(fns, reps=args.reps, rounds=args.rounds)
    paired = paired_ratio(fns["mlx"], fns["torch"], pairs=args.pairs)
    return {
        "activation": activation, "mlx_over_torch_paired": paired, "mlx_cpu_shards": m.cpu_shards,
        "parameters": int(sum(v.size for v in m.params.values())),
        "mlx_step_ms": round(best["mlx"] * 1e3, 2), "torch_step_ms": round(best["torch"] * 1e3, 2),
        "mlx_over_torch": round(best["mlx"] / best["torch"], 3),
        "mlx_cpu_ms": round(cpu["mlx"] * 1e3, 2), "torch_cpu_ms": round(cpu["torch"] * 1e3, 2),
        "mlx_over_torch_cpu": round(cpu["mlx"] / cpu["torch"], 3),
        "first_step_loss_mlx": round(loss_m, 5), "first_step_loss_torch": round(loss_t, 5),
    }


def _mimi9_spec(corpus: str, out: str, cache: str, args: argparse.Namespace):
    from pathlib import Path  # noqa: PLC0415

    from mlx_speech.specs.train import TrainSpec  # noqa: PLC0415
    from mlx_speech.train.recipe import load_recipe  # noqa: PLC0415

    root = Path(__file__).resolve().parents[1]
    data = load_recipe(root / "mlx_speech" / "configs" / "mimi9_tiny.yaml").to_dict()
    data["data"].update(sources=[{"kind": "manifest", "path": corpus}], batch_size=args.mimi9_batch)
    data["model"]["cache_dir"] = cache
    data.update(out_dir=out, grad_accum=1, steps=1000)
    data["monitor"]["progress"] = False
    if args.mimi9 == "mid":
        data["model"].update(
            preset="mimi9_202407", crop_seconds=1.0,
            mel_scales=[[512, 128, 64], [1024, 256, 80], [2048, 512, 128]],
            qwen={"config": {"model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 1,
                             "intermediate_size": 1536, "num_attention_heads": 12,
                             "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": 101,
                             "max_position_embeddings": 256, "rope_theta": 10000.0,
                             "tie_word_embeddings": True}},
            wavlm={"spec": {"model_type": "wavlm", "hidden_size": 1024, "num_hidden_layers": 1,
                            "num_attention_heads": 16, "intermediate_size": 1024,
                            "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16,
                            "num_conv_pos_embedding_groups": 16}})
    return TrainSpec._build(data, strict=True, where="bench mimi9")


def _bench_mimi9(tmp: str, args: argparse.Namespace) -> dict[str, object]:
    import numpy as np  # noqa: PLC0415

    from convert.parity import copy_mlx_to_torch  # noqa: PLC0415
    from mlx_speech.data.loader import Loader  # noqa: PLC0415
    from mlx_speech.train.loop import split_rows  # noqa: PLC0415
    from mlx_speech.train.mimi9_data import write_timed_toy_corpus  # noqa: PLC0415
    from mlx_speech.train.trainer import Trainer as MLXTrainer  # noqa: PLC0415
    from torch_ref.train.trainer import Trainer as TorchTrainer  # noqa: PLC0415

    seconds = 1.0 if args.mimi9 == "mid" else 0.1
    corpus = str(write_timed_toy_corpus(os.path.join(tmp, "m9corpus"), n=max(4, args.mimi9_batch),
                                        seconds=seconds))
    cache = os.path.join(tmp, "m9cache")
    m = MLXTrainer(_mimi9_spec(corpus, os.path.join(tmp, "m9_m"), cache, args))
    t = TorchTrainer(_mimi9_spec(corpus, os.path.join(tmp, "m9_t"), cache, args))
    copy_mlx_to_torch(m.model, t.model)
    sr = m.spec.data.sample_rate
    with Loader(m.corpus.items, m.plan, sample_rate=sr, crop_seconds=None, seed=0,
                prefetch=1, workers=1) as loader:
        batch = next(loader)
    rngs = [np.random.default_rng([0, i]) for i in range(len(batch.items))]
    micro = split_rows(m.task.prepare(batch, rngs, train=True), 1)  # fills the teacher cache
    first_m = m._train_step(micro, 1.0, 0)
    first_t = t._train_step(micro, 1.0, 0)
    terms = ("mel", "commitment", "qwen", "wavlm")
    fns = {"mlx": lambda: m._train_step(micro, 1.0, 1), "torch": lambda: t._train_step(micro, 1.0, 1)}
    best = compare_times(fns, reps=args.mimi9_reps, rounds=args.rounds)
    cpu = _cpu_times(fns, reps=args.mimi9_reps, rounds=args.rounds)
    paired = paired_ratio(fns["mlx"], fns["torch"], pairs=args.pairs)
    frames = int(micro[0]["wav"].shape[1] // m.task.grid.frame_size)
    return {
        "size": args.mimi9, "batch": args.mimi9_batch, "frames": frames,
        "mlx_over_torch_paired": paired,
        "frame_rate": m.task.grid.frame_rate, "parameters": int(sum(v.size for v in m.params.values())),
        "trainable": int(sum(m.params[n].size for n in m.optims["optim"].names)),
        "mlx_step_ms": round(best["mlx"] * 1e3, 2), "torch_step_ms": round(best["torch"] * 1e3, 2),
        "mlx_over_torch": round(best["mlx"] / best["torch"], 3),
        "mlx_cpu_ms": round(cpu["mlx"] * 1e3, 2), "torch_cpu_ms": round(cpu["torch"] * 1e3, 2),
        "mlx_over_torch_cpu": round(cpu["mlx"] / cpu["torch"], 3),
        "first_step_mlx": {k: round(first_m.metrics[k], 6) for k in terms},
        "first_step_torch": {k: round(first_t.metrics[k], 6) for k in terms},
        "first_step_max_abs_diff": float(max(abs(first_m.metrics[k] - first_t.metrics[k]) for k in terms)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--activations", default="gelu,relu",
                    help="comma-separated feed-forward activations, one workload each")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for both (torch intra-op and OpenBLAS); default: all cores")
    ap.add_argument("--mimi9", choices=["tiny", "mid", "none"], default="tiny",
                    help="size of the mimi9 distillation-step workload (none: skip it)")
    ap.add_argument("--mimi9-batch", type=int, default=2)
    ap.add_argument("--mimi9-reps", type=int, default=3)
    ap.add_argument("--cpu-shards", default="auto",
                    help="the MLX recipe's cpu_shards (auto: one per core; 1: one stream)")
    ap.add_argument("--pairs", type=int, default=20,
                    help="back-to-back MLX / torch step pairs for the paired ratio")
    args = ap.parse_args()

    from mlx_speech.data.toy import write_toy_corpus  # noqa: PLC0415

    threads = torch_threads()
    if args.threads is not None:
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads)
        threads = args.threads
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        corpus = str(write_toy_corpus(os.path.join(tmp, "corpus"), n=max(16, args.batch * 2),
                                      seconds=(1.2, 2.0)))
        results = [_bench_one(corpus, tmp, args, a.strip()) for a in args.activations.split(",")]
        mimi9 = None if args.mimi9 == "none" else _bench_mimi9(tmp, args)
    print(json.dumps({
        "workload": "mel_denoise train step (log-mel + transformer fwd + bwd + AdamW + clip + EMA)",
        "batch": args.batch, "crop_s": 1.0, "frames": 101, "dim": args.dim, "layers": args.layers,
        "ffn_dim": 4 * args.dim, "results": results, "mimi9": mimi9,
        "mlx_blas": _blas.status().get("backend"), "threads": threads, "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
