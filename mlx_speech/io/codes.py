"""Codec codes files: what ``mlx-speech codec encode`` writes and ``codec decode`` reads.

A codes file is a safetensors file with one int32 tensor ``codes`` of shape ``(B, K, F)`` and
string metadata::

    format          "mlx-speech-codes"
    version         "1"
    model           the registered codec name ("mimi")
    sample_rate     audio rate the codec runs at (Hz)
    frame_rate      codec frames per second
    num_codebooks   K
    codebook_size   codes per codebook (every code is in 0 .. codebook_size - 1); for a codec
                    with per-level sizes (DAC speech: [2048, 1024 x 7]) the largest, and
                    :func:`check_compatible` checks each level against the codec's own size
    num_samples     length of the encoded audio (decoders trim to it)
    source          optional: the encoded file's name

Reading checks all of it and :func:`check_compatible` checks a file against the codec about to
decode it; every problem is a :class:`~mlx_speech.errors.CodesError` with one line naming it.
This module imports numpy and safetensors only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlx_speech.errors import CodesError
from mlx_speech.utils.atomic import atomic_path

FORMAT = "mlx-speech-codes"
VERSION = "1"
_INT_FIELDS = ("sample_rate", "num_codebooks", "codebook_size", "num_samples")


@dataclasses.dataclass(frozen=True)
class CodesFile:
    codes: np.ndarray  # (B, K, F) int32
    model: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    num_samples: int
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[2])


def save_codes(path: str | Path, codes: np.ndarray, *, model: str, sample_rate: int,
               frame_rate: float, codebook_size: int, num_samples: int,
               source: str = "", extra: dict[str, np.ndarray] | None = None,
               extra_metadata: dict[str, str] | None = None) -> Path:
    """Write ``codes (B, K, F)`` with their metadata, atomically; returns the path.

    ``extra``: other integer tensors stored beside ``codes`` (a speech LM's text tokens), with
    ``extra_metadata`` describing them; :func:`load_codes` ignores both, so the file still
    decodes as plain codes."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    arr = np.asarray(codes)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise CodesError(f"save_codes: expected integer codes (B, K, F), got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= codebook_size):
        raise CodesError(f"save_codes: codes outside 0..{codebook_size - 1}")
    meta = {"format": FORMAT, "version": VERSION, "model": str(model),
            "sample_rate": str(int(sample_rate)), "frame_rate": repr(float(frame_rate)),
            "num_codebooks": str(arr.shape[1]), "codebook_size": str(int(codebook_size)),
            "num_samples": str(int(num_samples)), "source": str(source)}
    extra = dict(extra or {})
    if "codes" in extra or set(extra_metadata or {}) & set(meta):
        raise CodesError("save_codes: extra tensors / metadata may not replace the codes' own")
    for name, value in extra.items():
        extra[name] = np.asarray(value)
        if not np.issubdtype(extra[name].dtype, np.integer):
            raise CodesError(f"save_codes: extra tensor {name!r} must be integers, got "
                             f"{extra[name].dtype}")
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    p = Path(path)
    if p.is_dir():
        raise CodesError(f"save_codes: destination is a directory: {p}")
    with atomic_path(p, suffix=".safetensors") as tmp:
        tensors = {name: np.ascontiguousarray(v, dtype=np.int32) for name, v in extra.items()}
        save_file({"codes": np.ascontiguousarray(arr, dtype=np.int32), **tensors}, str(tmp),
                  metadata=meta)
    return p


def load_codes(path: str | Path) -> CodesFile:
    """Read and validate a codes file (shape, dtype, metadata, code range)."""
    from safetensors import safe_open  # noqa: PLC0415

    p = Path(path)
    if not p.is_file():
        raise CodesError(f"codes file not found: {p}")
    try:
        with safe_open(str(p), framework="np") as fh:
            meta = dict(fh.metadata() or {})
            keys = list(fh.keys())
            codes = fh.get_tensor("codes") if "codes" in keys else None
    except Exception as exc:  # noqa: BLE001 - safetensors raises several internal types
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CodesError(f"{p}: not a readable codes file ({why})") from None
    if meta.get("format") != FORMAT:
        raise CodesError(f"{p}: not an mlx-speech codes file (format tag "
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise CodesError(f"{p}: unsupported codes file version {meta.get('version')!r}")
    if codes is None:
        raise CodesError(f"{p}: no 'codes' tensor (has {', '.join(keys) or 'none'})")
    try:
        ints = {k: int(meta[k]) for k in _INT_FIELDS}
        frame_rate = float(meta["frame_rate"])
        model = meta["model"]
    except (KeyError, ValueError) as exc:
        raise CodesError(f"{p}: missing or invalid metadata field {exc}") from None
    if codes.ndim != 3 or not np.issubdtype(codes.dtype, np.integer):
        raise CodesError(f"{p}: codes must be integers (B, K, F), got {codes.dtype} {codes.shape}")
    for key in ("sample_rate", "num_codebooks", "codebook_size"):
        if ints[key] < 1:
            raise CodesError(f"{p}: metadata {key} must be positive, got {ints[key]}")
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise CodesError(f"{p}: metadata frame_rate must be a positive number, got {meta['frame_rate']}")
    if ints["num_samples"] < 0:  # decoders trim to it: a negative count would cut from the end
        raise CodesError(f"{p}: metadata num_samples must be >= 0, got {ints['num_samples']}")
    if codes.shape[1] != ints["num_codebooks"]:
        raise CodesError(f"{p}: holds {codes.shape[1]} codebooks but its metadata says "
                         f"{ints['num_codebooks']}")
    if codes.size and (codes.min() < 0 or codes.max() >= ints["codebook_size"]):
        bad = int(codes.min()) if codes.min() < 0 else int(codes.max())
        raise CodesError(f"{p}: code {bad} out of range 0..{ints['codebook_size'] - 1}")
    return CodesFile(codes=codes.astype(np.int32), model=model, frame_rate=frame_rate,
                     source=meta.get("source", ""), **ints)


def check_compatible(codes: CodesFile, *, model: str, sample_rate: int, frame_rate: float,
                     codebook_size: int, total_codebooks: int, where: str = "codes",
                     codebook_sizes: Sequence[int] | None = None) -> None:
    """CodesError unless ``codes`` were made by this codec (name, rates, codebooks).

    ``codebook_sizes`` (a codec whose levels differ in size; ``codebook_size`` is then their
    largest): every level's codes must also be below its own level's size."""
    if codes.model != model:
        raise CodesError(f"{where}: made by model {codes.model!r}, cannot decode with {model!r}")
    if codes.sample_rate != sample_rate or abs(codes.frame_rate - frame_rate) > 1e-9:
        raise CodesError(f"{where}: {codes.sample_rate} Hz / {codes.frame_rate:g} frames/s, "
                         f"this {model} runs at {sample_rate} Hz / {frame_rate:g} frames/s")
    if codes.codebook_size != codebook_size:
        raise CodesError(f"{where}: codebooks of {codes.codebook_size} codes, this {model} has "
                         f"{codebook_size}")
    if not 1 <= codes.num_codebooks <= total_codebooks:
        raise CodesError(f"{where}: {codes.num_codebooks} codebooks, this {model} decodes "
                         f"1..{total_codebooks}")
    if codebook_sizes is not None and codes.codes.size:
        highest = codes.codes.max(axis=(0, 2))
        for level, (top, size) in enumerate(zip(highest, codebook_sizes)):
            if top >= size:
                raise CodesError(f"{where}: code {int(top)} in codebook {level} is out of range "
                                 f"0..{size - 1} for this {model}")
