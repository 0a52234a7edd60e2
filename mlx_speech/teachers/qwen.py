"""Qwen (any mlx-lm decoder with ``model.layers``) as a frozen teacher: hidden states per token,
aligned to an audio frame rate.

The model is mlx-lm's own module tree (``mlx_lm.models.qwen2.Model`` for Qwen2 / Qwen2.5 ...),
loaded from a local directory (``config.json`` + ``model*.safetensors``, as mlx-lm and HF write
them) or built with random weights from a config dict for tests. :meth:`QwenTeacher.hidden_states`
runs the embedding and the first ``layer`` decoder blocks by hand, calling mlx-lm's blocks with
mlx-lm's causal mask, so layer ``k`` is exactly what mlx-lm computes there; it stops after block
``layer`` (the deeper blocks are not run).

Layer indices follow transformers' ``output_hidden_states``: 0 = token embeddings, ``k`` = the
output of block ``k``, and ``num_layers`` = the last block's output *after the final RMSNorm*
(which is ``model.model(tokens)`` in mlx-lm).

The torch side is transformers' Qwen2 (:mod:`torch_ref.teachers.qwen`); mlx-lm's parameter names
are the HF names, so a directory written by :meth:`QwenTeacher.save` loads in transformers and
vice versa (tied embeddings: no ``lm_head.weight``). Durations: :mod:`.durations`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_speech.errors import CheckpointError
from mlx_speech.teachers.durations import (DurationError, check_durations,
                                           durations_from_word_timings, even_durations,
                                           frame_to_token)

__all__ = ["QwenTeacher", "align_to_frames", "DurationError", "even_durations",
           "durations_from_word_timings"]


def align_to_frames(hidden: mx.array, durations: Sequence[int] | np.ndarray,
                    num_frames: int) -> mx.array:
    """Repeat token states ``(B, T, H)`` (or ``(T, H)``) by ``durations`` -> ``(B, F, H)``.

    ``durations``: ``(T,)`` (every row) or ``(B, T)`` frames per token; each row must sum to
    ``num_frames`` (:class:`DurationError` otherwise, naming the row and the sums).
    """
    if hidden.ndim == 2:
        hidden = hidden[None]
    if hidden.ndim != 3:
        raise DurationError(f"hidden states must be (T, H) or (B, T, H), got {hidden.shape}")
    B, T, _ = hidden.shape
    d = check_durations(durations, num_tokens=T, num_frames=num_frames)
    if d.shape[0] not in (1, B):
        raise DurationError(f"durations have {d.shape[0]} rows for a batch of {B}")
    if d.shape[0] == 1:
        return mx.take(hidden, mx.array(frame_to_token(d[0]).astype(np.int32)), axis=1)
    idx = np.stack([frame_to_token(row) for row in d]).astype(np.int32)  # (B, F)
    return mx.take_along_axis(hidden, mx.array(idx)[..., None], axis=1)


class QwenTeacher:
    """A frozen mlx-lm decoder that returns hidden states of one layer, optionally per frame."""

    def __init__(self, model: Any, config: dict[str, Any], tokenizer: Any = None) -> None:
        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
            raise CheckpointError(f"{type(model).__name__}: expected an mlx-lm decoder with "
                                  f"model.embed_tokens and model.layers")
        self.model = model
        self.config = dict(config)
        self.tokenizer = tokenizer
        model.eval()
        model.freeze()

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any], *, seed: int = 0) -> QwenTeacher:
        """Random weights for an mlx-lm ``config`` dict (``model_type`` picks the module)."""
        model_type = config.get("model_type")
        if not isinstance(model_type, str):
            raise CheckpointError("teacher config needs a 'model_type' (e.g. 'qwen2')")
        try:
            arch = importlib.import_module(f"mlx_lm.models.{model_type}")
        except ModuleNotFoundError as exc:
            if exc.name == "mlx_lm":
                raise ModuleNotFoundError("the Qwen teacher needs mlx-lm: pip install "
                                          "'mlx-speech[teachers]'") from None
            raise CheckpointError(f"mlx-lm has no model type {model_type!r}") from None
        mx.random.seed(seed)
        model = arch.Model(arch.ModelArgs.from_dict(config))
        mx.eval(model.parameters())
        return cls(model, config)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, tokenizer: bool = True) -> QwenTeacher:
        """Load a local mlx-lm / HF directory (``config.json`` + ``model*.safetensors``)."""
        d = Path(path).expanduser()
        if not d.is_dir():
            raise CheckpointError(f"teacher directory not found: {d}")
        if not (d / "config.json").is_file():
            raise CheckpointError(f"{d}: no config.json")
        if not list(d.glob("model*.safetensors")):
            raise CheckpointError(f"{d}: no model*.safetensors")
        try:
            from mlx_lm.utils import load_model  # noqa: PLC0415
        except ModuleNotFoundError:
            raise ModuleNotFoundError("the Qwen teacher needs mlx-lm: pip install "
                                      "'mlx-speech[teachers]'") from None
        try:
            model, config = load_model(d)
        except ValueError as exc:  # unsupported model type, missing / extra weights
            raise CheckpointError(f"{d}: {str(exc).splitlines()[0]}") from None
        tok = None
        has_tokenizer = (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file()
        if tokenizer and has_tokenizer:
            from transformers import AutoTokenizer  # noqa: PLC0415

            tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        return cls(model, config, tok)

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (HF names: transformers loads it)."""
        from mlx.utils import tree_flatten  # noqa: PLC0415

        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        weights = dict(tree_flatten(self.model.parameters()))
        mx.save_safetensors(str(d / "model.safetensors"), weights, metadata={"format": "mlx"})
        (d / "config.json").write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        return d

    # --- properties -----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.model.model.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.model.embed_tokens.weight.shape[1])

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids ``(T,)`` of ``text`` (needs the directory's tokenizer)."""
        if self.tokenizer is None:
            raise CheckpointError("this teacher has no tokenizer; pass token ids instead")
        return np.asarray(self.tokenizer(text)["input_ids"], dtype=np.int64)

    # --- forward --------------------------------------------------------------------------------
    def _tokens(self, tokens: Any) -> mx.array:
        t = tokens if isinstance(tokens, mx.array) else mx.array(np.asarray(tokens))
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2 or t.shape[1] == 0 or not mx.issubdtype(t.dtype, mx.integer):
            raise DurationError(f"tokens must be a non-empty integer (T,) or (B, T) array, "
                                f"got {t.dtype} {t.shape}")
        vocab = self.model.model.embed_tokens.weight.shape[0]
        if int(t.min().item()) < 0 or int(t.max().item()) >= vocab:
            raise DurationError(f"token ids must be in 0..{vocab - 1}")
        return t

    def hidden_states(self, tokens: Any, layer: int = -1) -> mx.array:
        """``(B, T, H)`` hidden states of ``layer`` for token ids ``(T,)`` / ``(B, T)``.

        ``layer`` in ``0..num_layers`` (negatives count from ``num_layers``): 0 = embeddings,
        ``k`` = output of block ``k``, ``num_layers`` = final-normed output (module docstring).
        """
        from mlx_lm.models.base import create_attention_mask  # noqa: PLC0415

        L = self.num_layers
        if not -(L + 1) <= layer <= L:
            raise ValueError(f"teacher layer {layer} out of range 0..{L} (or -{L + 1}..-1)")
        layer %= L + 1
        inner = self.model.model
        h = inner.embed_tokens(self._tokens(tokens))
        mask = create_attention_mask(h, None)
        for block in inner.layers[:layer]:
            h = block(h, mask, None)
        if layer == L:
            h = inner.norm(h)
        return mx.stop_gradient(h)

    def frame_states(self, tokens: Any, *, num_frames: int, layer: int = -1,
                     durations: Sequence[int] | np.ndarray | None = None) -> mx.array:
        """Hidden states of ``layer`` repeated to ``num_frames`` frames: ``(B, F, H)``.

        ``durations``: frames per token, ``(T,)`` or ``(B, T)``, each row summing to
        ``num_frames``; None spreads the frames evenly over the tokens (:func:`even_durations`).
        """
        h = self.hidden_states(tokens, layer)
        if durations is None:
            durations = even_durations(h.shape[1], num_frames)
        return align_to_frames(h, durations, num_frames)
