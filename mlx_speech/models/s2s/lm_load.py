"""moshi LM weights into MLX (:func:`load_moshi_lm`), and our tagged file back out
(:func:`save_moshi_lm`). The folder format is read, framework-free, in :mod:`.lm_formats`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.models.s2s.lm_formats import MODEL_NAME, check_dtype, read_moshi_lm
from mlx_speech.models.s2s.lm_spec import MoshiLMSpec
from mlx_speech.weights.mlx import load_torch_state_into_mlx, save_tagged


def load_moshi_lm(path: str | Path, *, spec: MoshiLMSpec | None = None,
                  dtype: str | None = None) -> Any:
    """An MLX :class:`~mlx_speech.models.s2s.lm.MoshiLM` (eval mode) with the moshi LM weights
    at ``path`` (folder or ``model.safetensors``; ``spec`` overrides its ``config.json``),
    computing in ``dtype`` (default float32; the released files are bfloat16)."""
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.models.s2s.lm import MoshiLM  # noqa: PLC0415

    dtype = check_dtype(dtype, path)
    state, spec = read_moshi_lm(path, spec=spec)
    model = MoshiLM(spec)
    if dtype != "float32":
        model.set_dtype(getattr(mx, dtype))
    model = load_torch_state_into_mlx(model, state, where=str(path))
    model.eval()
    return model


def save_moshi_lm(path: str | Path, model: Any) -> None:
    """Save an MLX or torch_ref MoshiLM as our tagged safetensors file (``model=moshi_lm``) in
    its own framework's layout; either framework loads it back (``mlx_speech.load``)."""
    save_tagged(path, model, model=MODEL_NAME)
