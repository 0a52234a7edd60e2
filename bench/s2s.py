"""Moshi-style LM generation speed, one run, prints JSON.

Workload: greedy generation, batch 1, fp32, ``--steps`` (40) frames of a random user stream,
one model step per frame (temporal transformer + ``dep_q`` depformer steps + token choice),
each frame's tokens on the host before the next frame (what a live conversation does). The
same random weights (moshi's ``get_moshi_lm(None, lm_kwargs=...)``, saved as a moshi folder)
run in:

* ``mlx``: :meth:`mlx_speech.models.s2s.lm.MoshiLM.step` through ``mlx_speech.load``;
* ``torch_ref``: the torch mirror's ``step`` through ``torch_ref.load``;
* ``moshi``: moshi's own ``LMGen(lm, use_sampling=False).step`` (eager: ``torch.compile``
  off, as on a CPU without a compiler toolchain; CUDA graphs do not apply on a CPU).

Sizes (``--sizes``): ``tiny`` (the test preset) and ``small`` (a 8 + 4 layer LM of width
512 / 256 with moshiko's 16 codebooks of 2048 and 32000 text tokens). Reported per size:
milliseconds per step (best of ``--rounds`` interleaved rounds of the median over the
steps) and ``mlx_over_moshi`` (target: <= 1.2). torch runs ``--torch-threads`` (1) intra-op
threads: a step's products have one row, and on a shared CPU extra torch threads spin-wait
rather than help (``0``: every core).

Usage: ``python bench/s2s.py [--steps 40] [--rounds 3] [--sizes tiny,small]
[--torch-threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mlx_speech  # noqa: E402

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import torch_threads  # noqa: E402

from mlx_speech.models.s2s.lm_spec import MoshiLMSpec, tiny  # noqa: E402

TARGET = 1.2


def small() -> MoshiLMSpec:
    """A ~60M-parameter LM with moshiko's streams and vocabularies."""
    return MoshiLMSpec(dim=512, num_heads=8, num_layers=8, context=250, depformer_dim=256,
                       depformer_dim_feedforward=int(4.125 * 256), depformer_num_heads=4,
                       depformer_num_layers=4)


SIZES = {"tiny": tiny, "small": small}


def _folder(spec: MoshiLMSpec, root: Path):
    """moshi's LMModel for ``spec`` (seed 0) and the moshi folder it was saved in."""
    import torch  # noqa: PLC0415
    from moshi.models import loaders  # noqa: PLC0415
    from safetensors.torch import save_file  # noqa: PLC0415

    torch.manual_seed(0)
    lm = loaders.get_moshi_lm(None, lm_kwargs=spec.to_moshi_config(), dtype=torch.float32)
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()},
              str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps(spec.to_moshi_config()))
    return lm.eval()


def _per_step(step, reset, user, steps: int) -> float:
    """Median seconds of one step over a fresh conversation of ``steps`` frames."""
    reset()
    times = []
    for t in range(steps):
        t0 = time.perf_counter()
        step(user[:, :, t: t + 1])
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_size(name: str, steps: int, rounds: int) -> dict:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from moshi.models.lm import LMGen  # noqa: PLC0415
    from moshi.utils.compile import no_compile  # noqa: PLC0415

    import torch_ref  # noqa: PLC0415

    spec = SIZES[name]()
    with tempfile.TemporaryDirectory() as tmp:
        lm = _folder(spec, Path(tmp))
        ours, tref = mlx_speech.load(tmp), torch_ref.load(tmp)
    user = np.random.default_rng(0).integers(0, spec.card, (1, spec.user_codebooks, steps))
    gen = LMGen(lm, use_sampling=False)
    ctx = {}

    def moshi_reset():
        if "stack" in ctx:
            ctx["stack"].__exit__(None, None, None)
        ctx["stack"] = gen.streaming(1)
        ctx["stack"].__enter__()

    def moshi_step(frame):
        with no_compile():
            out = gen.step(torch.from_numpy(frame))
        if out is not None:
            out.numpy()

    runs = {"mlx": (ours.step, ours.reset_state), "torch_ref": (tref.step, tref.reset_state),
            "moshi": (moshi_step, moshi_reset)}
    best = {k: float("inf") for k in runs}
    for _ in range(rounds):
        for key, (step, reset) in runs.items():
            best[key] = min(best[key], _per_step(step, reset, user, steps))
    ctx["stack"].__exit__(None, None, None)
    params = sum(p.numel() for p in lm.parameters())
    out = {"params_m": round(params / 1e6, 2), "steps": steps,
           **{f"{k}_ms_per_step": round(1e3 * v, 3) for k, v in best.items()}}
    out["mlx_over_moshi"] = round(best["mlx"] / best["moshi"], 3)
    out["torch_ref_over_moshi"] = round(best["torch_ref"] / best["moshi"], 3)
    out["mlx_meets_target"] = out["mlx_over_moshi"] <= TARGET
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (0: every core)")
    args = ap.parse_args(argv)
    try:
        import moshi  # noqa: F401, PLC0415
    except ImportError:
        result = {"skipped": "moshi is not installed (pip install --no-deps moshi==0.2.13)"}
        print(json.dumps(result))
        return result
    threads = torch_threads()
    if args.torch_threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(threads := args.torch_threads)
    result = {"bench": "s2s_moshi_lm_step", "torch_threads": threads, "target": TARGET,
              "sizes": {n: bench_size(n, args.steps, args.rounds)
                        for n in args.sizes.split(",")}}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
