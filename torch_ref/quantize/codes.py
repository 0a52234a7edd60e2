"""Boundary checks and code statistics shared by every quantizer (torch mirror).

Latents are ``(B, F, D)`` (frames, dim); codes are ``(B, K, F)`` int32. A user error (wrong
rank or width, codes out of range, too many levels) raises :class:`CodesError` with one line.
``sample_indices`` / ``dropout_levels`` come from :mod:`mlx_speech.utils.sampling`, shared with the
MLX side, so both draw the same indices from the same ``np.random.Generator``.
"""

from __future__ import annotations

import torch

from mlx_speech.errors import AudioError, CodesError
from mlx_speech.utils.sampling import dropout_levels, sample_indices  # noqa: F401 (re-exported)


def check_wav(wav: torch.Tensor, where: str) -> torch.Tensor:
    """The waveform argument of a codec's coding calls: a float ``(B, T)`` tensor
    (:class:`AudioError` otherwise)."""
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"{where}: expected a torch.Tensor waveform (B, T), got {type(wav).__name__}")
    if wav.dim() != 2 or not wav.is_floating_point():
        raise AudioError(f"{where}: expected a float waveform (B, T), got {wav.dtype} "
                         f"{tuple(wav.shape)}")
    return wav


def check_latents(x: torch.Tensor, dim: int, where: str) -> None:
    """``x`` must be a float ``(B, F, dim)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise CodesError(f"{where}: expected a torch.Tensor of latents (B, F, {dim}), got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != dim:
        raise CodesError(f"{where}: expected latents of shape (B, F, {dim}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise CodesError(f"{where}: latents must be floating point, got {x.dtype}")


def check_num_levels(num_levels: int | None, total: int, where: str) -> int:
    """Resolve ``num_levels`` (None = all) and check it is in ``1..total``."""
    if num_levels is None:
        return total
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or not 1 <= num_levels <= total:
        raise CodesError(f"{where}: num_levels must be an int in 1..{total}, got {num_levels!r}")
    return num_levels


def check_codes(codes: torch.Tensor, sizes: list[int], where: str) -> torch.Tensor:
    """``codes`` must be integer ``(B, K', F)`` with ``1 <= K' <= len(sizes)`` and
    ``0 <= codes[:, k] < sizes[k]``; returns them as int64 (torch's index type)."""
    if not isinstance(codes, torch.Tensor):
        raise CodesError(f"{where}: expected a torch.Tensor of codes (B, K, F), got {type(codes).__name__}")
    if codes.dim() != 3:
        raise CodesError(f"{where}: expected codes of shape (B, K, F), got {tuple(codes.shape)}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise CodesError(f"{where}: codes must be integers, got {codes.dtype}")
    k = codes.shape[1]
    if not 1 <= k <= len(sizes):
        raise CodesError(f"{where}: got {k} codebooks, expected 1..{len(sizes)}")
    if codes.numel():
        lo = codes.amin(dim=(0, 2)).tolist()
        hi = codes.amax(dim=(0, 2)).tolist()
        for i in range(k):
            if lo[i] < 0 or hi[i] >= sizes[i]:
                bad = lo[i] if lo[i] < 0 else hi[i]
                raise CodesError(f"{where}: code {bad} in codebook {i} is out of range 0..{sizes[i] - 1}")
    return codes.long()


def histogram(codes: torch.Tensor, size: int) -> torch.Tensor:
    """Counts ``(size,)`` float32 of the flat int codes."""
    flat = codes.reshape(-1).long()
    return torch.zeros(size, dtype=torch.float32, device=codes.device).index_add_(
        0, flat, torch.ones(flat.shape, dtype=torch.float32, device=codes.device))


def usage_stats(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """``perplexity`` = exp(entropy) of the code distribution (1 .. K) and ``usage`` = fraction
    of codes used at least once, from ``counts (K,)``."""
    total = counts.sum().clamp(min=1.0)
    p = counts / total
    logp = torch.log(p.clamp(min=1e-30))
    entropy = -(p * logp).sum()
    return {"perplexity": torch.exp(entropy), "usage": (counts > 0).float().mean()}


def masked_mean(err: torch.Tensor, sample_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``err (B, ...)``; with ``sample_mask (B,)`` only over the kept batch items."""
    if sample_mask is None:
        return err.mean()
    per_item = err.reshape(err.shape[0], -1).mean(dim=1)
    return (per_item * sample_mask).sum() / sample_mask.sum().clamp(min=1.0)
