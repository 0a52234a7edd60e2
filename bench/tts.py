"""TTS speed, MLX vs torch_ref, one run; prints JSON.

For the bundled voice (or ``--voice DIR``) and a fixed paragraph: the acoustic model
(phones -> log-mel) and the vocoder (Griffin-Lim with the CLI's 32 iterations, plus a
random-init HiFi-GAN generator of the V1 and V3 structures for reference), each timed in MLX
and in torch_ref with identical weights. RTF = compute seconds / audio seconds (lower is
faster). Timings interleave MLX and torch rounds (``bench/_timing.py``); on a shared machine
they are noisy: compare ratios from one run. Usage: ``python bench/tts.py [--reps 3]``.
"""

from __future__ import annotations

import argparse
import json

import mlx_speech  # noqa: F401  (before mlx: sets up the BLAS)
from _timing import compare_times, torch_threads

TEXT = ("The morning train was late again today, so we walked along the river until sunset. "
        "She bought fresh bread from the corner shop.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voice", default=None)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--gl-iters", type=int, default=32)
    p.add_argument("--no-hifigan", action="store_true", help="Skip the HiFi-GAN reference timings.")
    a = p.parse_args()

    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from convert.checkpoint import load_torch_model  # noqa: PLC0415
    from convert.parity import build_pair  # noqa: PLC0415
    from mlx_speech.audio.griffinlim import mel_to_audio  # noqa: PLC0415
    from mlx_speech.models.hifigan import HiFiGANGenerator  # noqa: PLC0415
    from mlx_speech.models.tts import Synthesizer  # noqa: PLC0415
    from mlx_speech.specs.tts import HiFiGANSpec  # noqa: PLC0415
    from torch_ref.audio.griffinlim import mel_to_audio as t_mel_to_audio  # noqa: PLC0415
    from torch_ref.models.hifigan import HiFiGANGenerator as THiFiGAN  # noqa: PLC0415

    threads = torch_threads()
    syn = Synthesizer(a.voice, gl_iters=a.gl_iters)
    tmodel, _ = load_torch_model(syn.voice_dir / "acoustic.safetensors")
    tmodel.eval()
    ids = [i for u in syn.frontend.encode(TEXT, syn.language) for i in u.ids]
    ids_m, ids_t = mx.array([ids], dtype=mx.int32), torch.tensor([ids])
    mel = syn.mel_for(ids)
    mx.eval(mel)
    frames = mel.shape[1]
    audio_s = frames * syn.mel.hop_length / syn.sample_rate
    mel_np = np.array(mel)
    with torch.no_grad():
        t_mel, _ = tmodel.synthesize(ids_t)
    acoustic_diff = float(np.abs(t_mel.numpy() - mel_np).max()) if t_mel.shape == mel.shape else None
    k = syn.mel.mel_kwargs()
    k.pop("center")

    def mlx_acoustic():
        mx.eval(syn.acoustic.synthesize(ids_m)[0])

    def torch_acoustic():
        with torch.no_grad():
            tmodel.synthesize(ids_t)

    def mlx_gl():
        mx.eval(mel_to_audio(mel, log_input=True, n_iter=a.gl_iters, **k))

    mel_t = torch.from_numpy(mel_np)

    def torch_gl():
        t_mel_to_audio(mel_t, log_input=True, n_iter=a.gl_iters, **k)

    fns = {"mlx_acoustic": mlx_acoustic, "torch_acoustic": torch_acoustic, "mlx_griffin_lim": mlx_gl,
           "torch_griffin_lim": torch_gl}
    for name in ([] if a.no_hifigan else ["v1", "v3"]):
        m, t = build_pair(HiFiGANGenerator, THiFiGAN, **HiFiGANSpec.from_preset(name).to_dict())
        m.remove_weight_norm()
        t.remove_weight_norm()
        fns[f"mlx_hifigan_{name}"] = (lambda m=m: mx.eval(m(mel)))
        fns[f"torch_hifigan_{name}"] = (lambda t=t: t(mel_t))
    with torch.no_grad():
        times = compare_times(fns, reps=a.reps, rounds=a.rounds)
    rtf = {k2: round(v / audio_s, 4) for k2, v in times.items()}
    out = {
        "voice": syn.voice_dir.name, "audio_s": round(audio_s, 3), "frames": frames, "phones": len(ids),
        "torch_threads": threads, "gl_iters": a.gl_iters,
        "rtf": rtf,
        "rtf_bundled_voice": {"mlx": round(rtf["mlx_acoustic"] + rtf["mlx_griffin_lim"], 4),
                              "torch_ref": round(rtf["torch_acoustic"] + rtf["torch_griffin_lim"], 4)},
        "acoustic_mel_max_abs_diff": acoustic_diff,
    }
    if not a.no_hifigan:
        out["rtf_acoustic_plus_hifigan_v1"] = {"mlx": round(rtf["mlx_acoustic"] + rtf["mlx_hifigan_v1"], 4),
                                               "torch_ref": round(rtf["torch_acoustic"] + rtf["torch_hifigan_v1"], 4)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
