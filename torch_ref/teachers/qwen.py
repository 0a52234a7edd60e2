"""Torch twin of :mod:`mlx_speech.teachers.qwen`: transformers' Qwen2 as a frozen teacher.

Same API and layer convention (0 = embeddings, ``k`` = output of block ``k``, ``num_layers`` =
final-normed output, i.e. transformers' ``output_hidden_states``), same duration rules
(:mod:`mlx_speech.teachers.durations`). A directory written by the MLX teacher's ``save`` (or
any HF / mlx-lm Qwen2 directory with float weights) loads here unchanged: the parameter names are
the same in mlx-lm and transformers. transformers is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlx_speech.errors import CheckpointError
from mlx_speech.teachers.durations import (DurationError, check_durations, even_durations,
                                           frame_to_token)


def align_to_frames(hidden: torch.Tensor, durations: Sequence[int] | np.ndarray,
                    num_frames: int) -> torch.Tensor:
    """Repeat token states ``(B, T, H)`` / ``(T, H)`` by ``durations`` -> ``(B, F, H)``."""
    if hidden.ndim == 2:
        hidden = hidden[None]
    if hidden.ndim != 3:
        raise DurationError(f"hidden states must be (T, H) or (B, T, H), got {tuple(hidden.shape)}")
    B, T, H = hidden.shape
    d = check_durations(durations, num_tokens=T, num_frames=num_frames)
    if d.shape[0] not in (1, B):
        raise DurationError(f"durations have {d.shape[0]} rows for a batch of {B}")
    idx = torch.from_numpy(np.stack([frame_to_token(row) for row in d]))  # (1|B, F)
    idx = idx.expand(B, -1).to(hidden.device)
    return torch.gather(hidden, 1, idx[..., None].expand(-1, -1, H))


class QwenTeacher:
    """A frozen transformers causal LM returning hidden states of one layer."""

    def __init__(self, model: Any, tokenizer: Any = None) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer

    @classmethod
    def from_config(cls, config: dict[str, Any], *, seed: int = 0) -> QwenTeacher:
        """Random weights for a Qwen2 config dict (the same dict the MLX teacher takes)."""
        from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: PLC0415

        torch.manual_seed(seed)
        keys = {k: v for k, v in config.items() if k != "model_type"}
        return cls(Qwen2ForCausalLM(Qwen2Config(**keys)))

    @classmethod
    def from_pretrained(cls, path: str | Path, *, tokenizer: bool = True) -> QwenTeacher:
        """Load a local HF / mlx-lm directory with float weights."""
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

        d = Path(path).expanduser()
        if not (d / "config.json").is_file():
            raise CheckpointError(f"{d}: no config.json (expected a model directory)")
        model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True,
                                                     dtype=torch.float32)
        tok = None
        has_tokenizer = (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file()
        if tokenizer and has_tokenizer:
            tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        return cls(model, tok)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def hidden_states(self, tokens: Any, layer: int = -1) -> torch.Tensor:
        """``(B, T, H)`` hidden states of ``layer`` (see the module docstring)."""
        L = self.num_layers
        if not -(L + 1) <= layer <= L:
            raise ValueError(f"teacher layer {layer} out of range 0..{L} (or -{L + 1}..-1)")
        t = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        if t.ndim == 1:
            t = t[None]
        with torch.inference_mode():
            out = self.model.model(input_ids=t, output_hidden_states=True)
        return out.hidden_states[layer % (L + 1)]

    def frame_states(self, tokens: Any, *, num_frames: int, layer: int = -1,
                     durations: Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
        """Hidden states of ``layer`` repeated to ``num_frames`` frames: ``(B, F, H)``."""
        h = self.hidden_states(tokens, layer)
        if durations is None:
            durations = even_durations(h.shape[1], num_frames)
        return align_to_frames(h, durations, num_frames)
