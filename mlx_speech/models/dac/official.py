"""Descript's original DAC weights (``descript-audio-codec``'s ``weights*.pth``) -> our DAC.

The released files are what audiotools' ``BaseModel.save(path, package=False)`` writes: a torch
pickle ``{"state_dict": DAC.state_dict(), "metadata": {"kwargs": {...}, ...}}`` whose
``kwargs`` are ``DAC.__init__``'s arguments (signature defaults overwritten by the model's
attributes of the same name): ``encoder_dim``, ``encoder_rates``, ``latent_dim``,
``decoder_dim``, ``decoder_rates``, ``n_codebooks``, ``codebook_size``, ``codebook_dim``,
``quantizer_dropout`` (stays at its default ``False``, the model keeps no such attribute) and
``sample_rate``. Training checkpoints may carry more metadata (e.g. ``logs``); like
audiotools' ``load``, only the constructor's own arguments are read. The pickle is loaded with
``weights_only=True``: a file holding anything but tensors and plain containers is refused.
(``BaseModel.save``'s default, ``package=True``, writes a ``torch.package`` archive with code
in it; that form is not read.)

Key names are ours already; :mod:`mlx_speech.models.dac.keys` maps them (weight-norm spellings,
Snake ``alpha`` shape) and checks every key and shape. A bare state dict with Descript's names
and no metadata loads when the caller gives the architecture (``spec=``).

Semantics: our non-causal DAC computes Descript's samples exactly. On odd decoder strides
Descript's transposed conv has no ``output_padding`` and returns one sample fewer (the 16 / 24
kHz models decode ``F * hop - 8`` samples; descript-audio-codec issue #37); ours returns the
same samples followed by that many zeros, so every decode is ``F * hop`` long
(``tests/test_dac_upstream.py`` pins it). Codes are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.dac.keys import convert_state
from mlx_speech.models.dac.spec import DACSpec, spec_from_dac_kwargs
from mlx_speech.weights.checkpoint import load_pickle

# DAC.__init__'s arguments: the only metadata["kwargs"] entries read (audiotools drops others)
DESCRIPT_KWARGS = ("encoder_dim", "encoder_rates", "latent_dim", "decoder_dim", "decoder_rates",
                   "n_codebooks", "codebook_size", "codebook_dim", "quantizer_dropout",
                   "sample_rate")
# keys every Descript DAC state dict has, whatever its weight-norm spelling
_MARKERS = ("encoder.block.0.", "decoder.model.0.", "quantizer.quantizers.0.codebook.weight")


def is_dac_state(state: Any) -> bool:
    """True for a dict whose keys are a Descript DAC's (encoder, decoder and first codebook)."""
    if not isinstance(state, dict) or not state:
        return False
    keys = [k for k in state if isinstance(k, str)]
    return all(any(k.startswith(m) for k in keys) for m in _MARKERS)


def split_official(obj: Any, where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(state dict, metadata kwargs or None)`` of a loaded Descript pickle (the release layout
    or a bare state dict); CheckpointError for anything else."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, meta = obj["state_dict"], obj.get("metadata")
        kwargs = meta.get("kwargs") if isinstance(meta, dict) else None
        if kwargs is not None and not isinstance(kwargs, dict):
            raise CheckpointError(f"{where}: metadata['kwargs'] is a {type(kwargs).__name__}, "
                                  "not Descript's dict of DAC arguments")
    else:
        state, kwargs = obj, None
    if not is_dac_state(state):
        first = ", ".join(sorted(k for k in state if isinstance(k, str))[:3]) \
            if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{where}: not a Descript DAC checkpoint (no encoder.block.0 / "
                              f"decoder.model.0 / quantizer.quantizers.0 keys; found {first or 'nothing'})")
    return state, kwargs


def spec_from_metadata(kwargs: dict[str, Any], where: str) -> DACSpec:
    """Our spec of Descript's ``metadata["kwargs"]``. A per-level ``codebook_dim`` list is
    accepted when every level has the same width (our quantizer has one)."""
    data = {k: kwargs[k] for k in DESCRIPT_KWARGS if k in kwargs and kwargs[k] is not None}
    dim = data.get("codebook_dim")
    if isinstance(dim, (list, tuple)):
        if len(set(dim)) != 1:
            raise CheckpointError(f"{where}: per-level codebook_dim {list(dim)} is not supported "
                                  "(every level must have the same width)")
        data["codebook_dim"] = int(dim[0])
    for name in ("encoder_rates", "decoder_rates"):
        if name in data:
            data[name] = [int(r) for r in data[name]]
    try:
        return spec_from_dac_kwargs(data)
    except (SpecError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: metadata['kwargs'] is not a valid DAC "
                              f"({str(exc).splitlines()[0]})") from None


def read_official(path: str | Path, *, spec: DACSpec | None = None
                  ) -> tuple[DACSpec, dict[str, np.ndarray]]:
    """``(spec, our torch-layout state)`` of a Descript ``.pth`` at ``path``.

    ``spec`` overrides the architecture (required for a bare state dict without metadata);
    ``weight_norm`` always follows the file (plain weights build a model without weight norm).
    """
    where = f"{path} (Descript DAC)"
    state, kwargs = split_official(load_pickle(path), where)
    if spec is None:
        if kwargs is None:
            raise CheckpointError(f"{where}: no metadata['kwargs'] (the architecture Descript "
                                  "saves beside the weights); pass spec= to load a bare state dict")
        spec = spec_from_metadata(kwargs, where)
    our_state, weight_norm = convert_state(state, spec, "descript", where=where)
    if weight_norm != spec.weight_norm:
        spec = spec.replace(weight_norm=weight_norm)
    return spec, our_state


def recognise_official(path: str | Path) -> bool:
    """True for a torch pickle holding a Descript DAC (release layout or bare state dict).
    Reads the file (safely); never raises."""
    try:
        split_official(load_pickle(path), str(path))
    except CheckpointError:
        return False
    return True
