"""Binary spherical quantization (Zhao, Xiong, Kraehenbuehl 2024, "BSQ-ViT") (MLX).

``x (B, F, D)`` -> [``in_proj`` D -> L] -> ``u = v / |v|`` -> ``q = sign(u) / sqrt(L)``
(straight-through) -> [``out_proj`` L -> D]. ``sign(0)`` is -1. The ``2^L`` codes are the
corners of the hypercube on the unit sphere, so there is no codebook to learn or to collapse.

Entropy regulariser (the paper's soft entropy, Eq. 7-8): a frame's soft code distribution is
``p(c | u) ~ exp(2 tau <u, c>)`` over corners ``c``. The ``L`` bits are split into ``G`` groups of
``g`` bits (``L = 18``: 2 x 9, ``L = 36``: 4 x 9) and each group's ``2^g`` corners are enumerated:

* per-sample entropy ``E_u[ sum_groups H(p_group(. | u)) ]`` (exact: corners factorise),
* codebook entropy ``sum_groups H(E_u[p_group(. | u)])`` (the group-wise approximation),
* ``entropy_penalty = gamma0 * per_sample - gamma * codebook``;
* ``loss = commitment_weight * mean |q - u|^2 + zeta * entropy_penalty / tau``.

Integer codes: bit ``i`` is 1 where ``u_i > 0``; each int32 code packs ``code_bits`` consecutive
bits, the first bit most significant (BSQ-ViT's basis), giving codes ``(B, L / code_bits, F)``.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.errors import CodesError
from mlx_speech.layers.activations import exp_fast
from mlx_speech.quantize.codebook import l2_normalize
from mlx_speech.quantize.codes import check_codes, check_latents
from mlx_speech.specs.quantize import BSQSpec


class BSQOutput(NamedTuple):
    quantized: mx.array  # (B, F, D)
    codes: mx.array  # (B, L / code_bits, F) int32
    loss: mx.array  # scalar: commitment + entropy terms, weighted
    losses: dict[str, mx.array]  # commitment, per_sample_entropy, codebook_entropy, entropy_penalty


def group_corners(group_size: int) -> np.ndarray:
    """``(2^g, g)`` float32 corners in {-1, +1}; row ``j`` is the binary expansion of ``j``,
    most significant bit first, with 0 -> -1."""
    rows = list(itertools.product((-1.0, 1.0), repeat=group_size))
    return np.asarray(rows, dtype=np.float32).reshape(2 ** group_size, group_size)


class BinarySphericalQuantizer(nn.Module):
    """BSQ of ``(B, F, dim)`` latents into ``bits`` bits per frame (see module docstring).

    Args:
        dim: latent width ``D``; ``in_proj`` / ``out_proj`` (with bias) when ``D != bits``.
        bits: code length ``L``.
        group_size: bits per entropy group ``g`` (divides ``L``).
        code_bits: bits per int32 code (divides ``L``, at most 31); None means ``L``.
        inv_temperature: ``tau`` of the soft code distribution.
        gamma0, gamma, zeta: entropy weights (per-sample, codebook, whole penalty).
        commitment_weight: factor of the commitment loss.
    """

    def __init__(self, *, dim: int, bits: int, group_size: int, code_bits: int | None = None,
                 inv_temperature: float = 1.0, gamma0: float = 1.0, gamma: float = 1.0,
                 zeta: float = 1.0, commitment_weight: float = 0.25) -> None:
        super().__init__()
        spec = BSQSpec(dim=dim, bits=bits, group_size=group_size, code_bits=code_bits,
                       inv_temperature=inv_temperature)
        spec.validate()
        self.dim = dim
        self.bits = bits
        self.group_size = group_size
        self.code_bits = code_bits or bits
        self.inv_temperature = float(inv_temperature)
        self.gamma0, self.gamma, self.zeta = float(gamma0), float(gamma), float(zeta)
        self.commitment_weight = float(commitment_weight)
        if dim != bits:
            self.in_proj = nn.Linear(dim, bits)
            self.out_proj = nn.Linear(bits, dim)
        self._corners = mx.array(group_corners(group_size))
        self._weights = mx.array([2 ** (self.code_bits - 1 - j) for j in range(self.code_bits)],
                                 dtype=mx.int32)

    def _extra_repr(self) -> str:
        return f"dim={self.dim}, bits={self.bits}, group_size={self.group_size}"

    @property
    def num_codebooks(self) -> int:
        return self.bits // self.code_bits

    @property
    def codebook_sizes(self) -> list[int]:
        return [2 ** self.code_bits] * self.num_codebooks

    def project_in(self, x: mx.array) -> mx.array:
        return self.in_proj(x) if "in_proj" in self else x

    def project_out(self, z: mx.array) -> mx.array:
        return self.out_proj(z) if "out_proj" in self else z

    # -- bits <-> integers ------------------------------------------------------------------
    def bits_to_codes(self, bits: mx.array) -> mx.array:
        """``bits (B, F, L)`` in {0, 1} -> codes ``(B, L / code_bits, F)`` int32."""
        b, f, _ = bits.shape
        grouped = bits.astype(mx.int32).reshape(b, f, self.num_codebooks, self.code_bits)
        return (grouped * self._weights).sum(axis=-1).astype(mx.int32).transpose(0, 2, 1)

    def codes_to_bits(self, codes: mx.array) -> mx.array:
        """codes ``(B, K, F)`` -> ``bits (B, F, K * code_bits)`` int32 in {0, 1}."""
        b, k, f = codes.shape
        shifts = mx.arange(self.code_bits - 1, -1, -1, dtype=mx.int32)
        bits = mx.bitwise_and(mx.right_shift(codes.transpose(0, 2, 1)[..., None], shifts), 1)
        return bits.reshape(b, f, k * self.code_bits)

    # -- quantization -----------------------------------------------------------------------
    def _sphere(self, x: mx.array) -> mx.array:
        return l2_normalize(self.project_in(x).astype(mx.float32))

    def entropy_terms(self, u: mx.array) -> tuple[mx.array, mx.array]:
        """Per-sample and codebook entropies (nats) of unit vectors ``u (..., L)``."""
        n = math.prod(u.shape[:-1])
        groups = u.reshape(n, self.bits // self.group_size, self.group_size)
        logits = (2.0 * self.inv_temperature / math.sqrt(self.bits)) * (groups @ self._corners.T)
        # a log-softmax through exp_fast (arguments <= 0 after the max): MLX's CPU exp is a
        # scalar loop, and these are 2^g values per group and frame
        shifted = logits - mx.stop_gradient(logits.max(axis=-1, keepdims=True))
        e = exp_fast(shifted)
        total = e.sum(axis=-1, keepdims=True)
        p = e / total
        logp = shifted - mx.log(total)
        per_sample = -(p * logp).sum(axis=-1).sum(axis=-1).mean()
        avg = p.mean(axis=0)
        codebook = -(avg * mx.log(mx.maximum(avg, 1e-30))).sum()
        return per_sample, codebook

    def encode(self, x: mx.array) -> mx.array:
        """Codes ``(B, L / code_bits, F)`` int32 of ``x (B, F, D)``."""
        check_latents(x, self.dim, "BinarySphericalQuantizer.encode")
        return self.bits_to_codes(self._sphere(x) > 0)

    def decode(self, codes: mx.array) -> mx.array:
        """Latents ``(B, F, D)`` of codes ``(B, L / code_bits, F)`` (all of them)."""
        codes = check_codes(codes, self.codebook_sizes, "BinarySphericalQuantizer.decode")
        if codes.shape[1] != self.num_codebooks:
            raise CodesError(f"BinarySphericalQuantizer.decode: expected {self.num_codebooks} "
                             f"codes per frame, got {codes.shape[1]}")
        bits = self.codes_to_bits(codes).astype(mx.float32)
        return self.project_out((2.0 * bits - 1.0) / math.sqrt(self.bits))

    def __call__(self, x: mx.array) -> BSQOutput:
        """Quantize ``x (B, F, D)``; the loss terms are computed in every mode."""
        check_latents(x, self.dim, "BinarySphericalQuantizer")
        u = self._sphere(x)
        q = mx.where(u > 0, 1.0, -1.0) / math.sqrt(self.bits)
        commit = ((u - mx.stop_gradient(q)) ** 2).sum(axis=-1).mean()
        per_sample, codebook = self.entropy_terms(u)
        penalty = self.gamma0 * per_sample - self.gamma * codebook
        loss = self.commitment_weight * commit + self.zeta * penalty / self.inv_temperature
        codes = self.bits_to_codes(mx.stop_gradient(u) > 0)
        q_st = u + mx.stop_gradient(q - u) if self.training else q
        return BSQOutput(self.project_out(q_st.astype(x.dtype)), codes, loss,
                         {"commitment": commit, "per_sample_entropy": per_sample,
                          "codebook_entropy": codebook, "entropy_penalty": penalty})


def build_bsq(spec: BSQSpec) -> BinarySphericalQuantizer:
    return BinarySphericalQuantizer(dim=spec.dim, bits=spec.bits, group_size=spec.group_size,
                                    code_bits=spec.code_bits, inv_temperature=spec.inv_temperature,
                                    gamma0=spec.gamma0, gamma=spec.gamma, zeta=spec.zeta,
                                    commitment_weight=spec.commitment_weight)
