"""Binary spherical quantization (BSQ-ViT) (torch mirror of ``mlx_speech/quantize/bsq.py``).

``u = normalize(in_proj(x))``, ``q = sign(u) / sqrt(L)`` (``sign(0) = -1``), straight-through,
``out_proj``. Entropy terms are enumerated over the ``2^g`` corners of each group of ``g`` bits:
per-sample ``E_u[sum_groups H(p(.|u))]``, codebook ``sum_groups H(E_u[p(.|u)])``, with
``p(c|u) ~ exp(2 tau <u, c> / sqrt(L))``; ``loss = commitment_weight * mean|q - u|^2 +
zeta * (gamma0 * per_sample - gamma * codebook) / tau``. Codes pack ``code_bits`` bits per int32,
first bit most significant: ``(B, L / code_bits, F)``.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mlx_speech.errors import CodesError
from mlx_speech.specs.quantize import BSQSpec
from torch_ref.quantize.codebook import l2_normalize
from torch_ref.quantize.codes import check_codes, check_latents


class BSQOutput(NamedTuple):
    quantized: torch.Tensor  # (B, F, D)
    codes: torch.Tensor  # (B, L / code_bits, F) int32
    loss: torch.Tensor  # scalar: commitment + entropy terms, weighted
    losses: dict[str, torch.Tensor]  # commitment, per_sample_entropy, codebook_entropy, entropy_penalty


def group_corners(group_size: int) -> np.ndarray:
    """``(2^g, g)`` float32 corners in {-1, +1}; row ``j`` is ``j`` in binary, MSB first."""
    rows = list(itertools.product((-1.0, 1.0), repeat=group_size))
    return np.asarray(rows, dtype=np.float32).reshape(2 ** group_size, group_size)


class BinarySphericalQuantizer(nn.Module):
    """BSQ of ``(B, F, dim)`` latents into ``bits`` bits per frame; see the MLX twin."""

    def __init__(self, *, dim: int, bits: int, group_size: int, code_bits: int | None = None,
                 inv_temperature: float = 1.0, gamma0: float = 1.0, gamma: float = 1.0,
                 zeta: float = 1.0, commitment_weight: float = 0.25) -> None:
        super().__init__()
        BSQSpec(dim=dim, bits=bits, group_size=group_size, code_bits=code_bits,
                inv_temperature=inv_temperature).validate()
        self.dim = dim
        self.bits = bits
        self.group_size = group_size
        self.code_bits = code_bits or bits
        self.inv_temperature = float(inv_temperature)
        self.gamma0, self.gamma, self.zeta = float(gamma0), float(gamma), float(zeta)
        self.commitment_weight = float(commitment_weight)
        projected = dim != bits
        self.in_proj = nn.Linear(dim, bits) if projected else None
        self.out_proj = nn.Linear(bits, dim) if projected else None
        self.register_buffer("_corners", torch.from_numpy(group_corners(group_size)), persistent=False)
        self.register_buffer("_weights", torch.tensor(
            [2 ** (self.code_bits - 1 - j) for j in range(self.code_bits)], dtype=torch.int32),
            persistent=False)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, bits={self.bits}, group_size={self.group_size}"

    @property
    def num_codebooks(self) -> int:
        return self.bits // self.code_bits

    @property
    def codebook_sizes(self) -> list[int]:
        return [2 ** self.code_bits] * self.num_codebooks

    def project_in(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_proj(x) if self.in_proj is not None else x

    def project_out(self, z: torch.Tensor) -> torch.Tensor:
        return self.out_proj(z) if self.out_proj is not None else z

    # -- bits <-> integers ------------------------------------------------------------------
    def bits_to_codes(self, bits: torch.Tensor) -> torch.Tensor:
        """``bits (B, F, L)`` in {0, 1} -> codes ``(B, L / code_bits, F)`` int32."""
        b, f, _ = bits.shape
        grouped = bits.to(torch.int32).reshape(b, f, self.num_codebooks, self.code_bits)
        return (grouped * self._weights).sum(dim=-1).to(torch.int32).transpose(1, 2)

    def codes_to_bits(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``(B, K, F)`` -> ``bits (B, F, K * code_bits)`` int32 in {0, 1}."""
        b, k, f = codes.shape
        shifts = torch.arange(self.code_bits - 1, -1, -1, dtype=torch.int32, device=codes.device)
        bits = (codes.to(torch.int32).transpose(1, 2)[..., None] >> shifts) & 1
        return bits.reshape(b, f, k * self.code_bits)

    # -- quantization -----------------------------------------------------------------------
    def _sphere(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.project_in(x).float())

    def entropy_terms(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample and codebook entropies (nats) of unit vectors ``u (..., L)``."""
        n = math.prod(u.shape[:-1])
        groups = u.reshape(n, self.bits // self.group_size, self.group_size)
        logits = (2.0 * self.inv_temperature / math.sqrt(self.bits)) * (groups @ self._corners.T)
        logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        p = torch.exp(logp)
        per_sample = -(p * logp).sum(dim=-1).sum(dim=-1).mean()
        avg = p.mean(dim=0)
        codebook = -(avg * torch.log(avg.clamp(min=1e-30))).sum()
        return per_sample, codebook

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, L / code_bits, F)`` int32 of ``x (B, F, D)``."""
        check_latents(x, self.dim, "BinarySphericalQuantizer.encode")
        return self.bits_to_codes(self._sphere(x) > 0)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, F, D)`` of codes ``(B, L / code_bits, F)`` (all of them)."""
        codes = check_codes(codes, self.codebook_sizes, "BinarySphericalQuantizer.decode")
        if codes.shape[1] != self.num_codebooks:
            raise CodesError(f"BinarySphericalQuantizer.decode: expected {self.num_codebooks} "
                             f"codes per frame, got {codes.shape[1]}")
        bits = self.codes_to_bits(codes).float()
        return self.project_out((2.0 * bits - 1.0) / math.sqrt(self.bits))

    def forward(self, x: torch.Tensor) -> BSQOutput:
        """Quantize ``x (B, F, D)``; the loss terms are computed in every mode."""
        check_latents(x, self.dim, "BinarySphericalQuantizer")
        u = self._sphere(x)
        q = torch.where(u > 0, 1.0, -1.0) / math.sqrt(self.bits)
        commit = ((u - q.detach()) ** 2).sum(dim=-1).mean()
        per_sample, codebook = self.entropy_terms(u)
        penalty = self.gamma0 * per_sample - self.gamma * codebook
        loss = self.commitment_weight * commit + self.zeta * penalty / self.inv_temperature
        codes = self.bits_to_codes(u.detach() > 0)
        q_st = u + (q - u).detach() if self.training else q
        return BSQOutput(self.project_out(q_st.to(x.dtype)), codes, loss,
                         {"commitment": commit, "per_sample_entropy": per_sample,
                          "codebook_entropy": codebook, "entropy_penalty": penalty})


def build_bsq(spec: BSQSpec) -> BinarySphericalQuantizer:
    return BinarySphericalQuantizer(dim=spec.dim, bits=spec.bits, group_size=spec.group_size,
                                    code_bits=spec.code_bits, inv_temperature=spec.inv_temperature,
                                    gamma0=spec.gamma0, gamma=spec.gamma, zeta=spec.zeta,
                                    commitment_weight=spec.commitment_weight)
