"""File-level codec work behind ``mlx-speech codec encode / decode / roundtrip`` (MLX).

Long files are processed in pieces of ``CHUNK_FRAMES`` codec frames through the streaming
calls (``encode_step`` / ``decode_step``, the last piece with ``final=True``): memory stays
bounded, a progress bar can follow, and the result equals one batch call. Causal codecs (Mimi,
our DAC speech presets) return each piece's output at once; non-causal ones (Descript's DAC)
hold back their look-ahead and return it on the final piece
(``tests/test_mimi_model.py``, ``tests/test_dac_streaming.py`` check the equality). A model that
cannot stream exactly (``streamable`` False: a non-causal DAC with transformer layers) is
refused with one line. ``encode`` also reads its input from disk block by block, so its peak
memory does not grow with the file (``bench/codec_memory.py``). Audio at another sample rate is
resampled (soxr HQ, streaming) and multi-channel audio is mixed to mono, each with a one-line
notice. Output paths are checked before any model work, and nothing is written on failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CodesError, SpecError, UserError
from mlx_speech.io.codes import CodesFile, check_compatible, load_codes, save_codes

CHUNK_FRAMES = 25  # frames per streaming step (2 s of a 12.5 Hz codec)


def load_codec(model: str, weights: str | Path, *, num_codebooks: int | None = None) -> Any:
    """The MLX codec ``model`` (a registered codec family) with the weights at ``weights``,
    in any format :func:`mlx_speech.load` recognises for that family."""
    import mlx_speech  # noqa: PLC0415
    from mlx_speech.registry import get_codec  # noqa: PLC0415

    try:
        info = get_codec(model)
    except SpecError as exc:
        raise UserError(str(exc)) from None
    if num_codebooks is not None and not 1 <= num_codebooks <= info.max_codebooks:
        raise UserError(f"{model} uses 1..{info.max_codebooks} codebooks, got {num_codebooks}")
    codec = mlx_speech.load(weights, family=model, num_codebooks=num_codebooks)
    if not codec.streamable:
        raise UserError(f"{weights}: this {model} model cannot be processed in pieces (it is not "
                        f"causal and has transformer layers, which see the whole input)")
    return codec


def bits_per_frame(model: Any, num_codebooks: int) -> float:
    """Bits one frame of ``num_codebooks`` levels carries: ``sum(log2(size))`` over the levels
    used, so per-level sizes (DAC speech presets: ``[2048, 1024 x 7]``) count as they are."""
    return float(sum(np.log2(size) for size in model.codebook_sizes[:num_codebooks]))


def bitrate_kbps(model: Any, num_codebooks: int) -> float:
    """The codes' bit rate in kbit/s with ``num_codebooks`` levels."""
    return bits_per_frame(model, num_codebooks) * model.frame_rate / 1000


def read_audio(path: str | Path, sample_rate: int,
               notice: Callable[[str], None] = lambda _: None) -> np.ndarray:
    """Mono float32 ``(T,)`` at ``sample_rate`` (resampled / mixed down with a notice)."""
    from mlx_speech.audio.io import load, resample  # noqa: PLC0415

    wav, sr = load(path, sr=None, mono=False)
    if wav.shape[0] > 1:
        notice(f"note: mixing {wav.shape[0]} channels of {path} down to mono")
    wav = wav.mean(axis=0).astype(np.float32)
    if sr != sample_rate:
        notice(f"note: resampling {path} from {sr} Hz to {sample_rate} Hz")
        wav = resample(wav, sr, sample_rate)
    return wav


def _bar(total: float, progress: bool, desc: str) -> Any:
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=round(total, 2), unit="s", desc=desc, disable=not progress, leave=False,
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")


