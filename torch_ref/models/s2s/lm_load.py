"""moshi LM weights into torch_ref (the folder format is read, framework-free, by
:mod:`mlx_speech.models.s2s.lm_formats`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.models.s2s.lm_formats import check_dtype, read_moshi_lm
from mlx_speech.models.s2s.lm_spec import MoshiLMSpec
from torch_ref.weights import load_torch_state


def load_moshi_lm_torch(path: str | Path, *, spec: MoshiLMSpec | None = None,
                        dtype: str | None = None) -> Any:
    """A torch_ref ``MoshiLM`` (eval mode) with the moshi LM weights at ``path``."""
    import torch  # noqa: PLC0415

    from torch_ref.models.s2s.lm import MoshiLM  # noqa: PLC0415

    dtype = check_dtype(dtype, path)
    state, spec = read_moshi_lm(path, spec=spec)
    model = MoshiLM(spec).to(getattr(torch, dtype))
    model = load_torch_state(model, state, where=str(path))
    model.eval()
    return model
