"""What ``mlx-speech info`` reports: versions, MLX device / BLAS, memory."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

_PACKAGES = ("mlx-speech", "mlx", "mlx-cpu", "mlx-metal", "mlx-cuda", "numpy", "torch", "soundfile",
             "librosa", "soxr", "safetensors", "scipy-openblas32", "mlx-lm", "transformers")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def system_info() -> dict[str, Any]:
    """A flat dict of facts about this installation (imports mlx; never torch)."""
    import psutil  # noqa: PLC0415

    from mlx_speech import _accelerate, _blas, _evalorder, _jit  # noqa: PLC0415

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
    }
    for name in _PACKAGES:
        v = _version(name)
        if v is not None:
            info[name] = v
    try:
        import mlx.core as mx  # noqa: PLC0415

        info["mlx_device"] = str(mx.default_device())
        info["metal_available"] = bool(mx.metal.is_available())
        cuda = getattr(mx, "cuda", None)
        info["cuda_available"] = bool(cuda.is_available()) if cuda is not None else False
    except ImportError as exc:
        info["mlx_device"] = f"unavailable ({exc})"
    accel = _accelerate.status()
    info["accelerated"] = accel["applied"]
    info["accelerated_detail"] = accel["detail"]
    blas = _blas.status()
    info["blas"] = blas["backend"]
    info["blas_detail"] = blas["detail"]
    if blas.get("loaded"):
        info["blas_loaded"] = blas["loaded"]
    if blas["backend"] == "openblas":
        info["openblas_thread_timeout"] = _blas.thread_timeout()
        info["few_rows_sgemm"] = blas.get("few_rows_sgemm")
    jit = _jit.status()
    info["cpu_kernels"] = jit["mode"]
    info["cpu_kernels_detail"] = jit["detail"]
    info["mlx_bfs_max_width"] = _evalorder.status()  # None: MLX's default (20)
    vm = psutil.virtual_memory()
    info["memory_total_gib"] = round(vm.total / 2**30, 1)
    info["memory_available_gib"] = round(vm.available / 2**30, 1)
    info["cpu_count"] = psutil.cpu_count(logical=True)
    return info
