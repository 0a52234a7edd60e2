"""The 9-codebook causal bridge quantizer: content, prosody and acoustic heads
(torch mirror of ``mlx_speech/quantize/bridge.py``; same names, arguments and semantics).

Children ``content``, ``content_gate`` (learnable scalar ``g``), ``prosody``, ``acoustic``,
``proj_qwen``, ``proj_wavlm`` in both arrangements. ``residual``: prosody quantizes
``x - stopgrad(g q_c)``, acoustic ``x - (g q_c + q_p)``. ``split`` (Mimi's): prosody and acoustic
both quantize ``x - stopgrad(g q_c)``. ``q_total = g q_c + q_p + q_a``.
Distillation (ungated ``q_c``): ``MSE(proj_qwen(q_c), Qwen states repeated by durations)`` and
``MSE(proj_wavlm(q_c + q_p), WavLM features)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mlx_speech.errors import CodesError
from mlx_speech.specs.quantize import BridgeSpec, EMACodebookSpec
from torch_ref.quantize.codes import check_codes, check_latents, check_num_levels
from torch_ref.quantize.rvq import ResidualVQ


class BridgeOutput(NamedTuple):
    quantized: torch.Tensor  # q_total (B, F, D)
    codes: torch.Tensor  # (B, K, F) int32
    losses: dict[str, torch.Tensor]  # commitment, [qwen], [wavlm], total
    content: torch.Tensor  # q_c
    prosody: torch.Tensor | None  # q_p
    metrics: dict[str, torch.Tensor]


def expand_durations(hidden: torch.Tensor, durations: torch.Tensor,
                     num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat token states ``(B, T, H)`` by ``durations (B, T)`` to ``num_frames`` frames;
    returns ``(target (B, F, H), mask (B, F))`` (1.0 where a frame is covered)."""
    if hidden.dim() != 3:
        raise CodesError(f"bridge: Qwen hidden states must be (B, T, H), got {tuple(hidden.shape)}")
    if tuple(durations.shape) != tuple(hidden.shape[:2]) or durations.is_floating_point():
        raise CodesError(f"bridge: durations must be integer (B, T) = {tuple(hidden.shape[:2])}, "
                         f"got {durations.dtype} {tuple(durations.shape)}")
    if durations.numel() and int(durations.min()) < 0:
        raise CodesError("bridge: durations must be >= 0")
    b, t, _ = hidden.shape
    ends = torch.cumsum(durations.to(torch.int32), dim=1)
    frames = torch.arange(num_frames, dtype=torch.int32, device=hidden.device)
    idx = (ends[:, None, :] <= frames[None, :, None]).to(torch.int32).sum(dim=-1)
    mask = (frames[None, :] < ends[:, -1:]).float()
    idx = idx.clamp(max=t - 1).long()
    target = hidden[torch.arange(b, device=hidden.device)[:, None], idx]
    return target, mask


