"""MLX's CPU buffer cache, raised for codecs that run long convolution stacks (MLX).

MLX's CPU allocator keeps at most 32 MiB of freed buffers by default, so every activation of a
long batch call larger than that is a fresh ``mmap`` whose pages fault in again: a large share
of a codec's batch time on the CPU (docs/performance.md, "Mimi streaming"; DAC's Snake CNN
alike). Building such a model on the CPU raises the process's cache limit to
:data:`CPU_CACHE_BYTES` (never lowers it): peak memory is unchanged, freed buffers are reused
instead of returned to the OS. Other devices are left alone.
"""

from __future__ import annotations

import mlx.core as mx

CPU_CACHE_BYTES = 1 << 30


def ensure_cpu_cache(limit: int = CPU_CACHE_BYTES) -> None:
    """Raise MLX's buffer-cache limit to ``limit`` bytes on the CPU backend (see module doc)."""
    if mx.default_device() != mx.cpu:
        return
    previous = mx.set_cache_limit(limit)
    if previous > limit:
        mx.set_cache_limit(previous)
