"""DAC weights from any supported file into torch_ref (the formats are read, framework-free, by
:mod:`mlx_speech.models.dac.formats`). Never imports mlx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError
from mlx_speech.models.dac.formats import detect_format, read_upstream_state, tagged_path
from mlx_speech.models.dac.spec import DACSpec
from torch_ref.weights import load_torch_model, load_torch_state


def load_dac_torch(path: str | Path, *, num_codebooks: int | None = None,
                   spec: DACSpec | None = None) -> Any:
    """A torch_ref ``DACModel`` (eval mode) with the weights at ``path``; same formats and
    options as :func:`mlx_speech.models.dac.load.load_dac`."""
    from torch_ref.models.dac.model import DACModel  # noqa: PLC0415

    if detect_format(path) == "mlx-speech":
        if spec is not None:
            raise CheckpointError(f"{path}: an mlx-speech DAC file records its own spec; "
                                  "spec= applies to upstream formats only")
        model, _ = load_torch_model(tagged_path(path))
        if num_codebooks is not None:
            model.set_num_codebooks(num_codebooks)
    else:
        state, spec = read_upstream_state(path, num_codebooks=num_codebooks, spec=spec)
        model = load_torch_state(DACModel(spec), state, where=str(path))
    model.eval()
    return model
