"""The one parity helper used by every MLX-vs-torch_ref test and by bench scripts.

``build_pair`` builds both sides from the same constructor arguments, seeds MLX, and copies the
MLX weights into torch_ref through :mod:`mlx_speech.weights.core` (strict, names identical).
``compare`` reports max abs / rel error and asserts tolerances with a message naming the tensor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from mlx_speech.weights.mlx import mlx_to_torch_state


@dataclasses.dataclass(frozen=True)
class ParityReport:
    name: str
    max_abs: float
    max_rel: float
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name}: max_abs={self.max_abs:.3e} max_rel={self.max_rel:.3e} shape={self.shape}"


def build_pair(mlx_factory: Callable[..., Any], torch_factory: Callable[..., Any], *,
               seed: int = 0, randomize: Callable[[Any], None] | None = None,
               **kwargs: Any) -> tuple[Any, Any]:
    """``(mlx_module, torch_module)`` with identical weights.

    ``randomize(mlx_module)`` may overwrite weights before the copy (e.g. to give zero-initialised
    parameters such as layer scales or adapter up-projections non-trivial values).
    """
    import mlx.core as mx  # noqa: PLC0415
    import torch  # noqa: PLC0415

    mx.random.seed(seed)
    torch.manual_seed(seed)
    m = mlx_factory(**kwargs)
    if randomize is not None:
        randomize(m)
    t = torch_factory(**kwargs)
    copy_mlx_to_torch(m, t)
    if hasattr(m, "eval"):
        m.eval()
    t.eval()
    return m, t


def randomize_all(module: Any, *, scale: float = 0.1, seed: int = 1) -> None:
    """Replace every parameter of an MLX module with N(0, scale^2) noise (deterministic)."""
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.weights.core import flatten_tree  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    flat = flatten_tree(module.parameters())
    module.load_weights([(k, mx.array((rng.standard_normal(v.shape) * scale).astype(np.float32))
                          .astype(v.dtype)) for k, v in flat.items()])


def to_numpy(x: Any) -> np.ndarray:
    """numpy float64 view of an MLX array, torch tensor or numpy array."""
    if hasattr(x, "detach"):
        return x.detach().cpu().double().numpy()
    try:
        import mlx.core as mx  # noqa: PLC0415

        if isinstance(x, mx.array):
            return np.array(x.astype(mx.float32)).astype(np.float64)
    except ImportError:
        pass
    return np.asarray(x, dtype=np.float64)


def compare(mlx_out: Any, torch_out: Any, *, atol: float = 1e-5, rtol: float = 0.0,
            name: str = "output", transpose_torch: tuple[int, ...] | None = None) -> ParityReport:
    """Assert ``|mlx - torch| <= atol + rtol * |torch|`` elementwise; return the error report.

    ``transpose_torch`` permutes the torch output first (e.g. (0, 2, 1) for (B, C, T) -> (B, T, C)).
    """
    a = to_numpy(mlx_out)
    b = to_numpy(torch_out)
    if transpose_torch is not None:
        b = b.transpose(transpose_torch)
    if a.shape != b.shape:
        raise AssertionError(f"{name}: shape mismatch mlx {a.shape} vs torch {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise AssertionError(f"{name}: non-finite values (mlx {np.isfinite(a).all()}, torch {np.isfinite(b).all()})")
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(b), 1e-12)
    report = ParityReport(name=name, max_abs=float(diff.max(initial=0.0)),
                          max_rel=float(rel.max(initial=0.0)), shape=tuple(a.shape))
    ok = np.all(diff <= atol + rtol * np.abs(b))
    if not ok:
        raise AssertionError(f"parity failed (atol={atol}, rtol={rtol}): {report}")
    return report


def copy_mlx_to_torch(mlx_module: Any, torch_module: Any) -> Any:
    """Copy an MLX module's weights into its torch_ref twin (strict: same names, all keys)."""
    from torch_ref.weights import load_torch_state  # noqa: PLC0415

    return load_torch_state(torch_module, mlx_to_torch_state(mlx_module),
                            where=f"MLX {type(mlx_module).__name__}")
