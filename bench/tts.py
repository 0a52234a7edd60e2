"""TTS speed, MLX vs torch_ref, one run; prints JSON.

For the bundled voice (or ``--voice DIR``) and a fixed paragraph, per stage and in MLX and in
torch_ref with identical weights: the acoustic model (phones -> log-mel), the mel inversion
(NNLS, mel -> linear magnitude) and Griffin-Lim, the latter with the synthesis defaults
(``mlx_speech.pipelines.synth.GL_INIT`` / ``GL_ITERS``: PGHI start phases) and with the old default
(zero phase, 32 iterations) for reference; the neural vocoder (the voice's own, or a random-init
Vocos "small" where the voice ships none) in MLX and torch_ref; optionally a random-init HiFi-GAN
generator of the V1 and V3 structures. ``rtf_mlx_synthesize_end_to_end`` is the whole
``Synthesizer.synthesize`` call with the voice's default vocoder (neural where it ships one),
``rtf_mlx_synthesize_griffin_lim`` the same with Griffin-Lim. RTF = compute seconds / audio seconds (lower is faster), steady state: the
median of ``--reps`` calls after a warm-up call, best of ``--rounds`` interleaved rounds
(``bench/_timing.py``); ``first_call_s`` is one cold ``Synthesizer.synthesize`` in a fresh
``Synthesizer`` (graph building, allocator warm-up). ``griffin_lim_loop`` says where the MLX
Griffin-Lim iterates (numpy / pocketfft when MLX's device is the CPU). ``spectral_convergence``
is ``|| |STFT(y)| - S || / || S ||`` against the NNLS magnitude ``S`` (inconsistent, so it has a
floor above 0). On a shared machine timings are noisy: compare ratios from one run; ``cpu_s``
(process CPU time per call) is less sensitive to other load than wall time. MLX's OpenBLAS
runs on ``tts.SYNTH_BLAS_THREADS`` threads (as ``Synthesizer`` does) unless ``--blas-threads``.
Usage: ``python bench/tts.py [--reps 3] [--no-hifigan]``.
"""

from __future__ import annotations

import argparse
import json
import time

import mlx_speech

mlx_speech.accelerate()  # before mlx is imported: gives MLX its BLAS
from _timing import compare_times, torch_threads