def encode_blocks(model: Any, blocks: Iterable[np.ndarray], *, total_samples: int,
                  num_codebooks: int | None = None, progress: bool = False) -> tuple[np.ndarray, int]:
    """Codes ``(1, K, F)`` int32 of mono audio arriving as ``(t,)`` blocks at the model's rate,
    and the number of samples encoded. The blocks are re-cut into pieces of exactly
    ``CHUNK_FRAMES`` frames for ``encode_step`` (the result equals one batch call): one piece
    shape for the whole file keeps MLX's buffer cache from filling with buffers of many sizes,
    so memory stays flat with the file's length. ``total_samples`` sizes the progress bar only."""
    import mlx.core as mx  # noqa: PLC0415

    step = CHUNK_FRAMES * model.frame_size
    parts, seen = [], 0
    pending: list[np.ndarray] = []
    held = 0

    def feed(piece: np.ndarray, final: bool) -> None:
        nonlocal seen
        codes = model.encode_step(mx.array(piece[None]), num_codebooks=num_codebooks, final=final)
        parts.append(np.array(codes))
        seen += piece.size
        bar.update(piece.size / model.sample_rate)

    model.reset_state()
    with _bar(total_samples / model.sample_rate, progress, "encode") as bar:
        for block in blocks:
            pending.append(block)
            held += block.size
            while held > step:  # keep > 0 samples back: the last piece must be marked final
                buf = np.concatenate(pending)
                feed(buf[:step], final=False)
                pending, held = [buf[step:]], buf.size - step
        if held:
            feed(np.concatenate(pending), final=True)
    model.reset_state()
    if seen == 0:
        raise UserError("cannot encode empty audio")
    return np.concatenate(parts, axis=2), seen


def encode_wav(model: Any, wav: np.ndarray, *, num_codebooks: int | None = None,
               progress: bool = False) -> np.ndarray:
    """Codes ``(1, K, F)`` int32 of mono ``wav (T,)`` at the model's rate (chunked)."""
    return encode_blocks(model, [wav] if wav.size else [], total_samples=wav.size,
                         num_codebooks=num_codebooks, progress=progress)[0]


def check_output(dst: str | Path, suffixes: tuple[str, ...], what: str) -> Path:
    """Refuse an output path before any model work: a folder, a missing or read-only parent
    folder, or a suffix that does not match what will be written."""
    import os  # noqa: PLC0415

    p = Path(dst)
    if p.is_dir():
        raise UserError(f"output {p} is a folder; give a file name")
    if p.suffix.lower() not in suffixes:
        raise UserError(f"output {p}: {what} are written as {' / '.join(suffixes)}, "
                        f"not {p.suffix or 'a file without extension'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output {p}: cannot write in {parent} (permission denied)")
    return p


CODES_SUFFIXES = (".safetensors",)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def decode_codes(model: Any, codes: np.ndarray, *, num_samples: int | None = None,
                 progress: bool = False) -> np.ndarray:
    """Mono waveform ``(T,)`` of codes ``(1, K, F)`` (chunked, the last piece ``final``),
    trimmed to ``num_samples``."""
    import mlx.core as mx  # noqa: PLC0415

    if codes.ndim != 3 or codes.shape[0] != 1:
        raise CodesError(f"expected codes of one stream (1, K, F), got shape {codes.shape}")
    parts = []
    frames = codes.shape[2]
    model.reset_state()
    with _bar(frames / model.frame_rate, progress, "decode") as bar:
        for start in range(0, frames, CHUNK_FRAMES):
            chunk = mx.array(codes[:, :, start:start + CHUNK_FRAMES].astype(np.int32))
            last = start + CHUNK_FRAMES >= frames  # flushes a non-causal codec's look-ahead
            parts.append(np.array(model.decode_step(chunk, final=last))[0])
            bar.update(chunk.shape[2] / model.frame_rate)
    model.reset_state()
    wav = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return wav[:num_samples] if num_samples is not None else wav