def masked_mse(pred: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over ``(B, F, H)``; with ``mask (B, F)`` only over covered frames."""
    err = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    if mask is None:
        return err.mean()
    return (err * mask).sum() / mask.sum().clamp(min=1.0)


class CausalBridgeQuantizer(nn.Module):
    """Content / prosody / acoustic quantizer with teacher distillation; see the MLX twin."""

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
        self.content_gate = nn.Parameter(torch.tensor([float(content_gate_init)]))
        self.prosody = group([prosody_size], 100)
        self.acoustic = group(acoustic, 200, quantizer_dropout)
        self.proj_qwen = nn.Linear(dim, qwen_dim)
        self.proj_wavlm = nn.Linear(dim, wavlm_dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, arrangement={self.arrangement!r}, codebooks={self.num_codebooks}"

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._codebook_sizes)

    @property
    def num_codebooks(self) -> int:
        return len(self._codebook_sizes)

    def reset_state(self) -> None:
        for g in (self.content, self.prosody, self.acoustic):
            g.reset_state()

    def _gate(self, q_c: torch.Tensor) -> torch.Tensor:
        return self.content_gate.to(q_c.dtype) * q_c

    def forward(self, x: torch.Tensor, *, qwen_hidden: torch.Tensor | None = None,
                durations: torch.Tensor | None = None, wavlm_features: torch.Tensor | None = None,
                num_levels: int | None = None) -> BridgeOutput:
        """Quantize ``x (B, F, D)`` with the first ``num_levels`` heads; distil where given."""
        check_latents(x, self.dim, "CausalBridgeQuantizer")
        n = check_num_levels(num_levels, self.num_codebooks, "CausalBridgeQuantizer")
        outs = [self.content(x)]
        q_c = outs[0].quantized
        q_total = self._gate(q_c)
        q_p = None
        if n >= 2:
            rest_in = x - q_total.detach()
            outs.append(self.prosody(rest_in))
            q_p = outs[1].quantized
            if n >= 3:
                acoustic_in = rest_in if self.arrangement == "split" else x - (q_total + q_p)
                outs.append(self.acoustic(acoustic_in, num_levels=n - 2))
        for o in outs[1:]:
            q_total = q_total + o.quantized
        level_losses = torch.cat([o.level_losses for o in outs])
        losses = {"commitment": level_losses.mean()}
        if qwen_hidden is not None:
            if durations is None:
                raise CodesError("bridge: Qwen hidden states need per-token durations (B, T)")
            target, mask = expand_durations(qwen_hidden, durations, x.shape[1])
            losses["qwen"] = masked_mse(self.proj_qwen(q_c), target.detach(), mask)
        if wavlm_features is not None:
            want = (x.shape[0], x.shape[1], self.proj_wavlm.weight.shape[0])
            if tuple(wavlm_features.shape) != want:
                raise CodesError(f"bridge: WavLM features must be (B, F, wavlm_dim) = {want}, "
                                 f"got {tuple(wavlm_features.shape)}")
            sem = q_c if q_p is None else q_c + q_p
            losses["wavlm"] = masked_mse(self.proj_wavlm(sem), wavlm_features.detach())
        losses["total"] = sum(self._weights[k] * v for k, v in losses.items())
        metrics = {k: torch.cat([o.metrics[k] for o in outs]) for k in outs[0].metrics}
        return BridgeOutput(q_total, torch.cat([o.codes for o in outs], dim=1), losses,
                            q_c, q_p, metrics)

    def encode(self, x: torch.Tensor, *, num_levels: int | None = None) -> torch.Tensor:
        """Codes ``(B, K, F)`` int32 of ``x (B, F, D)``; ``K = num_levels`` (None: 9)."""
        check_latents(x, self.dim, "CausalBridgeQuantizer.encode")
        n = check_num_levels(num_levels, self.num_codebooks, "CausalBridgeQuantizer.encode")
        c = self.content.encode(x)
        if n == 1:
            return c
        q_g = self._gate(self.content.decode(c))
        rest_in = x - q_g
        p = self.prosody.encode(rest_in)
        codes = [c, p]
        if n >= 3:
            if self.arrangement == "residual":
                rest_in = x - (q_g + self.prosody.decode(p))
            codes.append(self.acoustic.encode(rest_in, num_levels=n - 2))
        return torch.cat(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``q_total (B, F, D)`` of codes ``(B, K', F)``, any prefix ``K' <= 9``."""
        codes = check_codes(codes, self.codebook_sizes, "CausalBridgeQuantizer.decode")
        out = self._gate(self.content.decode(codes[:, :1]))
        if codes.shape[1] >= 2:
            out = out + self.prosody.decode(codes[:, 1:2])
        if codes.shape[1] >= 3:
            out = out + self.acoustic.decode(codes[:, 2:])
        return out


def build_bridge(spec: BridgeSpec) -> CausalBridgeQuantizer:
    return CausalBridgeQuantizer(
        dim=spec.dim, arrangement=spec.arrangement, content_size=spec.content_size,
        prosody_size=spec.prosody_size, acoustic_sizes=spec.acoustic_sizes, vq_dim=spec.vq_dim,
        proj_bias=spec.proj_bias, qwen_dim=spec.qwen_dim, wavlm_dim=spec.wavlm_dim,
        commitment_weight=spec.commitment_weight, qwen_weight=spec.qwen_weight,
        wavlm_weight=spec.wavlm_weight, quantizer_dropout=spec.quantizer_dropout,
        content_gate_init=spec.content_gate_init, ema=spec.ema, seed=spec.seed)
