"""Inference view of Mimi's split RVQ: folded codebooks cached between calls (MLX).

The shared :class:`~mlx_speech.quantize.rvq.SplitResidualVQ` folds every EMA codebook
(``embedding_sum / clamp(cluster_usage, eps)``, 2048 x 256 per level) and its squared norms on
each call. For streaming, where every 80 ms frame calls the quantizer, that fold is most of
the quantizer's time, so :class:`FrozenCodebooks` keeps the folded tables (one
``(K, d)`` array per level) and refolds only when a level's EMA arrays are replaced (MLX
arrays are immutable: loading weights or a training step assigns new objects, which the cache
compares by identity). The level loops are compiled (one graph per level count and shape).

The arithmetic is the shared code's: codes come from ``argmin(|c|^2 - 2 x.c)`` computed with
the same ``addmm`` (``mlx_speech.quantize.codebook.nearest``), each level quantizes the running
residual, decoding sums the code vectors and applies the group's ``out_proj``;
``tests/test_mimi_model.py`` checks codes and latents against the shared quantizer bit for bit.
Eval-mode inference only: training goes through the quantizer itself.
"""

from __future__ import annotations

import functools

import mlx.core as mx

from mlx_speech.quantize.rvq import ResidualVQ, SplitResidualVQ


# Each level's table is its own array (not a slice of one stacked (L, K, d) array): with a
# slice, both the scores GEMM and the gather copied the level's 2 MB first, on every level and
# streaming frame (docs/performance.md, "Quantizers").
@functools.cache
def _encode_levels(num_levels: int):
    def run(residual: mx.array, books: list[mx.array], norms: list[mx.array]) -> mx.array:
        # residual (N, d) float32 -> codes (num_levels, N) int32
        codes = []
        for i in range(num_levels):
            scores = mx.addmm(norms[i][None, :], residual, books[i].T, alpha=-2.0)
            c = mx.argmin(scores, axis=-1).astype(mx.int32)
            codes.append(c)
            if i + 1 < num_levels:
                residual = residual - mx.take(books[i], c, axis=0)
        return mx.stack(codes, axis=0)

    return mx.compile(run)


@functools.cache
def _decode_levels(num_levels: int):
    def run(codes: mx.array, books: list[mx.array]) -> mx.array:
        # codes (B, n, F) -> sum of code vectors (B, F, d)
        total = mx.take(books[0], codes[:, 0], axis=0)
        for i in range(1, num_levels):
            total = total + mx.take(books[i], codes[:, i], axis=0)
        return total

    return mx.compile(run)


class GroupTables:
    """Folded codebooks ``(K, d)`` and squared norms ``(K,)`` of one ``ResidualVQ``, a list
    over levels (each its own buffer, see above)."""

    def __init__(self, group: ResidualVQ) -> None:
        self.group = group
        self._key: list[tuple[mx.array, mx.array]] | None = None
        self.codebooks: list[mx.array] = []
        self.norms: list[mx.array] = []

    def refresh(self) -> None:
        key = [(lv.codebook.embedding_sum, lv.codebook.cluster_usage) for lv in self.group.levels]
        if self._key is not None and all(a is c and b is d for (a, b), (c, d)
                                         in zip(key, self._key)):
            return
        self.codebooks = [lv.codebook.codebook for lv in self.group.levels]
        self.norms = [(b * b).sum(axis=-1) for b in self.codebooks]
        mx.eval(self.codebooks, self.norms)
        self._key = key

    def encode(self, x: mx.array, num_levels: int) -> mx.array:
        """Codes ``(B, n, F)`` int32 of latents ``x (B, F, D)`` with the first ``n`` levels."""
        B, F, _ = x.shape
        residual = self.group.project_in(x).astype(mx.float32).reshape(B * F, -1)
        codes = _encode_levels(num_levels)(residual, self.codebooks[:num_levels],
                                           self.norms[:num_levels])
        return codes.reshape(num_levels, B, F).transpose(1, 0, 2)

    def decode(self, codes: mx.array) -> mx.array:
        """Latents ``(B, F, D)`` of codes ``(B, n, F)`` (n <= levels)."""
        n = codes.shape[1]
        return self.group.project_out(_decode_levels(n)(codes, self.codebooks[:n]))


class FrozenCodebooks:
    """``encode`` / ``decode`` of a :class:`SplitResidualVQ` with cached folded codebooks."""

    def __init__(self, quantizer: SplitResidualVQ) -> None:
        self.quantizer = quantizer
        self.first = GroupTables(quantizer.rvq_first)
        self.rest = GroupTables(quantizer.rvq_rest)

    def encode(self, latents: mx.array, num_codebooks: int) -> mx.array:
        """Codes ``(B, K, F)`` int32 of latents ``(B, F, D)``, ``K = num_codebooks``."""
        n_first = min(num_codebooks, self.quantizer.rvq_first.num_codebooks)
        self.first.refresh()
        codes = self.first.encode(latents, n_first)
        if num_codebooks > n_first:
            self.rest.refresh()
            codes = mx.concatenate(
                [codes, self.rest.encode(latents, num_codebooks - n_first)], axis=1)
        return codes

    def decode(self, codes: mx.array) -> mx.array:
        """Latents ``(B, F, D)`` float32 of checked codes ``(B, K, F)``."""
        n_first = self.quantizer.rvq_first.num_codebooks
        self.first.refresh()
        out = self.first.decode(codes[:, :n_first])
        if codes.shape[1] > n_first:
            self.rest.refresh()
            out = out + self.rest.decode(codes[:, n_first:])
        return out
