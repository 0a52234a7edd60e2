"""Converting a speech file with the encoder-decoder s2s model (MLX): encode with the model's
codec, generate the output codes, decode them.

The codec is the registered family ``spec.codec`` with the weights ``spec.codec_weights`` (the
file the model was trained on; the trainer's export stores an absolute path) or the
``codec_weights`` given here. The input is read as the codec reads it (mono, resampled with a
notice), coded in pieces like ``mlx-speech codec encode``, and its first ``in_codebooks``
codebooks go to the model. The model's encoder sees the whole input, so generation starts once
the input is coded.

``stream=False`` generates every frame, then decodes the codes in pieces. ``stream=True``
decodes each output frame as soon as the model has completed it (``generate``'s ``on_frame``:
with the delay pattern, ``K_out - 1`` steps after the frame's first code) through the codec's
``decode_step`` and reports, per frame, the wall time since the previous frame's audio was
ready (the first: since the model started, input coding included) next to the frame period:
below it, the conversion keeps up with playback. Both modes write the same audio for a causal
codec (Mimi): the pieces are decoded as one batch call would.

Output paths are checked before any model work, and nothing is written when a step fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError, UserError
from mlx_speech.models.s2s.encdec_pattern import check_condition
from mlx_speech.pipelines.codec import (AUDIO_SUFFIXES, check_output, decode_codes, encode_wav,
                                        load_codec, read_audio)


def load_models(weights: str | Path, codec_weights: str | Path | None = None) -> tuple[Any, Any]:
    """``(s2s model, codec)``: the MLX s2s model at ``weights`` and its codec, checked to agree
    (codebook size, enough codebooks)."""
    import mlx_speech  # noqa: PLC0415

    model = mlx_speech.load(weights, family="s2s")
    s = model.spec
    where = codec_weights or s.codec_weights
    if where is None:
        raise UserError(f"{weights}: the model names no codec weights; pass codec_weights "
                        f"(the {s.codec} file it was trained on)")
    if not Path(where).expanduser().exists():
        raise CheckpointError(f"{weights}: codec weights not found: {where} (pass codec_weights)")
    codec = load_codec(s.codec, where, num_codebooks=max(s.in_codebooks, s.out_codebooks))
    if codec.codebook_size != s.codebook_size:
        raise CheckpointError(f"{where}: the {s.codec} codec has codebooks of "
                              f"{codec.codebook_size} codes, the model {s.codebook_size}")
    return model, codec


def convert_file(src_wav: str | Path, dst_wav: str | Path, *, weights: str | Path,
                 speaker: int | None = None, emotion: int | None = None,
                 language: int | None = None, stream: bool = False,
                 codec_weights: str | Path | None = None, max_frames: int | None = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 notice: Callable[[str], None] = print) -> dict[str, Any]:
    """Convert ``src_wav`` into ``dst_wav`` (see the module docstring); returns a summary.

    ``speaker`` / ``emotion`` / ``language``: condition ids of the model (None: none);
    ``max_frames``: output frames (None: as many as the input has, the same duration);
    ``temperature`` / ``top_k`` / ``top_p`` / ``seed``: sampling (temperature 0: greedy);
    ``notice``: receives resampling notes and, with ``stream``, one latency line per frame.
    """
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.audio.io import save  # noqa: PLC0415

    check_output(dst_wav, AUDIO_SUFFIXES, "audio files")
    t0 = time.perf_counter()
    model, codec = load_models(weights, codec_weights)
    s = model.spec
    for name, ids, count in (("speaker", speaker, s.num_speakers),
                             ("emotion", emotion, s.num_emotions),
                             ("language", language, s.num_languages)):
        check_condition(ids, count=count, name=name, batch=1)  # before any work is reported
    wav = read_audio(src_wav, codec.sample_rate, notice)
    if wav.size == 0:
        raise UserError(f"cannot convert {src_wav}: it holds no audio")
    codes_in = encode_wav(codec, wav)[:, :s.in_codebooks]
    frames = codes_in.shape[2] if max_frames is None else max_frames
    num_samples = wav.size if max_frames is None else None
    conds = dict(speaker=speaker, emotion=emotion, language=language)
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    period_ms = 1000.0 / codec.frame_rate
    summary: dict[str, Any] = {"model": str(weights), "codec": s.codec, "frames": int(frames),
                               "frame_rate": codec.frame_rate, "sample_rate": codec.sample_rate}
    if not stream:
        out = np.array(model.generate(codes_in, max_frames, **conds, **sampling))
        audio = decode_codes(codec, out, num_samples=num_samples)
    else:
        pieces: list[np.ndarray] = []
        lat: list[float] = []
        last = [time.perf_counter()]
        codec.reset_state()

        def on_frame(t: int, frame: mx.array) -> None:
            piece = codec.decode_step(frame[:, :, None], final=t == frames - 1)
            pieces.append(np.array(piece)[0])
            now = time.perf_counter()
            ms = 1000.0 * (now - (t0 if t == 0 else last[0]))
            last[0] = now
            lat.append(ms)
            notice(f"frame {t + 1}/{frames}: {ms:.1f} ms (frame period {period_ms:.1f} ms)")

        model.generate(codes_in, max_frames, **conds, **sampling, on_frame=on_frame)
        codec.reset_state()
        audio = np.concatenate(pieces)
        audio = audio[:num_samples] if num_samples is not None else audio
        steady = lat[1:] or lat
        summary["latency_ms"] = {"first_frame": round(lat[0], 2),
                                 "mean": round(float(np.mean(steady)), 2),
                                 "max": round(float(np.max(steady)), 2),
                                 "frame_period": round(period_ms, 2)}
    save(dst_wav, audio, codec.sample_rate)
    summary.update({"audio": str(dst_wav), "seconds": round(audio.size / codec.sample_rate, 3)})
    return summary
