"""The 9-codebook causal bridge quantizer: content, prosody and acoustic heads (MLX).

Heads (codes ``(B, 9, F)`` in this order), each group a :class:`ResidualVQ` with its own
``in_proj`` / ``out_proj`` (``dim -> vq_dim -> dim``):

* 0, ``content``: a 2048-code VQ of ``x``; ``q_c``, scaled by the learnable scalar
  ``content_gate`` ``g`` (shape ``(1,)``, initial value ``BridgeSpec.content_gate_init``).
* 1, ``prosody``: a 2048-code VQ; ``q_p``.
* 2-8, ``acoustic``: a 7 x 2048 residual VQ; ``q_a``.

Both arrangements have the same children and parameter names, so a checkpoint can switch:

* ``arrangement="residual"`` (the seed design): prosody quantizes ``x - stopgrad(g q_c)`` and
  the acoustic RVQ ``x - (g q_c + q_p)``.
* ``arrangement="split"`` (Mimi's ``rvq_first`` / ``rvq_rest`` layout): prosody and acoustic
  both quantize ``x - stopgrad(g q_c)`` (= ``x`` while ``g = 0``).

Either way ``q_total = g q_c + q_p + q_a``; ``decode`` follows the same sum. With ``g = 0`` (the
state after Mimi checkpoint surgery, ``convert/mimi_surgery.py``) the split arrangement is
exactly Mimi's split RVQ on heads 1-8.

Distillation (both computed whenever their teacher input is given; both use the ungated
``q_c``, so the content head learns before its gate opens):

* ``qwen``: ``MSE(proj_qwen(q_c), Qwen hidden states)``; token states ``(B, T, qwen_dim)`` are
  repeated to the frame rate by per-token ``durations (B, T)`` (frames per token); frames past
  a row's total duration are left out of the mean.
* ``wavlm``: ``MSE(proj_wavlm(q_c + q_p), WavLM features (B, F, wavlm_dim))``.

Teacher inputs are treated as constants (no gradient flows into them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.errors import CodesError
from mlx_speech.quantize.codes import check_codes, check_latents, check_num_levels
from mlx_speech.quantize.rvq import ResidualVQ
from mlx_speech.specs.quantize import BridgeSpec, EMACodebookSpec


GroupEncode = Callable[[ResidualVQ, mx.array, int], mx.array]  # (group, latents, levels) -> codes
GroupDecode = Callable[[ResidualVQ, mx.array], mx.array]  # (group, codes) -> latents


class BridgeOutput(NamedTuple):
    quantized: mx.array  # q_total (B, F, D)
    codes: mx.array  # (B, K, F) int32, K = 9 unless num_levels
    losses: dict[str, mx.array]  # commitment, [qwen], [wavlm], total (weighted sum)
    content: mx.array  # q_c (B, F, D)
    prosody: mx.array | None  # q_p (B, F, D)
    metrics: dict[str, mx.array]  # perplexity / usage / expired per codebook (K,)


def expand_durations(hidden: mx.array, durations: mx.array,
                     num_frames: int) -> tuple[mx.array, mx.array]:
    """Repeat token states ``(B, T, H)`` by ``durations (B, T)`` to ``num_frames`` frames.

    Returns ``(target (B, F, H), mask (B, F))``; ``mask`` is 1.0 where a frame is covered
    (frame ``f`` belongs to the first token whose cumulative duration exceeds ``f``).
    """
    if hidden.ndim != 3:
        raise CodesError(f"bridge: Qwen hidden states must be (B, T, H), got {tuple(hidden.shape)}")
    if durations.shape != hidden.shape[:2] or not mx.issubdtype(durations.dtype, mx.integer):
        raise CodesError(f"bridge: durations must be integer (B, T) = {tuple(hidden.shape[:2])}, "
                         f"got {durations.dtype} {tuple(durations.shape)}")
    if durations.size and int(durations.min().item()) < 0:
        raise CodesError("bridge: durations must be >= 0")
    b, t, _ = hidden.shape
    ends = mx.cumsum(durations.astype(mx.int32), axis=1)
    frames = mx.arange(num_frames, dtype=mx.int32)
    idx = (ends[:, None, :] <= frames[None, :, None]).astype(mx.int32).sum(axis=-1)
    mask = (frames[None, :] < ends[:, -1:]).astype(mx.float32)
    idx = mx.minimum(idx, t - 1)
    target = hidden[mx.arange(b)[:, None], idx]
    return target, mask


def masked_mse(pred: mx.array, target: mx.array, mask: mx.array | None = None) -> mx.array:
    """Mean squared error over ``(B, F, H)``; with ``mask (B, F)`` only over covered frames."""
    err = ((pred.astype(mx.float32) - target.astype(mx.float32)) ** 2).mean(axis=-1)
    if mask is None:
        return err.mean()
    return (err * mask).sum() / mx.maximum(mask.sum(), 1.0)


class CausalBridgeQuantizer(nn.Module):
    """Content / prosody / acoustic quantizer with teacher distillation (see module docstring).

    Args:
        dim: latent width ``D``.
        arrangement: ``"residual"`` chain or Mimi-style ``"split"``.
        content_size, prosody_size: codes of heads 0 and 1.
        acoustic_sizes: codes per acoustic level (7 x 2048).
        vq_dim: inner width of every group (projections ``D -> vq_dim -> D``); None: none.
        proj_bias: biases of those projections.
        qwen_dim, wavlm_dim: teacher widths for ``proj_qwen`` / ``proj_wavlm``.
        commitment_weight, qwen_weight, wavlm_weight: weights in ``losses["total"]``.
        quantizer_dropout: dropout probability of the acoustic levels.
        content_gate_init: initial value of the learnable gate ``g`` on ``q_c``.
        ema: EMA codebook options of every level.
        seed: base seed (groups use ``seed``, ``seed + 100``, ``seed + 200``).
    """

    def __init__(self, *, dim: int, arrangement: str = "residual", content_size: int = 2048,
                 prosody_size: int = 2048, acoustic_sizes: list[int] | None = None,
                 vq_dim: int | None = None, proj_bias: bool = False, qwen_dim: int = 1536,
                 wavlm_dim: int = 1024, commitment_weight: float = 1.0, qwen_weight: float = 1.0,
                 wavlm_weight: float = 1.0, quantizer_dropout: float = 0.0,
                 content_gate_init: float = 1.0, ema: EMACodebookSpec | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if arrangement not in ("residual", "split"):
            raise ValueError(f"CausalBridgeQuantizer: arrangement must be 'residual' or 'split', "
                             f"got {arrangement!r}")
        acoustic = list(acoustic_sizes) if acoustic_sizes is not None else [2048] * 7
        self.dim = dim
        self.arrangement = arrangement
        self._codebook_sizes = [content_size, prosody_size] + acoustic
        self._weights = {"commitment": float(commitment_weight), "qwen": float(qwen_weight),
                        "wavlm": float(wavlm_weight)}

        def group(sizes: list[int], seed_offset: int, dropout: float = 0.0) -> ResidualVQ:
            return ResidualVQ(dim=dim, codebook_sizes=sizes, rvq_dim=vq_dim,
                              force_projection=vq_dim is not None, proj_bias=proj_bias,
                              quantizer_dropout=dropout, ema=ema, seed=seed + seed_offset)

        self.content = group([content_size], 0)
        self.content_gate = mx.array([float(content_gate_init)], dtype=mx.float32)
        self.prosody = group([prosody_size], 100)
        self.acoustic = group(acoustic, 200, quantizer_dropout)
        self.proj_qwen = nn.Linear(dim, qwen_dim)
        self.proj_wavlm = nn.Linear(dim, wavlm_dim)

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, arrangement={self.arrangement!r}, codebooks={len(self.codebook_sizes)}"

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._codebook_sizes)

    @property
    def num_codebooks(self) -> int:
        return len(self._codebook_sizes)

    def reset_state(self) -> None:
        for g in (self.content, self.prosody, self.acoustic):
            g.reset_state()

    def _gate(self, q_c: mx.array) -> mx.array:
        return self.content_gate.astype(q_c.dtype) * q_c

    def __call__(self, x: mx.array, *, qwen_hidden: mx.array | None = None,
                 durations: mx.array | None = None, wavlm_features: mx.array | None = None,
                 num_levels: int | None = None) -> BridgeOutput:
        """Quantize ``x (B, F, D)`` with the first ``num_levels`` heads; distil where given."""
        check_latents(x, self.dim, "CausalBridgeQuantizer")
        n = check_num_levels(num_levels, self.num_codebooks, "CausalBridgeQuantizer")
        outs = [self.content(x)]
        q_c = outs[0].quantized
        q_total = self._gate(q_c)
        q_p = None
        if n >= 2:
            rest_in = x - mx.stop_gradient(q_total)
            outs.append(self.prosody(rest_in))
            q_p = outs[1].quantized
            if n >= 3:
                acoustic_in = rest_in if self.arrangement == "split" else x - (q_total + q_p)
                outs.append(self.acoustic(acoustic_in, num_levels=n - 2))
        for o in outs[1:]:
            q_total = q_total + o.quantized
        level_losses = mx.concatenate([o.level_losses for o in outs])
        losses = {"commitment": level_losses.mean()}
        if qwen_hidden is not None:
            if durations is None:
                raise CodesError("bridge: Qwen hidden states need per-token durations (B, T)")
            target, mask = expand_durations(qwen_hidden, durations, x.shape[1])
            losses["qwen"] = masked_mse(self.proj_qwen(q_c), mx.stop_gradient(target), mask)
        if wavlm_features is not None:
            want = (x.shape[0], x.shape[1], self.proj_wavlm.weight.shape[0])
            if tuple(wavlm_features.shape) != want:
                raise CodesError(f"bridge: WavLM features must be (B, F, wavlm_dim) = {want}, "
                                 f"got {tuple(wavlm_features.shape)}")
            sem = q_c if q_p is None else q_c + q_p
            losses["wavlm"] = masked_mse(self.proj_wavlm(sem), mx.stop_gradient(wavlm_features))
        losses["total"] = sum(self._weights[k] * v for k, v in losses.items())
        metrics = {k: mx.concatenate([o.metrics[k] for o in outs]) for k in outs[0].metrics}
        return BridgeOutput(q_total, mx.concatenate([o.codes for o in outs], axis=1), losses,
                            q_c, q_p, metrics)

    def encode(self, x: mx.array, *, num_levels: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``; ``K = num_levels`` (None: 9)."""
        check_latents(x, self.dim, "CausalBridgeQuantizer.encode")
        n = check_num_levels(num_levels, self.num_codebooks, "CausalBridgeQuantizer.encode")
        return self.encode_with(x, n, lambda g, z, k: g.encode(z, num_levels=k),
                                lambda g, c: g.decode(c))

    def decode(self, codes: mx.array) -> mx.array:
        """``q_total (B, F, D)`` of codes ``(B, K', F)``, any prefix ``K' <= 9``."""
        codes = check_codes(codes, self.codebook_sizes, "CausalBridgeQuantizer.decode")
        return self.decode_with(codes, lambda g, c: g.decode(c))

    # The data flow of encode / decode, with the group operations passed in so that an
    # inference cache of folded codebooks (mlx_speech.models.mimi9.model) runs the same flow.
    def encode_with(self, x: mx.array, n: int, encode: GroupEncode,
                    decode: GroupDecode) -> mx.array:
        """Codes ``(B, n, F)`` of checked ``x`` via ``encode(group, z, k)`` / ``decode(group, c)``."""
        c = encode(self.content, x, 1)
        if n == 1:
            return c
        q_g = self._gate(decode(self.content, c))
        rest_in = x - q_g
        p = encode(self.prosody, rest_in, 1)
        codes = [c, p]
        if n >= 3:
            if self.arrangement == "residual":
                rest_in = x - (q_g + decode(self.prosody, p))
            codes.append(encode(self.acoustic, rest_in, n - 2))
        return mx.concatenate(codes, axis=1)

    def decode_with(self, codes: mx.array, decode: GroupDecode) -> mx.array:
        """``g q_c + q_p + q_a`` of checked codes ``(B, K', F)`` via ``decode(group, c)``."""
        out = self._gate(decode(self.content, codes[:, :1]))
        if codes.shape[1] >= 2:
            out = out + decode(self.prosody, codes[:, 1:2])
        if codes.shape[1] >= 3:
            out = out + decode(self.acoustic, codes[:, 2:])
        return out


def build_bridge(spec: BridgeSpec) -> CausalBridgeQuantizer:
    return CausalBridgeQuantizer(
        dim=spec.dim, arrangement=spec.arrangement, content_size=spec.content_size,
        prosody_size=spec.prosody_size, acoustic_sizes=spec.acoustic_sizes, vq_dim=spec.vq_dim,
        proj_bias=spec.proj_bias, qwen_dim=spec.qwen_dim, wavlm_dim=spec.wavlm_dim,
        commitment_weight=spec.commitment_weight, qwen_weight=spec.qwen_weight,
        wavlm_weight=spec.wavlm_weight, quantizer_dropout=spec.quantizer_dropout,
        content_gate_init=spec.content_gate_init, ema=spec.ema, seed=spec.seed)
