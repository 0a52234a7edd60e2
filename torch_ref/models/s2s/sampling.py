"""Token sampling from logits (torch): the twin of ``mlx_speech.models.s2s.sampling`` (its
docstring is the contract: greedy at temperature 0, else temperature, top-k, top-p and a
Gumbel-max draw from explicit uniforms, so both frameworks pick the same tokens for the same
uniforms). :func:`sample` takes its uniforms from ``generator`` (a seeded
``torch.Generator`` repeats a draw; None: torch's global generator)."""

from __future__ import annotations

import torch

from mlx_speech.models.s2s.spec import check_sampling

_U_MIN, _U_MAX = 1e-12, 1.0 - 1e-7


def filter_logits(x: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``x (..., V)`` float32 with the entries outside top-k / top-p set to ``-inf``."""
    V = x.shape[-1]
    neg = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    if 0 < top_k < V:
        kth = torch.sort(x, dim=-1).values[..., V - top_k: V - top_k + 1]
        x = torch.where(x >= kth, x, neg)
    if top_p < 1.0:
        p = torch.softmax(x, dim=-1)
        desc = torch.sort(p, dim=-1, descending=True).values
        keep = ((torch.cumsum(desc, dim=-1) - desc) < top_p).sum(dim=-1, keepdim=True)
        smallest = torch.gather(desc, -1, keep.clamp(min=1) - 1)
        x = torch.where(p >= smallest, x, neg)
    return x


def gumbel(u: torch.Tensor) -> torch.Tensor:
    """``-log(-log u)`` of uniforms ``u``, clipped into (0, 1)."""
    u = u.float().clamp(_U_MIN, _U_MAX)
    return -torch.log(-torch.log(u))


def sample_with_uniform(logits: torch.Tensor, u: torch.Tensor, *, temperature: float,
                        top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Tokens ``(...)`` int32 of ``logits (..., V)`` drawn with the uniforms ``u (..., V)``."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1).to(torch.int32)
    x = filter_logits(logits.float() / temperature, top_k=top_k, top_p=top_p)
    return (x + gumbel(u)).argmax(dim=-1).to(torch.int32)


def sample(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Tokens ``(...)`` int32 drawn from ``logits (..., V)``; greedy when ``temperature == 0``."""
    if temperature == 0:
        return sample_with_uniform(logits, logits, temperature=0.0, top_k=top_k, top_p=top_p)
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    return sample_with_uniform(logits, u, temperature=temperature, top_k=top_k, top_p=top_p)