TEXT = ("The morning train was late again today, so we walked along the river until sunset. "
        "She bought fresh bread from the corner shop.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voice", default=None)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--gl-iters", type=int, default=None, help="Default: the synthesis default GL_ITERS.")
    p.add_argument("--gl-init", default=None, help="Default: the synthesis default GL_INIT.")
    p.add_argument("--no-reference", action="store_true", help="Skip the zero-phase 32-iteration reference.")
    p.add_argument("--no-hifigan", action="store_true", help="Skip the HiFi-GAN reference timings.")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="Threads of MLX's OpenBLAS (Linux) for every MLX timing; default: the "
                        "synthesis setting tts.SYNTH_BLAS_THREADS; 0: OpenBLAS's own (all cores).")
    a = p.parse_args()
    from mlx_speech import _blas  # noqa: PLC0415
    from mlx_speech.pipelines import synth as tts  # noqa: PLC0415

    blas = _blas._HANDLE if hasattr(_blas._HANDLE, "openblas_set_num_threads") else None
    if a.blas_threads is not None:
        tts.SYNTH_BLAS_THREADS = a.blas_threads or None  # the end-to-end call uses the same
    if blas is not None and tts.SYNTH_BLAS_THREADS is not None:
        blas.openblas_set_num_threads(tts.SYNTH_BLAS_THREADS)
    blas_threads = None if blas is None else int(blas.openblas_get_num_threads())

    import mlx.core as mx  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from torch_ref.weights import load_torch_model  # noqa: PLC0415
    from convert.parity import build_pair  # noqa: PLC0415
    from mlx_speech.audio import griffinlim as mgl  # noqa: PLC0415
    from mlx_speech.audio.spectral import stft  # noqa: PLC0415
    from mlx_speech.models.hifigan.model import HiFiGANGenerator  # noqa: PLC0415
    from mlx_speech.pipelines.synth import GL_INIT, GL_ITERS, Synthesizer  # noqa: PLC0415
    from mlx_speech.models.hifigan.spec import HiFiGANSpec  # noqa: PLC0415
    from torch_ref.audio import griffinlim as tgl  # noqa: PLC0415
    from torch_ref.models.hifigan.model import HiFiGANGenerator as THiFiGAN  # noqa: PLC0415

    threads = torch_threads()
    iters = GL_ITERS if a.gl_iters is None else a.gl_iters
    init = GL_INIT if a.gl_init is None else a.gl_init
    t0 = time.perf_counter()
    syn = Synthesizer(a.voice, gl_iters=iters, gl_init=init)
    load_s = time.perf_counter() - t0
    gl_syn = Synthesizer(a.voice, vocoder="griffin-lim", gl_iters=iters, gl_init=init)
    t0, c0 = time.perf_counter(), time.process_time()
    first_wav = syn.synthesize(TEXT)
    first = {"wall_s": round(time.perf_counter() - t0, 4), "cpu_s": round(time.process_time() - c0, 4),
             "audio_s": round(len(first_wav) / syn.sample_rate, 3)}

    tmodel, _ = load_torch_model(syn.voice_dir / "acoustic.safetensors")
    tmodel.eval()
    ids = [i for u in syn.frontend.encode(TEXT, syn.language) for i in u.ids]
    ids_m, ids_t = mx.array([ids], dtype=mx.int32), torch.tensor([ids])
    mel = syn.mel_for(ids)
    mx.eval(mel)
    frames = mel.shape[1]
    audio_s = frames * syn.mel.hop_length / syn.sample_rate
    mel_np = np.array(mel)
    mel_t = torch.from_numpy(mel_np)
    with torch.no_grad():
        t_mel, _ = tmodel.synthesize(ids_t)
    acoustic_diff = float(np.abs(t_mel.numpy() - mel_np).max()) if t_mel.shape == mel.shape else None
    k = syn.mel.mel_kwargs()
    k.pop("center")
    frame = {n: k[n] for n in ("n_fft", "hop_length", "win_length")}
    fb = {n: k[n] for n in ("sample_rate", "n_fft", "n_mels", "f_min", "f_max", "htk", "norm", "power")}
    mag = mgl.mel_to_linear(mx.exp(mel), **fb)
    mx.eval(mag)
    mag_np = np.array(mag)
    mag_t = torch.from_numpy(mag_np)
    configs = {"default": (init, iters)}
    if not a.no_reference:
        configs["zeros32"] = ("zeros", 32)

    def sc(y) -> float:
        est = np.abs(np.array(stft(mx.array(np.asarray(y, np.float32)), **frame)))
        return round(float(np.linalg.norm(est - mag_np) / np.linalg.norm(mag_np)), 4)

    quality = {}
    for name, (ini, n_it) in configs.items():
        quality[name] = {"init": ini, "iters": n_it,
                         "spectral_convergence": sc(mgl.griffin_lim(mag, n_iter=n_it, init=ini, **frame))}

    cpu: dict[str, list[float]] = {}

    def with_cpu_time(name, fn):
        def run():
            c = time.process_time()
            fn()
            cpu.setdefault(name, []).append(time.process_time() - c)
        return run

    fns = {
        "mlx_acoustic": lambda: mx.eval(syn.acoustic.synthesize(ids_m)[0]),
        "torch_acoustic": lambda: tmodel.synthesize(ids_t),
        "mlx_mel_inversion": lambda: mx.eval(mgl.mel_to_linear(mx.exp(mel), **fb)),
        "torch_mel_inversion": lambda: tgl.mel_to_linear(torch.exp(mel_t), **fb),
    }
    for name, (ini, n_it) in configs.items():
        fns[f"mlx_griffin_lim_{name}"] = (lambda ini=ini, n_it=n_it:
                                          mx.eval(mgl.griffin_lim(mag, n_iter=n_it, init=ini, **frame)))
        fns[f"torch_griffin_lim_{name}"] = (lambda ini=ini, n_it=n_it:
                                            tgl.griffin_lim(mag_t, n_iter=n_it, init=ini, **frame))
    fns["mlx_synthesize"] = lambda: syn.synthesize(TEXT)
    fns["mlx_synthesize_griffin_lim"] = lambda: gl_syn.synthesize(TEXT)
    own = syn.own_vocoder()
    if own is not None:
        import torch_ref  # noqa: PLC0415
        from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

        m_voc, _ = load_mlx_model(own)
        t_voc = torch_ref.load(own)
        vocoder = {"file": own.name, "kind": type(m_voc).__name__}
    else:
        from mlx_speech.models.vocos.model import VocosGenerator  # noqa: PLC0415
        from mlx_speech.models.vocos.spec import VocosSpec  # noqa: PLC0415
        from torch_ref.models.vocos.model import VocosGenerator as TVocos  # noqa: PLC0415

        m_voc, t_voc = build_pair(VocosGenerator, TVocos, spec=VocosSpec.from_preset("small"))
        vocoder = {"file": None, "kind": "VocosGenerator (random init, preset small)"}
    m_voc.remove_weight_norm()
    t_voc.remove_weight_norm()
    t_voc.eval()
    with torch.no_grad():
        vocoder["mlx_vs_torch_max_abs_diff"] = float(np.abs(np.array(m_voc(mel)) - t_voc(mel_t).numpy()).max())

    def mlx_neural() -> None:
        with _blas.blas_threads(tts.SYNTH_BLAS_THREADS):
            mx.eval(m_voc(mel))

    fns["mlx_neural_vocoder"] = mlx_neural
    fns["torch_neural_vocoder"] = lambda: t_voc(mel_t)
    for name in ([] if a.no_hifigan else ["v1", "v3"]):
        m, t = build_pair(HiFiGANGenerator, THiFiGAN, spec=HiFiGANSpec.from_preset(name))
        m.remove_weight_norm()
        t.remove_weight_norm()
        fns[f"mlx_hifigan_{name}"] = (lambda m=m: mx.eval(m(mel)))
        fns[f"torch_hifigan_{name}"] = (lambda t=t: t(mel_t))
    with torch.no_grad():
        times = compare_times({n: with_cpu_time(n, fn) for n, fn in fns.items()}, reps=a.reps, rounds=a.rounds)
    # the end-to-end call speaks TEXT sentence by sentence (pause included): its own audio length
    seconds = {n: (first["audio_s"] if n.startswith("mlx_synthesize") else audio_s) for n in fns}
    rtf = {n: round(v / seconds[n], 4) for n, v in times.items()}
    cpu_rtf = {n: round(float(np.median(cpu[n])) / seconds[n], 4) for n in fns}

    def total(side: str, table: dict, gl: str) -> float:
        return round(sum(table[f"{side}_{stage}"] for stage in ("acoustic", "mel_inversion", f"griffin_lim_{gl}")), 4)

    out = {
        "voice": syn.voice_dir.name, "audio_s": round(audio_s, 3), "frames": frames, "phones": len(ids),
        "torch_threads": threads, "mlx_blas_threads": blas_threads,
        "griffin_lim_loop": "numpy/pocketfft" if mgl.use_numpy_path() else "mlx",
        "mel_inversion": "numpy/sparse filterbank" if mgl.use_numpy_path() else "mlx",
        "gl": quality, "rtf": rtf, "cpu_rtf": cpu_rtf,
        "rtf_bundled_voice": {gl: {"mlx": total("mlx", rtf, gl), "torch_ref": total("torch", rtf, gl),
                                   "mlx_cpu_time": total("mlx", cpu_rtf, gl)} for gl in configs},
        "neural_vocoder": vocoder,
        "rtf_neural": {"mlx": round(rtf["mlx_acoustic"] + rtf["mlx_neural_vocoder"], 4),
                       "torch_ref": round(rtf["torch_acoustic"] + rtf["torch_neural_vocoder"], 4),
                       "mlx_vocoder_only": rtf["mlx_neural_vocoder"], "torch_ref_vocoder_only": rtf["torch_neural_vocoder"]},
        "default_vocoder": syn.vocoder_name,
        "rtf_mlx_synthesize_end_to_end": rtf["mlx_synthesize"],
        "rtf_mlx_synthesize_griffin_lim": rtf["mlx_synthesize_griffin_lim"],
        "first_call": first, "voice_load_s": round(load_s, 3),
        "acoustic_mel_max_abs_diff": acoustic_diff,
    }
    if not a.no_hifigan:
        out["rtf_acoustic_plus_hifigan_v1"] = {"mlx": round(rtf["mlx_acoustic"] + rtf["mlx_hifigan_v1"], 4),
                                               "torch_ref": round(rtf["torch_acoustic"] + rtf["torch_hifigan_v1"], 4)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
