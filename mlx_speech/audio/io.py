"""Audio file I/O (numpy + soundfile + soxr only; no mlx, no torch).

Every problem a user can cause (missing path, a directory, corrupt / truncated / non-audio
file, empty or non-finite audio, absurd sample rates, bad arrays to save) raises
:class:`~mlx_speech.errors.AudioError` with one line that names the file. ``save`` writes to a
temporary file in the destination directory and renames it over the target, so a failed save
never leaves a partial file and never damages what was there.

Layouts: mono audio is ``(T,)``; multi-channel audio is ``(C, T)`` (soundfile uses ``(T, C)``;
we transpose at this boundary only).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mlx_speech.errors import AudioError
from mlx_speech.utils.atomic import atomic_path

__all__ = ["load", "save", "info", "convert", "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE"]

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
_MAX_CHANNELS = 64  # more than this in a (C, T) array to save is almost surely a (T, C) mix-up
_BLOCK = 1 << 20  # frames per block when scanning a file in info()
# libsndfile logs "data : <declared> (should be <present>)" for a WAV data chunk that runs past
# the end of the file. Streaming writers leave 0 or ~4 GiB placeholders: those are not damage.
_DATA_SIZE_LOG = re.compile(r"\bdata\s*:\s*(\d+)\s*\(should be\s*(\d+)\)")
_PLACEHOLDER_MIN = 0x7FFF0000


def _one_line(err: BaseException, path: str | os.PathLike) -> str:
    """libsndfile's reason without its "Error opening '<path>': " prefix, on one line."""
    msg = " ".join(str(err).split())
    msg = re.sub(r"^Error opening .*?: ", "", msg.replace(str(path), "<file>"))
    return msg.replace("<file>", str(path)) or type(err).__name__


def _check_rate(sr, what: str) -> int:
    if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, (int, np.integer, float, np.floating)):
        raise AudioError(f"{what}: sample rate must be a number, got {sr!r}")
    if not np.isfinite(sr) or sr != int(sr) or not MIN_SAMPLE_RATE <= int(sr) <= MAX_SAMPLE_RATE:
        raise AudioError(f"{what}: unsupported sample rate {sr!r} (expected an integer in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)")
    return int(sr)


def _check_readable(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"audio file not found: {p}")
    if p.is_dir():
        raise AudioError(f"expected an audio file but got a directory: {p}")
    try:  # libsndfile reports an unreadable file as "No such file or directory"
        with open(p, "rb") as fh:
            head = fh.read(3) if p.is_file() else b""
    except PermissionError:
        raise AudioError(f"cannot read audio file {p}: permission denied") from None
    except OSError as e:
        raise AudioError(f"cannot read audio file {p}: {e.strerror or type(e).__name__}") from None
    if p.is_file() and p.stat().st_size == 0:  # libsndfile would say "Format not recognised"
        raise AudioError(f"cannot read audio file {p}: the file is empty (0 bytes)")
    if p.suffix.lower() == ".mp3" and p.is_file() and not _looks_like_mp3(head):
        # refused here: libsndfile's MP3 decoder prints its own notes to stderr on garbage
        raise AudioError(f"cannot read audio file {p}: not a readable audio file (the name says "
                         f"MP3, but the contents do not decode as MP3)")
    return p


def _looks_like_mp3(head: bytes) -> bool:
    """An ID3 tag or an MPEG audio frame sync (11 set bits) in a file's first bytes."""
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _claimed_format(p: Path) -> str:
    ext = p.suffix.lower().lstrip(".")
    return {"oga": "OGG", "opus": "OGG", "aif": "AIFF", "wave": "WAV"}.get(ext, ext.upper())


def _read_failure(e: BaseException, p: Path) -> AudioError:
    """The one-line error for a file libsndfile refused to open or decode."""
    reason = _one_line(e, p)
    # The file exists and is readable (checked first), so libsndfile's "File does not exist or
    # is not a regular file (possibly a pipe?)" (what the MP3 decoder says of garbage) is wrong.
    if "possibly a pipe" in reason or "does not exist" in reason:
        fmt = _claimed_format(p)
        reason = (f"not a readable audio file (the name says {fmt}, but the contents do not decode as {fmt})"
                  if fmt else "not a readable audio file")
    return AudioError(f"cannot read audio file {p}: {reason}")


