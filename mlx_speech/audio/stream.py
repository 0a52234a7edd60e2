"""Read a long audio file block by block, mono, at a target rate: memory stays flat however
long the file is (``mlx-speech codec encode`` of an hour of audio holds one block, not the hour).

The same checks as :func:`mlx_speech.audio.io.load` apply (missing, directory, unreadable,
truncated, empty, NaN / Inf samples: one :class:`~mlx_speech.errors.AudioError` line each), but
NaN samples are found in the block that holds them, so an error can come after earlier blocks
were yielded; callers write their output only after the last block.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import soundfile as sf
import soxr

from mlx_speech.audio.io import _check_readable, _one_line, _open_info
from mlx_speech.errors import AudioError


def mono_blocks(path: str | os.PathLike, sample_rate: int, *, block_frames: int = 1 << 18,
                notice: Callable[[str], None] = lambda _: None) -> Iterator[np.ndarray]:
    """Yield float32 ``(t,)`` blocks of ``path`` mixed to mono and resampled to ``sample_rate``
    (soxr HQ, streaming: the concatenation equals resampling the whole signal in one call, up
    to soxr's float rounding); notices say when mixing down or resampling."""
    p = _check_readable(path)
    meta = _open_info(p)
    if meta.frames == 0:
        raise AudioError(f"audio file {p} is empty (0 frames)")
    if meta.channels > 1:
        notice(f"note: mixing {meta.channels} channels of {p} down to mono")
    stream = None
    if meta.samplerate != sample_rate:
        notice(f"note: resampling {p} from {meta.samplerate} Hz to {sample_rate} Hz")
        stream = soxr.ResampleStream(meta.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
    try:
        with sf.SoundFile(str(p)) as fh:
            while True:
                data = fh.read(block_frames, dtype="float32", always_2d=True)
                last = data.shape[0] < block_frames
                if not np.isfinite(data).all():
                    raise AudioError(f"audio file {p} contains NaN or Inf samples")
                x = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
                if stream is not None:
                    x = stream.resample_chunk(x, last=last)
                if x.size:
                    yield x
                if last:
                    return
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(f"cannot read audio file {p}: {_one_line(e, p)}") from None
