"""Forward-sum alignment loss, log-attention and binarization loss (torch mirror of
``mlx_speech/train/tts_align.py``; the prior and the monotonic alignment search are numpy and
shared from there: that half of the module imports no mlx)."""

from __future__ import annotations

import torch

NEG = -1e4


def log_attention(scores: torch.Tensor, log_prior: torch.Tensor, text_mask: torch.Tensor,
                  mel_mask: torch.Tensor) -> torch.Tensor:
    s = torch.where(text_mask[:, None, :] & mel_mask[:, :, None], scores + log_prior, torch.full_like(scores, NEG))
    return s - torch.logsumexp(s, dim=1, keepdim=True)


def forward_sum_loss(log_attn: torch.Tensor, text_lengths: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
    B, T, N = log_attn.shape
    n_idx = torch.arange(N, device=log_attn.device)[None, :]
    alpha = torch.where(n_idx == 0, log_attn[:, 0], torch.full_like(log_attn[:, 0], NEG))
    for t in range(1, T):
        shifted = torch.cat([torch.full_like(alpha[:, :1], NEG), alpha[:, :-1]], dim=1)
        new = torch.logaddexp(alpha, shifted) + log_attn[:, t]
        alpha = torch.where((t < mel_lengths)[:, None], new, alpha)
    last = torch.gather(alpha, 1, (text_lengths - 1)[:, None].long())[:, 0]
    return -(last / mel_lengths.to(last.dtype)).mean()


def binarization_loss(log_attn: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    return -(log_attn * hard).sum() / hard.sum().clamp(min=1.0)
