"""transformers' DAC format (``DacModel``: ``config.json`` + ``model.safetensors``, or
``pytorch_model.bin`` from older writers) -> our DAC.

``DacConfig`` -> :class:`DACSpec`: ``encoder_hidden_size`` -> ``encoder_dim``,
``downsampling_ratios`` -> ``encoder_rates``, ``upsampling_ratios`` (transformers derives it as
the reverse; a stored value wins, as transformers 4 let it) -> ``decoder_rates``,
``hidden_size`` (derived ``encoder_dim * 2**len(rates)`` when absent) -> ``latent_dim``,
``decoder_hidden_size`` -> ``decoder_dim``, ``n_codebooks`` x ``codebook_size`` ->
``codebook_sizes``, ``codebook_dim``, ``quantizer_dropout``, ``sampling_rate`` ->
``sample_rate``. The loss weights are training settings of transformers' own loop; not read.

Weights: the key names are renamed by :mod:`mlx_speech.models.dac.keys`. Weight norm is decided
per file: the released ``descript/dac_*`` folders hold plain ``weight`` tensors (the conversion
script removes the norm before ``save_pretrained``), which build our model with
``weight_norm=False``; a model saved after ``DacModel.apply_weight_norm()`` holds
``parametrizations.weight.original0/1`` and keeps its weight norm (torch's older
``weight_g`` / ``weight_v`` too).

Semantic differences of ``DacModel`` from ours (and, where said, from Descript's):

* ``encode`` does not pad: on a length that is not a whole number of hops its strided convs
  drop the partial frame (``floor``-like frame counts), where ours and Descript's ``preprocess``
  zero-pad the tail to a whole hop first. On hop-aligned input the codes are the same.
* Odd decoder strides: no ``output_padding``, as Descript (see :mod:`.official`): ``decode``
  returns ``F * hop - 8`` samples for the 16 / 24 kHz models; ours returns the same samples
  and a zero tail of 8.
* Code choice scores ``2 e.c + |c|^2`` (sign slip against Descript's ``-(|e|^2 - 2 e.c +
  |c|^2)``); with unit-normalised codebook rows the argmax is the same. A zero codebook row
  (normalised to zero) would rank differently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.dac.keys import convert_state
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.weights.checkpoint import load_pickle_state, read_safetensors

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CONFIG_FILE = "config.json"


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """A transformers ``config.json`` as a dict (CheckpointError when unreadable)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"transformers DAC: {p} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{p}: unreadable config.json ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{p}: config.json is not a JSON object")
    return data


def is_dac_config(path: str | Path) -> bool:
    """True when ``path`` is a readable ``config.json`` saying ``model_type: dac``."""
    try:
        return read_hf_config(path).get("model_type") == "dac"
    except CheckpointError:
        return False


def spec_from_hf_config(config: dict[str, Any], *, where: str = "config.json") -> DACSpec:
    """Our spec of a transformers ``DacConfig`` dict (see the module docstring)."""
    def get(key: str, default: Any) -> Any:
        return config[key] if config.get(key) is not None else default

    if config.get("model_type") != "dac":
        raise CheckpointError(f"{where}: model_type {config.get('model_type')!r} is not dac")
    try:
        enc = [int(r) for r in get("downsampling_ratios", [2, 4, 8, 8])]
        encoder_dim = int(get("encoder_hidden_size", 64))
        data = {
            "sample_rate": int(get("sampling_rate", 16000)),
            "encoder_dim": encoder_dim, "encoder_rates": enc,
            "latent_dim": int(get("hidden_size", encoder_dim * 2 ** len(enc))),
            "decoder_dim": int(get("decoder_hidden_size", 1536)),
            "decoder_rates": [int(r) for r in get("upsampling_ratios", enc[::-1])],
            "codebook_sizes": [int(get("codebook_size", 1024))] * int(get("n_codebooks", 9)),
            "codebook_dim": int(get("codebook_dim", 8)),
            "quantizer_dropout": float(get("quantizer_dropout", 0.0)),
        }
        spec = DACSpec.from_dict(data)
        spec.validate()
    except (SpecError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: not a valid DAC config "
                              f"({str(exc).splitlines()[0]})") from None
    return spec


def resolve_hf_path(path: str | Path) -> tuple[Path, Path]:
    """``(weights file, config.json)`` of a transformers DAC folder, or of its weights file
    with ``config.json`` beside it."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    config = folder / CONFIG_FILE
    if p.is_dir():
        weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{p}: a folder without {' or '.join(WEIGHT_FILES)} "
                                  "(expected a transformers DAC folder)")
    else:
        weights = p
    if not config.is_file():
        raise CheckpointError(f"{weights}: transformers DAC weights need config.json beside them")
    return weights, config


def read_hf(path: str | Path, *, spec: DACSpec | None = None
            ) -> tuple[DACSpec, dict[str, np.ndarray]]:
    """``(spec, our torch-layout state)`` of a transformers DAC folder or weights file.

    ``spec`` overrides the config's architecture; ``weight_norm`` follows the file.
    """
    weights, config = resolve_hf_path(path)
    where = f"{weights} (transformers DAC)"
    if spec is None:
        spec = spec_from_hf_config(read_hf_config(config), where=str(config))
    raw = read_safetensors(weights) if weights.suffix == ".safetensors" \
        else load_pickle_state(weights)
    state, weight_norm = convert_state(raw, spec, "transformers", where=where)
    if weight_norm != spec.weight_norm:
        spec = spec.replace(weight_norm=weight_norm)
    return spec, state
