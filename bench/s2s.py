"""Speech-to-speech generation speed, one run, prints JSON. Two workloads (``--workloads``):

``lm`` -- the Moshi-style LM (model B). Greedy generation, batch 1, fp32, ``--steps`` (40)
frames of a random user stream, one model step per frame (temporal transformer + ``dep_q``
depformer steps + token choice), each frame's tokens on the host before the next frame (what a
live conversation does). The same random weights (moshi's ``get_moshi_lm(None,
lm_kwargs=...)``, saved as a moshi folder) run in:

* ``mlx``: :meth:`mlx_speech.models.s2s.lm.MoshiLM.step` through ``mlx_speech.load``;
* ``torch_ref``: the torch mirror's ``step`` through ``torch_ref.load``;
* ``moshi``: moshi's own ``LMGen(lm, use_sampling=False).step`` (eager: ``torch.compile``
  off, as on a CPU without a compiler toolchain; CUDA graphs do not apply on a CPU).

Sizes (``--sizes``): ``tiny`` (the test preset) and ``small`` (a 8 + 4 layer LM of width
512 / 256 with moshiko's 16 codebooks of 2048 and 32000 text tokens). Reported per size:
milliseconds per step (best of ``--rounds`` interleaved rounds of the median over the
steps) and ``mlx_over_moshi`` (target: <= 1.2). Skipped when moshi is not installed.

``encdec`` -- the encoder-decoder ``S2SModel`` (model A), for the ``S2SSpec`` presets of
``--encdec-sizes`` (``s2s_tiny,s2s_base``), random weights (seed 0) copied into the torch_ref
twin (``convert.parity.copy_mlx_to_torch``), ``eval`` mode, batch 1, fp32, greedy, random
input codes of ``--frames`` (100) frames decoded to as many output frames. Per framework
(``mlx``, ``torch_ref``), best of ``--rounds`` interleaved rounds:

* ``encoder_ms``: ``encode`` of the input codes (median of 5 calls);
* ``generate_s``, ``tokens_per_s`` (output codes, ``frames * out_codebooks``, per second) and
  ``frames_per_s``: one ``generate(codes, frames)`` call, input checks and encoding included;
* ``step_ms_mean`` / ``step_ms_max``: each ``decode_step`` after ``start`` with the greedy
  choice and the pattern's forced positions, the tokens on the host before the next step (as
  ``generate`` does; one step completes one output frame once the ``delay`` pattern is
  filled); the round with the lowest mean is kept;
* ``first_frame_ms``: ``start`` (checks, encoding, caches) plus the ``delay + 1`` steps that
  complete the first output frame (best round) -- the wait after the whole input utterance is
  known (the encoder is non-causal).

One short ``generate`` per framework runs first (first-call allocations and lazy set-up).

``greedy_codes_agree`` is the share of output codes the two frameworks' ``generate`` agree on
(a sanity check of the shared weights, not a parity test). ``per_frame_meets_target`` compares
``step_ms_max`` with the 150 ms latency target (``LATENCY_TARGET_MS``).

torch runs ``--torch-threads`` (1) intra-op threads: a step's products have one row, and on a
shared CPU extra torch threads spin-wait rather than help (``0``: every core). For the same
reason the ``encdec`` workload runs MLX's OpenBLAS (Linux) on ``--blas-threads`` (1; ``0``:
OpenBLAS's own count): on a shared machine two BLAS threads left the ``s2s_base`` encoder's
time bimodal, one sibling spin-waiting for the other (docs/performance.md). ``mlx_blas_threads``
in the JSON is the count used, null where MLX does not use OpenBLAS.

Usage: ``python bench/s2s.py [--workloads lm,encdec] [--steps 40] [--rounds 3]
[--sizes tiny,small] [--encdec-sizes s2s_tiny,s2s_base] [--frames 100] [--torch-threads 1]
[--blas-threads 1]``.
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
LATENCY_TARGET_MS = 150.0


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


def _mlx_steps(model, codes, frames: int) -> tuple[float, list[float]]:
    """``(start seconds, per-step seconds)`` of one greedy decode of ``codes`` (MLX)."""
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.models.s2s import encdec_pattern as pat  # noqa: PLC0415

    s = model.spec
    t0 = time.perf_counter()
    state = model.start(codes)
    mx.eval(state.memory)
    start = time.perf_counter() - t0
    tokens = mx.full((codes.shape[0], s.out_codebooks), s.special, dtype=mx.int32)
    times = []
    for step in range(s.steps(frames)):
        t0 = time.perf_counter()
        tokens = mx.argmax(model.decode_step(tokens, state), axis=-1).astype(mx.int32)
        forced = pat.forced(step, frames, s.out_codebooks, s.pattern)
        if forced.any():
            tokens = mx.where(mx.array(forced)[None], s.special, tokens).astype(mx.int32)
        mx.eval(tokens)
        times.append(time.perf_counter() - t0)
    return start, times


def _torch_steps(model, codes, frames: int) -> tuple[float, list[float]]:
    """``(start seconds, per-step seconds)`` of one greedy decode of ``codes`` (torch_ref)."""
    import torch  # noqa: PLC0415

    from mlx_speech.models.s2s import encdec_pattern as pat  # noqa: PLC0415

    s = model.spec
    with torch.no_grad():
        t0 = time.perf_counter()
        state = model.start(codes)
        start = time.perf_counter() - t0
        tokens = torch.full((codes.shape[0], s.out_codebooks), s.special, dtype=torch.int32)
        times = []
        for step in range(s.steps(frames)):
            t0 = time.perf_counter()
            tokens = model.decode_step(tokens, state).argmax(dim=-1).to(torch.int32)
            forced = pat.forced(step, frames, s.out_codebooks, s.pattern)
            if forced.any():
                tokens = torch.where(torch.from_numpy(forced)[None],
                                     torch.full_like(tokens, s.special), tokens)
            tokens.numpy()
            times.append(time.perf_counter() - t0)
    return start, times


def bench_encdec(name: str, frames: int, rounds: int) -> dict:
    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from _timing import median_time  # noqa: PLC0415

    from convert.parity import copy_mlx_to_torch  # noqa: PLC0415
    from mlx_speech.models.s2s.encdec import S2SModel  # noqa: PLC0415
    from mlx_speech.models.s2s.spec import S2SSpec  # noqa: PLC0415
    from torch_ref.models.s2s.encdec import S2SModel as TorchS2S  # noqa: PLC0415

    spec = S2SSpec.from_preset(name)
    mx.random.seed(0)
    ours = S2SModel(spec)
    ours.eval()
    tref = TorchS2S(spec).eval()
    copy_mlx_to_torch(ours, tref)
    codes = np.random.default_rng(0).integers(
        0, spec.codebook_size, (1, spec.in_codebooks, frames)).astype(np.int32)

    def mlx_encode():
        mx.eval(ours.encode(mx.array(codes)))

    def torch_encode():
        with torch.no_grad():
            tref.encode(torch.from_numpy(codes))

    runs = {"mlx": (ours, mlx_encode, _mlx_steps), "torch_ref": (tref, torch_encode, _torch_steps)}
    out: dict = {"params_m": round(sum(p.numel() for p in tref.parameters()) / 1e6, 2),
                 "in_frames": frames, "out_frames": frames, "out_codebooks": spec.out_codebooks,
                 "decoder_steps": spec.steps(frames)}
    best: dict = {k: {"encode": float("inf"), "generate": float("inf"), "first": float("inf"),
                      "steps": None} for k in runs}
    got = {}
    for model, _, _ in runs.values():  # warm-up: first-call allocations, lazy inits
        model.generate(codes[:, :, :8], 8)
    for _ in range(rounds):
        for key, (model, encode, steps) in runs.items():
            b = best[key]
            b["encode"] = min(b["encode"], median_time(encode, 5))
            t0 = time.perf_counter()
            got[key] = np.asarray(model.generate(codes, frames))
            b["generate"] = min(b["generate"], time.perf_counter() - t0)
            start, times = steps(model, codes, frames)
            b["first"] = min(b["first"], start + sum(times[: spec.delay + 1]))
            if b["steps"] is None or sum(times) < sum(b["steps"][1]):
                b["steps"] = (start, times)
    for key, b in best.items():
        times = b["steps"][1]
        out[key] = {"encoder_ms": round(1e3 * b["encode"], 2),
                    "generate_s": round(b["generate"], 3),
                    "tokens_per_s": round(frames * spec.out_codebooks / b["generate"], 1),
                    "frames_per_s": round(frames / b["generate"], 1),
                    "step_ms_mean": round(1e3 * sum(times) / len(times), 2),
                    "step_ms_max": round(1e3 * max(times), 2),
                    "first_frame_ms": round(1e3 * b["first"], 2),
                    "per_frame_meets_target": 1e3 * max(times) < LATENCY_TARGET_MS}
    out["mlx_over_torch_ref_generate"] = round(best["mlx"]["generate"] / best["torch_ref"]["generate"], 3)
    out["greedy_codes_agree"] = round(float((got["mlx"] == got["torch_ref"]).mean()), 4)
    return out


def bench_lm(sizes: list[str], steps: int, rounds: int) -> dict:
    try:
        import moshi  # noqa: F401, PLC0415
    except ImportError:
        return {"skipped": "moshi is not installed (pip install --no-deps moshi==0.2.13)"}
    return {"bench": "s2s_moshi_lm_step", "target": TARGET,
            "sizes": {n: bench_size(n, steps, rounds) for n in sizes}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="lm,encdec", help="lm (model B), encdec (model A)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="tiny,small", help="lm sizes")
    ap.add_argument("--encdec-sizes", default="s2s_tiny,s2s_base", help="S2SSpec presets")
    ap.add_argument("--frames", type=int, default=100, help="encdec input and output frames")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (0: every core)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="encdec: threads of MLX's OpenBLAS (0: OpenBLAS's own count)")
    args = ap.parse_args(argv)
    workloads = args.workloads.split(",")
    unknown = sorted(set(workloads) - {"lm", "encdec"})
    if unknown:
        ap.error(f"unknown workload {unknown[0]!r} (lm, encdec)")
    threads = torch_threads()
    if args.torch_threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(threads := args.torch_threads)
    result: dict = {"bench": "s2s", "torch_threads": threads}
    if "lm" in workloads:
        result["lm"] = bench_lm(args.sizes.split(","), args.steps, args.rounds)
    if "encdec" in workloads:
        from mlx_speech import _blas  # noqa: PLC0415

        with _blas.blas_threads(args.blas_threads or None):
            lib = _blas._HANDLE if hasattr(_blas._HANDLE, "openblas_get_num_threads") else None
            result["encdec"] = {
                "latency_target_ms": LATENCY_TARGET_MS,
                "mlx_blas_threads": None if lib is None else int(lib.openblas_get_num_threads()),
                "sizes": {n: bench_encdec(n, args.frames, args.rounds)
                          for n in args.encdec_sizes.split(",")}}
    print(json.dumps(result, indent=2))
    return result

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
