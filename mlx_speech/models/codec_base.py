"""What every codec model reads from its spec: rates, frame size, codebook counts (framework-free).

The MLX and torch_ref models of each codec family (Mimi, DAC, ...) derive from
:class:`SpecCodec`, so the sizes the file pipeline uses (``pipelines/codec.py``) and the check
of a requested number of codebooks are written once. A family's spec provides
``sample_rate``, ``frame_rate``, ``frame_size``, ``total_codebooks`` and ``num_codebooks``
(the default number ``encode`` uses), and accepts ``replace(num_codebooks=...)``; the model
provides ``codebook_size`` (the largest level's), and overrides :attr:`codebook_sizes` when its
levels differ and :attr:`streamable` when it cannot run in pieces.
"""

from __future__ import annotations

from typing import Any

from mlx_speech.errors import CodesError


class SpecCodec:
    """Mixin: sizes read from ``self.spec``; ``CODEC_NAME`` names the model in messages."""

    CODEC_NAME = "codec"
    spec: Any

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.spec.frame_rate

    @property
    def frame_size(self) -> int:
        return self.spec.frame_size

    @property
    def total_codebooks(self) -> int:
        return self.spec.total_codebooks

    @property
    def num_codebooks(self) -> int:
        return self.spec.num_codebooks

    @property
    def codebook_sizes(self) -> list[int]:
        """Codes per level; every level has ``codebook_size`` unless the model says otherwise."""
        return [self.codebook_size] * self.total_codebooks

    @property
    def streamable(self) -> bool:
        """Whether ``encode_step`` / ``decode_step`` give the batch result (the file pipeline
        runs every codec in pieces)."""
        return True

    def set_num_codebooks(self, num_codebooks: int) -> None:
        """Change how many codebooks ``encode`` / ``encode_step`` use by default."""
        self.spec = self.spec.replace(num_codebooks=self._k(num_codebooks))

    def _k(self, num_codebooks: int | None) -> int:
        """``num_codebooks`` (None: the default) checked to be an int in ``1..total``."""
        k = self.spec.num_codebooks if num_codebooks is None else num_codebooks
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.total_codebooks:
            raise CodesError(f"{self.CODEC_NAME}: num_codebooks must be an int in "
                             f"1..{self.total_codebooks}, got {num_codebooks!r}")
        return k
