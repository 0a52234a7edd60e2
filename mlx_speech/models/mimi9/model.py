"""9-codebook Mimi (MLX): Mimi's SEANet + transformers around the causal bridge quantizer.

Pipeline: ``wav (B, T)`` -> ``encode_latents`` (SEANet encoder, encoder_transformer,
downsample; Mimi's code) ``(B, F, D)`` -> ``quantizer`` (:class:`CausalBridgeQuantizer`: head 0
content, 1 prosody, 2-8 acoustic) codes ``(B, 9, F)`` -> ``dequantize`` ``g q_c + q_p + q_a``
-> ``decode_latents`` (upsample, decoder_transformer, SEANet decoder) ``(B, F * frame_size)``.

Child names are Mimi's (``encoder``, ``encoder_transformer``, ``downsample``, ``quantizer``,
``upsample``, ``decoder_transformer``, ``decoder``), so every non-quantizer tensor of a Mimi
checkpoint has the same key here; the quantizer's are ``quantizer.content.*``,
``quantizer.content_gate``, ``quantizer.prosody.*``, ``quantizer.acoustic.*``,
``quantizer.proj_qwen.*``, ``quantizer.proj_wavlm.*``.

:class:`Mimi9Model` subclasses :class:`~mlx_speech.models.mimi.model.MimiModel` (batch and
streaming paths, checks, CPU cache) and swaps its quantizer. ``__call__`` is the training
forward: latents -> bridge (with its distillation losses) -> ``decode_latents(q_total)``.

Eval mode encodes / decodes through :class:`FrozenBridge`, which keeps each group's folded EMA
codebooks (``mimi_vq``'s cache) and runs the bridge's own data flow
(``CausalBridgeQuantizer.encode_with`` / ``decode_with``); training mode uses the quantizer.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

from mlx_speech.errors import CodesError
from mlx_speech.models.mimi.model import MimiModel
from mlx_speech.models.mimi.vq import GroupTables
from mlx_speech.quantize.bridge import BridgeOutput, CausalBridgeQuantizer, build_bridge
from mlx_speech.quantize.codes import check_codes
from mlx_speech.quantize.rvq import ResidualVQ
from mlx_speech.models.mimi9.spec import Mimi9Spec


class Mimi9Output(NamedTuple):
    audio: mx.array  # (B, F * frame_size)
    bridge: BridgeOutput  # q_total, codes (B, K, F), losses, q_c, q_p, metrics


class FrozenBridge:
    """Eval-mode ``encode`` / ``decode`` of a bridge with cached folded codebooks per group."""

    def __init__(self, quantizer: CausalBridgeQuantizer) -> None:
        self.quantizer = quantizer
        self._tables = {id(g): GroupTables(g) for g in
                        (quantizer.content, quantizer.prosody, quantizer.acoustic)}

    def _group(self, group: ResidualVQ) -> GroupTables:
        tables = self._tables[id(group)]
        tables.refresh()
        return tables

    def encode(self, latents: mx.array, num_codebooks: int) -> mx.array:
        return self.quantizer.encode_with(
            latents, num_codebooks, lambda g, z, k: self._group(g).encode(z, k),
            lambda g, c: self._group(g).decode(c))

    def decode(self, codes: mx.array) -> mx.array:
        return self.quantizer.decode_with(codes, lambda g, c: self._group(g).decode(c))


class Mimi9Model(MimiModel):
    """Mimi with the 9-codebook bridge quantizer; built from a :class:`Mimi9Spec`."""

    COMPILED_STEPS = False  # the bridge's dequantize checks code ranges on the host

    def __init__(self, spec: Mimi9Spec) -> None:
        spec.validate()
        super().__init__(spec.mimi, quantizer=build_bridge(spec.bridge))
        self.spec = spec
        self._default_k = spec.num_codebooks
        self._codebooks = FrozenBridge(self.quantizer)

    # -- sizes -------------------------------------------------------------------------------
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

    # -- checks ------------------------------------------------------------------------------
    def _k(self, num_codebooks: int | None) -> int:
        k = self._default_k if num_codebooks is None else num_codebooks
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_codebooks:
            raise CodesError(f"Mimi9: num_codebooks must be an int in 1..{self.num_codebooks}, "
                             f"got {num_codebooks!r}")
        return k

    def _codes(self, codes: mx.array, who: str) -> mx.array:
        return check_codes(codes, self.codebook_sizes, f"Mimi9.{who}")

    # -- batch (encode, decode, encode_latents, decode_latents and quantize are MimiModel's,
    #    running through this quantizer) -------------------------------------------------------
    def dequantize(self, codes: mx.array) -> mx.array:
        """Quantized latents ``g q_c + q_p + q_a`` ``(B, F, D)`` of codes ``(B, K, F)``."""
        codes = self._codes(codes, "dequantize")
        if self.training:
            return self.quantizer.decode(codes)
        return self._codebooks.decode(codes)

    def __call__(self, wav: mx.array, *, qwen_hidden: mx.array | None = None,
                 durations: mx.array | None = None, wavlm_features: mx.array | None = None,
                 num_levels: int | None = None) -> Mimi9Output:
        """Training forward of ``wav (B, T)``: audio ``(B, F * frame_size)`` decoded from the
        bridge's ``q_total`` (first ``num_levels`` heads) and the bridge output with its losses.
        Teacher inputs: ``qwen_hidden (B, T', qwen_dim)`` + ``durations (B, T')`` frames per
        token; ``wavlm_features (B, F, wavlm_dim)``."""
        latents = self.encode_latents(wav)
        out = self.quantizer(latents, qwen_hidden=qwen_hidden, durations=durations,
                             wavlm_features=wavlm_features, num_levels=num_levels)
        return Mimi9Output(self.decode_latents(out.quantized), out)


def build_mimi9(spec: Mimi9Spec) -> Mimi9Model:
    """A random-init MLX 9-codebook Mimi (load weights with ``convert.mimi_surgery.load_mimi9``)."""
    return Mimi9Model(spec)
