"""9-codebook Mimi, the PyTorch mirror of ``mlx_speech/models/mimi9/model.py``.

Subclasses torch_ref's ``MimiModel`` and swaps its quantizer for the
:class:`~torch_ref.quantize.bridge.CausalBridgeQuantizer`; same child names, state-dict keys,
methods and boundary tensors as the MLX twin. Inference methods run under
``torch.inference_mode`` (MimiModel's); ``forward`` is the training forward and keeps
gradients. Never imports mlx.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from mlx_speech.errors import CodesError
from mlx_speech.models.mimi9.spec import Mimi9Spec
from torch_ref.models.mimi.model import MimiModel
from torch_ref.quantize.bridge import BridgeOutput, build_bridge
from torch_ref.quantize.codes import check_codes

# MimiModel's latent paths without their inference_mode wrapper (the training forward needs
# autograd; torch's decorator keeps the undecorated function as __wrapped__)
_encode_latents = MimiModel.encode_latents.__wrapped__
_decode_latents = MimiModel.decode_latents.__wrapped__


class Mimi9Output(NamedTuple):
    audio: torch.Tensor  # (B, F * frame_size)
    bridge: BridgeOutput


class Mimi9Model(MimiModel):
    """Mimi with the 9-codebook bridge quantizer; built from a :class:`Mimi9Spec`."""

    def __init__(self, spec: Mimi9Spec) -> None:
        spec.validate()
        super().__init__(spec.mimi, quantizer=build_bridge(spec.bridge))
        self.spec = spec
        self._default_k = spec.num_codebooks

    @property
    def num_codebooks(self) -> int:
        return self.spec.num_codebooks

    @property
    def total_codebooks(self) -> int:
        return self.spec.num_codebooks

    @property
    def codebook_sizes(self) -> list[int]:
        return self.spec.codebook_sizes

    @property
    def codebook_size(self) -> int:
        return max(self.spec.codebook_sizes)

    def set_num_codebooks(self, num_codebooks: int) -> None:
        """Change how many heads ``encode`` / ``encode_step`` use by default (1..9)."""
        self._default_k = self._k(num_codebooks)

    def _k(self, num_codebooks: int | None) -> int:
        k = self._default_k if num_codebooks is None else num_codebooks
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_codebooks:
            raise CodesError(f"Mimi9: num_codebooks must be an int in 1..{self.num_codebooks}, "
                             f"got {num_codebooks!r}")
        return k

    def _codes(self, codes: torch.Tensor, who: str) -> torch.Tensor:
        return check_codes(codes, self.codebook_sizes, f"Mimi9.{who}")

    @torch.inference_mode()
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Quantized latents ``(B, F, D)`` of codes ``(B, K, F)`` (checked)."""
        return self.quantizer.decode(self._codes(codes, "dequantize"))

    def forward(self, wav: torch.Tensor, *, qwen_hidden: torch.Tensor | None = None,
                durations: torch.Tensor | None = None,
                wavlm_features: torch.Tensor | None = None,
                num_levels: int | None = None) -> Mimi9Output:
        """Training forward of ``wav (B, T)``; see the MLX twin."""
        latents = _encode_latents(self, wav)
        out = self.quantizer(latents, qwen_hidden=qwen_hidden, durations=durations,
                             wavlm_features=wavlm_features, num_levels=num_levels)
        return Mimi9Output(_decode_latents(self, out.quantized), out)


def build_mimi9(spec: Mimi9Spec) -> Mimi9Model:
    """A random-init torch_ref 9-codebook Mimi."""
    return Mimi9Model(spec)