def encode_file(src: str | Path, dst: str | Path, *, model_name: str, weights: str | Path,
                num_codebooks: int | None = None, progress: bool = False,
                notice: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Encode an audio file to a codes file; returns a summary. The audio is read from disk
    block by block (:func:`mlx_speech.audio.stream.mono_blocks`), so memory does not grow with
    the file's length."""
    import soundfile as sf  # noqa: PLC0415

    from mlx_speech.audio.stream import mono_blocks  # noqa: PLC0415

    check_output(dst, CODES_SUFFIXES, "codes files")
    model = load_codec(model_name, weights, num_codebooks=num_codebooks)
    blocks = mono_blocks(src, model.sample_rate, notice=notice)
    first = next(blocks, None)  # opens and checks the file (clear errors) before the bar starts
    if first is None:
        raise UserError(f"cannot encode {src}: no audio could be read from it")
    info = sf.info(str(src))
    total = round(info.frames * model.sample_rate / info.samplerate)
    codes, n = encode_blocks(model, _chain(first, blocks), total_samples=total,
                             num_codebooks=num_codebooks, progress=progress)
    save_codes(dst, codes, model=model_name, sample_rate=model.sample_rate,
               frame_rate=model.frame_rate, codebook_size=model.codebook_size,
               num_samples=n, source=Path(src).name)
    return {"codes": str(dst), "model": model_name, "num_codebooks": int(codes.shape[1]),
            "frames": int(codes.shape[2]), "frame_rate": model.frame_rate,
            "seconds": round(n / model.sample_rate, 3),
            "kbps": round(bitrate_kbps(model, int(codes.shape[1])), 3)}


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest


def decode_file(src: str | Path, dst: str | Path, *, model_name: str, weights: str | Path,
                progress: bool = False) -> dict[str, Any]:
    """Decode a codes file to audio (at the codec's rate); returns a summary."""
    from mlx_speech.audio.io import save  # noqa: PLC0415

    check_output(dst, AUDIO_SUFFIXES, "audio files")
    codes: CodesFile = load_codes(src)
    model = load_codec(model_name, weights)
    check_compatible(codes, model=model_name, sample_rate=model.sample_rate,
                     frame_rate=model.frame_rate, codebook_size=model.codebook_size,
                     total_codebooks=model.total_codebooks, where=str(src),
                     codebook_sizes=model.codebook_sizes)
    wav = decode_codes(model, codes.codes, num_samples=codes.num_samples, progress=progress)
    save(dst, wav, model.sample_rate)
    return {"audio": str(dst), "model": model_name, "num_codebooks": codes.num_codebooks,
            "seconds": round(wav.size / model.sample_rate, 3), "sample_rate": model.sample_rate}


def roundtrip_metrics(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """SNR (dB), mel distance, and PESQ / STOI where their packages are installed."""
    from mlx_speech.audio import metrics  # noqa: PLC0415

    out: dict[str, Any] = {"snr_db": round(float(metrics.snr(ref, est)), 3)}
    scores = (("mel_distance", lambda r, e, sr: metrics.mel_distance(r, e, sample_rate=sr), 4),
              ("pesq", metrics.pesq_score, 3), ("stoi", metrics.stoi_score, 3))
    for name, fn, digits in scores:  # a score the clip is too short for is reported, not fatal
        try:
            out[name] = round(float(fn(ref, est, sample_rate)), digits)
        except UserError as exc:
            out[name] = f"unavailable ({str(exc).splitlines()[0]})"
    return out


def roundtrip_file(src: str | Path, dst: str | Path | None, *, model_name: str,
                   weights: str | Path, num_codebooks: int | None = None,
                   progress: bool = False,
                   notice: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Encode + decode an audio file, optionally save the result, and score it."""
    from mlx_speech.audio.io import save  # noqa: PLC0415

    if dst is not None:
        check_output(dst, AUDIO_SUFFIXES, "audio files")
    model = load_codec(model_name, weights, num_codebooks=num_codebooks)
    wav = read_audio(src, model.sample_rate, notice)
    codes = encode_wav(model, wav, progress=progress)
    out = decode_codes(model, codes, num_samples=wav.size, progress=progress)
    summary: dict[str, Any] = {"model": model_name, "num_codebooks": int(codes.shape[1]),
                               "seconds": round(wav.size / model.sample_rate, 3)}
    summary.update(roundtrip_metrics(wav, out, model.sample_rate))  # before writing: no file
    if dst is not None:                                              # is left by a failure
        save(dst, out, model.sample_rate)
        summary["audio"] = str(dst)
    return summary
