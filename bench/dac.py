"""DAC speed, one run, prints JSON: MLX vs torch_ref vs transformers ``DacModel`` on the same weights.

Workload per preset (``--presets``, default ``dac_44khz`` and ``dac_16khz``): ``--seconds`` (10)
of a speech-like signal, batch 1, fp32, every codebook of the preset. The weights are a random
transformers ``DacModel`` of the preset's shape (plain weights, as released transformers folders
are), saved with ``save_pretrained`` and loaded through ``mlx_speech.load`` / ``torch_ref.load``,
so all three run the same numbers. Times are encode + decode, as RTF = compute seconds / audio
seconds:

* ``mlx_batch`` / ``torch_ref_batch`` / ``transformers_batch``: ``decode(encode(wav))`` (for
  transformers the input is cut to a whole number of hops: it does not pad);
* ``mlx_stream`` / ``torch_ref_stream``: the file pipeline's streaming loop, 25 frames per
  ``encode_step`` / ``decode_step`` with the exact look-ahead of non-causal models
  (``mlx_speech/models/dac/chunked.py``); transformers has no streaming.

Each timing is the best of ``--rounds`` interleaved rounds (``bench/_timing.py``); compare the
ratios, taken within this one run. ``paired``: the MLX / torch_ref batch ratio over back-to-back
pairs (steadier on a shared machine). The target (issue 20): MLX batch at most 1.1x torch_ref.

Usage: ``python bench/dac.py [--seconds 10] [--rounds 3] [--presets dac_44khz,dac_16khz]``.
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

CHUNK = 25
LIMIT = 1.1


def _hf_model(preset: str):
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    from mlx_speech.models.dac.spec import DACSpec  # noqa: PLC0415

    s = DACSpec.from_preset(preset)
    cfg = transformers.DacConfig(
        encoder_hidden_size=s.encoder_dim, downsampling_ratios=list(s.encoder_rates),
        decoder_hidden_size=s.decoder_dim, upsampling_ratios=list(s.decoder_rates),
        n_codebooks=s.total_codebooks, codebook_size=s.codebook_sizes[0],
        codebook_dim=s.codebook_dim, hidden_size=s.latent_dim, sampling_rate=s.sample_rate,
        hop_length=s.hop_length)
    torch.manual_seed(0)
    model = transformers.DacModel(cfg).eval()
    with torch.no_grad():
        for q in model.quantizer.quantizers:
            q.codebook.weight.normal_()
    return model


def _wav(seconds: float, sr: int):
    from mlx_speech.audio.synth import speechlike  # noqa: PLC0415

    return (0.5 * speechlike(sr=sr, seconds=seconds, f0=140.0, seed=0)).astype("float32")


def _timings(preset: str, seconds: float, rounds: int, tmp: Path) -> dict:
    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    import torch_ref  # noqa: PLC0415

    hf = _hf_model(preset)
    folder = tmp / preset
    hf.save_pretrained(folder)
    m = mlx_speech.load(folder)
    t = torch_ref.load(folder)
    sr, hop = m.sample_rate, m.frame_size
    wav = _wav(seconds, sr)
    x_m, x_t = mx.array(wav[None]), torch.from_numpy(wav[None])
    n = len(wav) // hop * hop
    x_hf = torch.from_numpy(wav[None, None, :n])

    def mlx_batch() -> None:
        mx.eval(m.decode(m.encode(x_m)))

    def tref_batch() -> None:
        with torch.inference_mode():
            t.decode(t.encode(x_t))

    def hf_batch() -> None:
        with torch.inference_mode():
            hf.decode(audio_codes=hf.encode(x_hf).audio_codes)

    step = CHUNK * hop

    def mlx_stream() -> None:
        m.reset_state()
        for i in range(0, len(wav), step):
            c = m.encode_step(x_m[:, i:i + step], final=i + step >= len(wav))
            if c.shape[2]:
                mx.eval(m.decode_step(c))
        mx.eval(m.decode_step(mx.zeros((1, m.num_codebooks, 0), dtype=mx.int32), final=True))

    def tref_stream() -> None:
        t.reset_state()
        for i in range(0, len(wav), step):
            c = t.encode_step(x_t[:, i:i + step], final=i + step >= len(wav))
            if c.shape[2]:
                t.decode_step(c)
        t.decode_step(torch.zeros(1, t.num_codebooks, 0, dtype=torch.int32), final=True)

    # the three agree before anything is timed
    codes_m = np.array(m.encode(x_m))
    with torch.inference_mode():
        codes_t = t.encode(x_t).numpy()
        codes_hf = hf.encode(x_hf).audio_codes.numpy()
    agree = {"codes_mlx_vs_torch_ref": float((codes_m == codes_t).mean()),
             "codes_mlx_vs_transformers": float((codes_m[:, :, :codes_hf.shape[2]] == codes_hf).mean())}
    fns = {"mlx_batch": mlx_batch, "torch_ref_batch": tref_batch, "transformers_batch": hf_batch,
           "mlx_stream": mlx_stream, "torch_ref_stream": tref_stream}
    best = compare_times(fns, reps=1, rounds=rounds)
    rtf = {k: round(v / seconds, 4) for k, v in best.items()}
    paired = paired_ratio(mlx_batch, tref_batch, pairs=2 * rounds + 1)
    ratios = {"mlx_batch_over_torch_ref_batch": round(rtf["mlx_batch"] / rtf["torch_ref_batch"], 3),
              "mlx_batch_over_transformers_batch":
                  round(rtf["mlx_batch"] / rtf["transformers_batch"], 3),
              "mlx_stream_over_torch_ref_stream":
                  round(rtf["mlx_stream"] / rtf["torch_ref_stream"], 3)}
    return {"preset": preset, "sample_rate": sr, "frame_rate": round(m.frame_rate, 4),
            "num_codebooks": m.num_codebooks, "agree": agree, "rtf": rtf, "ratios": ratios,
            "paired_mlx_over_torch_ref_batch": paired,
            "target": {"limit": LIMIT, "met": paired["median"] <= LIMIT}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--presets", default="dac_44khz,dac_16khz")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
            results.append(_timings(preset, args.seconds, args.rounds, Path(tmp)))
    print(json.dumps({"bench": f"dac_{args.seconds:g}s", "dtype": "float32", "batch": 1,
                      "torch_threads": torch_threads(), "cpus": os.cpu_count(),
                      "chunk_frames": CHUNK, "results": results}, indent=2))


if __name__ == "__main__":
    main()