def _open_info(p: Path):
    try:
        meta = sf.info(str(p))
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise _read_failure(e, p) from None
    m = _DATA_SIZE_LOG.search(meta.extra_info or "")
    if m and _PLACEHOLDER_MIN > int(m.group(1)) > int(m.group(2)):
        raise AudioError(
            f"truncated audio file {p}: header declares {m.group(1)} data bytes but only {m.group(2)} are present"
        )
    _check_rate(meta.samplerate, f"audio file {p}")
    return meta


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(T,)`` or ``(C, T)`` float32 with soxr HQ; the time axis is last."""
    if sr_in == sr_out:
        return x
    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(y.T, dtype=np.float32)


def load(path: str | os.PathLike, sr: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file (wav / flac / ogg / anything libsndfile reads) as float32.

    Args:
        path: file to read.
        sr: resample to this rate (soxr HQ) if it differs from the file's; ``None`` keeps it.
        mono: average all channels into one.

    Returns:
        ``(wav, sample_rate)``: ``wav`` is ``(T,)`` if ``mono`` else ``(C, T)`` float32 (a mono
        file read with ``mono=False`` gives ``(1, T)``).
    """
    p = _check_readable(path)
    if sr is not None:
        sr = _check_rate(sr, f"load({p})")
    meta = _open_info(p)
    try:
        data, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise _read_failure(e, p) from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {p} is empty (0 frames)")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file {p} contains NaN or Inf samples")
    x = data.mean(axis=1) if mono else data.T  # (T,) or (C, T)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if sr is not None and sr != file_sr:
        x = resample(x, meta.samplerate, sr)
        file_sr = sr
    return x, int(file_sr)


