"""How a local path loads (framework-free): :func:`find` is shared by :func:`mlx_speech.load`
and :func:`torch_ref.load`, which differ only in the build.

Recognised, in this order (never by tensor shapes):

1. our tagged safetensors files (``format`` / ``model`` / ``spec`` metadata), or a folder whose
   ``model.safetensors`` is one (a mimi9 surgery folder, an HF-style export): the model named
   in the tag is built from the tag's spec, in either layout;
2. each registered family's own formats (:class:`mlx_speech.registry.Format`): moshi and
   transformers Mimi, HF WavLM / HuBERT / wav2vec 2.0 / w2v-BERT folders, official HiFi-GAN
   generators, TTS voice folders. ``family=`` narrows the search to one family.

Nothing is downloaded: a path that is not a local file or folder is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.registry import Format, families, get_family, get_model, resolve

_TAGGED_DIR_FILE = "model.safetensors"


def tagged_file(path: Path) -> tuple[Path, str] | None:
    """``(file, model name)`` when ``path`` is (or is a folder holding) a tagged checkpoint."""
    from mlx_speech.weights.checkpoint import read_metadata  # noqa: PLC0415

    file = path / _TAGGED_DIR_FILE if path.is_dir() else path
    if file.suffix != ".safetensors" or not file.is_file():
        return None
    meta = read_metadata(file)
    if "model" in meta and "format" in meta and "spec" in meta:
        return file, meta["model"]
    return None


def _detects(fmt: Format, path: Path) -> bool:
    try:
        return bool(resolve(fmt.detect)(path))
    except CheckpointError:
        return False


def find(path: str | Path, *, family: str | None = None) -> tuple[str, Any]:
    """How ``path`` loads: ``("tagged", (file, model name))`` or ``("format", Format)``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"weights not found: {p} (a local file or folder; nothing is downloaded)")
    if p.is_file() and p.stat().st_size == 0:
        raise CheckpointError(f"{p}: empty file")
    fams = [get_family(family)] if family else list(families().values())
    tagged = tagged_file(p)
    if tagged is not None:
        owner = get_model(tagged[1]).family
        if family and owner != family:
            raise CheckpointError(f"{p}: a {tagged[1]!r} checkpoint, not a {family} model")
    for fam in fams:
        for fmt in fam.formats:
            if _detects(fmt, p):
                return "format", fmt
    if tagged is not None:
        return "tagged", tagged
    known = "; ".join(f"{f.name}: {', '.join(x.name for x in f.formats) or 'tagged files'}"
                      for f in fams)
    raise CheckpointError(f"{p}: not a recognised checkpoint ({known})")


def apply_options(model: Any, options: dict[str, Any], where: Path) -> Any:
    num_codebooks = options.pop("num_codebooks", None)
    if options:
        raise CheckpointError(f"{where}: options {', '.join(sorted(options))} do not apply here")
    if num_codebooks is not None:
        if not hasattr(model, "set_num_codebooks"):
            raise CheckpointError(f"{where}: num_codebooks applies to codecs only")
        model.set_num_codebooks(num_codebooks)
    return model
