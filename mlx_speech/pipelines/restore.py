"""Speech restoration of arrays and files with a Miipher-2 model (``mlx-speech restore``).

A file is read block by block at the backbone's rate (16 kHz; any input rate is resampled as
it streams, several channels are mixed down), restored window by window
(``Miipher2Model.restore_step``) and written as it goes to a temporary file beside the
destination, renamed over it only when everything succeeded. So memory stays flat whatever
the file's length, and a failure leaves no partial output. The windows are those of
``Miipher2Model.restore``, so a file gives the same samples as the whole array in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import AudioError, CheckpointError, UserError
from mlx_speech.models.miipher2.io import MIN_SAMPLES
from mlx_speech.pipelines.codec import AUDIO_SUFFIXES, _bar, check_output

BLOCK_SECONDS = 4.0


def load_restorer(weights: str | Path) -> Any:
    """The MLX Miipher-2 model of a file or folder ``mlx_speech.load`` reads as miipher2."""
    import mlx_speech  # noqa: PLC0415

    p = Path(weights).expanduser()
    if not p.exists():
        raise CheckpointError(f"restorer weights not found: {p}")
    model = mlx_speech.load(p, family="miipher2")
    model.eval()
    return model


def restore_array(model: Any, wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """Mono ``wav (S,)`` at ``sample_rate`` -> ``(restored float32 (S',), model.sample_rate)``."""
    return model.restore(wav, sample_rate), model.sample_rate


def restore_file(src: str | Path, dst: str | Path, *, weights: str | Path | None = None,
                 model: Any = None, progress: bool = False, block_seconds: float = BLOCK_SECONDS,
                 notice: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Restore the audio file ``src`` into ``dst`` (wav / flac / ogg, at the model's rate);
    returns a summary. Give ``weights`` (a path) or an already loaded ``model``."""
    import soundfile as sf  # noqa: PLC0415

    from mlx_speech.audio.stream import mono_blocks  # noqa: PLC0415
    from mlx_speech.utils.atomic import atomic_path  # noqa: PLC0415

    out = check_output(dst, AUDIO_SUFFIXES, "audio files")
    if model is None:
        if weights is None:
            raise UserError("restore: give the restorer's weights (--weights)")
        model = load_restorer(weights)
    rate_in = model.input_rate
    blocks = mono_blocks(src, rate_in, block_frames=int(block_seconds * rate_in), notice=notice)
    first = next(blocks, None)  # opens and checks the file before anything is written
    if first is None:
        raise AudioError(f"cannot restore {src}: no audio could be read from it")
    info = sf.info(str(src))
    seconds = info.frames / info.samplerate
    if seconds * rate_in < MIN_SAMPLES:
        raise AudioError(f"cannot restore {src}: {seconds * 1000:.0f} ms of audio is too short "
                         f"(need at least {MIN_SAMPLES * 1000 // rate_in} ms)")
    written = 0
    peak = 0.0
    model.reset_state()
    with atomic_path(out) as tmp, _bar(seconds, progress, "restore") as bar:
        fmt = out.suffix.lower().lstrip(".")
        subtype = "PCM_16" if fmt in ("wav", "flac") else None
        with sf.SoundFile(str(tmp), "w", samplerate=model.sample_rate, channels=1,
                          format={"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[fmt],
                          subtype=subtype) as fh:
            block = first
            while block is not None:
                nxt = next(blocks, None)
                y = model.restore_step(block, final=nxt is None)
                if y.size:
                    peak = max(peak, float(np.abs(y).max()))
                    fh.write(np.clip(y, -1.0, 1.0))
                    written += y.size
                bar.update(block.size / rate_in)
                block = nxt
    model.reset_state()
    return {"audio": os.fspath(out), "seconds": round(written / model.sample_rate, 3),
            "sample_rate": model.sample_rate, "peak": round(peak, 4)}