def _validate_wav(wav, path: Path) -> np.ndarray:
    try:
        x = np.asarray(wav, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise AudioError(f"save({path}): audio is not a numeric array ({' '.join(str(e).split())})") from None
    if x.ndim not in (1, 2):
        raise AudioError(f"save({path}): expected audio of shape (T,) or (C, T), got shape {x.shape}")
    if x.ndim == 2 and x.shape[0] > _MAX_CHANNELS:
        raise AudioError(f"save({path}): got shape {x.shape}, i.e. {x.shape[0]} channels; audio must be (C, T), not (T, C)")
    if x.size == 0:
        raise AudioError(f"save({path}): audio is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise AudioError(f"save({path}): audio contains NaN or Inf samples; nothing was written")
    return x


def _format_for(path: Path) -> str:
    fmt = _claimed_format(path)
    if fmt not in sf.available_formats():
        raise AudioError(f"save({path}): unknown audio file extension {path.suffix!r} (use .wav, .flac or .ogg)")
    return fmt


def save(path: str | os.PathLike, wav, sr: int, *, subtype: str | None = "PCM_16") -> Path:
    """Write ``wav`` to ``path`` atomically; the format follows the file extension.

    Args:
        wav: ``(T,)`` or ``(C, T)`` array-like of finite samples in [-1, 1] (clipped to that
            range unless ``subtype`` is FLOAT / DOUBLE).
        sr: sample rate in Hz.
        subtype: libsndfile subtype ("PCM_16", "PCM_24", "FLOAT", "VORBIS" ...). ``None``, or
            the default "PCM_16" where the format cannot hold it (e.g. OGG), means the
            format's default subtype.

    Returns:
        The written path. Parent directories are created. On any error nothing is written and
        an existing file at ``path`` is untouched.
    """
    p = Path(path)
    if p.is_dir():
        raise AudioError(f"save: destination is a directory: {p}")
    sr = _check_rate(sr, f"save({p})")
    x = _validate_wav(wav, p)
    fmt = _format_for(p)
    if subtype is None or (subtype == "PCM_16" and not sf.check_format(fmt, subtype)):
        subtype = sf.default_subtype(fmt)
    subtype = subtype.upper()
    if not sf.check_format(fmt, subtype):
        raise AudioError(f"save({p}): subtype {subtype!r} is not valid for {fmt} (try {sf.default_subtype(fmt)!r})")
    if subtype not in ("FLOAT", "DOUBLE"):
        x = np.clip(x, -1.0, 1.0)

    tmp = None
    try:
        with atomic_path(p, suffix=".part") as tmp:
            sf.write(tmp, x.T if x.ndim == 2 else x, sr, subtype=subtype, format=fmt)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as e:
        raise AudioError(f"save({p}): write failed: {_write_reason(e, tmp, p)}") from None
    return p


def _write_reason(e: BaseException, tmp: Path | None, dest: Path) -> str:
    """Why a save failed, naming ``dest`` and never the hidden temporary file it wrote first."""
    if isinstance(e, OSError) and e.strerror:  # str(e) would end in the temporary file's name
        named = e.filename is not None and str(e.filename) not in (str(tmp), str(dest))
        return f"{e.strerror}: {e.filename}" if named else e.strerror
    msg = " ".join(str(e).split())
    if tmp is not None:
        msg = msg.replace(str(tmp), str(dest))
    return re.sub(r"^Error opening .*?: ", "", msg) or type(e).__name__


def info(path: str | os.PathLike) -> dict:
    """Describe an audio file without keeping its samples in memory.

    Returns:
        dict with ``sample_rate`` (int), ``channels`` (int), ``frames`` (int), ``duration_s``,
        ``format``, ``subtype``, ``peak`` (max |sample|, linear) and ``rms_dbfs`` (RMS over all
        samples and channels in dB full scale, floored at -200 for digital silence).
    """
    p = _check_readable(path)
    meta = _open_info(p)
    peak, sum_sq, count = 0.0, 0.0, 0
    try:
        for block in sf.blocks(str(p), blocksize=_BLOCK, dtype="float64", always_2d=True):
            if not np.isfinite(block).all():
                raise AudioError(f"audio file {p} contains NaN or Inf samples")
            if block.size:
                peak = max(peak, float(np.abs(block).max()))
                sum_sq += float(np.square(block).sum())
                count += block.size
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise _read_failure(e, p) from None
    rms = np.sqrt(sum_sq / count) if count else 0.0
    return {
        "sample_rate": int(meta.samplerate),
        "channels": int(meta.channels),
        "frames": int(meta.frames),
        "duration_s": float(meta.frames) / meta.samplerate,
        "format": meta.format,
        "subtype": meta.subtype,
        "peak": peak,
        "rms_dbfs": float(20.0 * np.log10(max(rms, 1e-10))),
    }


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    sr: int | None = None,
    mono: bool = False,
    subtype: str | None = None,
) -> Path:
    """Re-encode ``src`` as ``dst`` (format from ``dst``'s extension), optionally resampled / mono.

    ``subtype=None`` keeps the source subtype when it is a PCM / float one the destination
    format writes; else the destination's default (FLOAT instead where the source was float and
    the destination holds it). Returns ``dst`` as a Path (written atomically).
    """
    src_meta = _open_info(_check_readable(src))
    x, rate = load(src, sr=sr, mono=mono)
    dst = Path(dst)
    if subtype is None:
        subtype = _convert_subtype(src_meta.subtype, _format_for(dst))
    return save(dst, x, rate, subtype=subtype)


def _convert_subtype(src_subtype: str, fmt: str) -> str:
    # check_format alone is not enough: it says yes to WAV + MPEG_LAYER_III, which libsndfile
    # then cannot write ("Supported file format but unsupported encoding").
    sample_coded = src_subtype.startswith("PCM_") or src_subtype in ("FLOAT", "DOUBLE")
    if sample_coded and sf.check_format(fmt, src_subtype):
        return src_subtype
    if src_subtype in ("FLOAT", "DOUBLE") and sf.check_format(fmt, "FLOAT"):
        return "FLOAT"
    return sf.default_subtype(fmt)
