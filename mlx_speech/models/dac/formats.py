"""What a DAC path is, and its upstream state (framework-free; shared by :mod:`.load` and
``torch_ref.models.dac.load``).

Formats, decided in this order (by tags, config files and key names, never by tensor shapes):

1. ours: a safetensors file tagged ``model=dac`` (``save_dac``), or a folder whose
   ``model.safetensors`` is one;
2. transformers: a folder whose ``config.json`` says ``model_type: dac`` (with
   ``model.safetensors`` or ``pytorch_model.bin``), or one of those files with that
   ``config.json`` beside it (:mod:`.hf`);
3. Descript: any other torch pickle (``.pth``, ``.pt``, ``.bin``, ``.ckpt``), e.g. the released
   ``weights_44khz_8kbps_0.0.1.pth`` (:mod:`.official`). :func:`detect_format` decides this by
   suffix alone; :func:`recognise` (what :func:`mlx_speech.load` asks) also reads the pickle,
   safely, and says yes only to Descript's keys.

Nothing is downloaded. ``num_codebooks`` sets how many levels ``encode`` uses by default; the
weights always keep all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.dac.hf import CONFIG_FILE, is_dac_config, read_hf
from mlx_speech.models.dac.official import read_official, recognise_official
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.weights.checkpoint import _PICKLE_SUFFIXES, read_metadata

MODEL_NAME = "dac"
FORMATS = ("mlx-speech", "transformers", "descript")
_TAGGED_DIR_FILE = "model.safetensors"
_HF_PICKLE = "pytorch_model.bin"


def _tag_model(file: Path) -> str | None:
    """The ``model`` of our tag on a safetensors file, None for an untagged one."""
    meta = read_metadata(file)
    return meta["model"] if "model" in meta and "format" in meta and "spec" in meta else None


def _ours(file: Path) -> str:
    model = _tag_model(file)
    if model is not None and model != MODEL_NAME:
        raise CheckpointError(f"{file}: an mlx-speech {model!r} checkpoint, not DAC")
    return "mlx-speech" if model else ""


def detect_format(path: str | Path) -> str:
    """``"mlx-speech"``, ``"transformers"`` or ``"descript"`` (see the module docstring);
    CheckpointError for a path that is none of them."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"DAC weights not found: {p}")
    if p.is_dir():
        tagged = p / _TAGGED_DIR_FILE
        if tagged.is_file() and _ours(tagged):
            return "mlx-speech"
        if is_dac_config(p / CONFIG_FILE):
            return "transformers"
        raise CheckpointError(f"{p}: not a DAC folder (no model.safetensors tagged model=dac, "
                              "no config.json with model_type dac)")
    beside_hf = is_dac_config(p.parent / CONFIG_FILE)
    if p.suffix == ".safetensors":
        if _ours(p):
            return "mlx-speech"
        if beside_hf:
            return "transformers"
        raise CheckpointError(f"{p}: not a DAC checkpoint (no model=dac tag, and no config.json "
                              "with model_type dac beside it)")
    if p.suffix in _PICKLE_SUFFIXES:
        return "transformers" if p.name == _HF_PICKLE and beside_hf else "descript"
    raise CheckpointError(f"{p}: not a DAC checkpoint (expected a .safetensors file, a torch "
                          "pickle or a transformers folder)")


def tagged_path(path: str | Path) -> Path:
    """Our tagged file itself, for a file or a folder holding ``model.safetensors``."""
    p = Path(path)
    return p / _TAGGED_DIR_FILE if p.is_dir() else p


def with_codebooks(spec: DACSpec, num_codebooks: int | None, where: str) -> DACSpec:
    """``spec`` with ``num_codebooks`` default levels (None: unchanged)."""
    if num_codebooks is None or num_codebooks == spec.num_codebooks:
        return spec
    try:
        return spec.replace(num_codebooks=num_codebooks)
    except SpecError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def read_upstream_state(path: str | Path, *, num_codebooks: int | None = None,
                        spec: DACSpec | None = None) -> tuple[dict[str, np.ndarray], DACSpec]:
    """``(our torch-layout state, spec)`` of Descript or transformers weights at ``path``.

    ``spec`` overrides the architecture the file records (``weight_norm`` always follows the
    file); ``num_codebooks`` the default number of levels.
    """
    fmt = detect_format(path)
    if fmt == "mlx-speech":
        raise CheckpointError(f"{path}: already an mlx-speech DAC checkpoint; load it with load_dac")
    read = read_official if fmt == "descript" else read_hf
    spec, state = read(path, spec=spec)
    return state, with_codebooks(spec, num_codebooks, str(path))


def recognise(path: str | Path) -> bool:
    """True for DAC weights in any supported format (what :func:`mlx_speech.load` asks of each
    family); a pickle is read (safely) to check it holds Descript's keys. Never raises."""
    try:
        fmt = detect_format(path)
    except CheckpointError:
        return False
    return recognise_official(path) if fmt == "descript" else True
