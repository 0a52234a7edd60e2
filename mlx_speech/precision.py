"""The one precision policy: what "parity" means, how to get it on a GPU, and how close is close.

Contract
--------
* **Parity tests mean fp32 on both sides.** An MLX vs torch_ref (or vs upstream) comparison is
  only meaningful when neither side rounds its fp32 matmuls and convolutions through TF32. MLX's
  CUDA backend uses TF32 for fp32 matmul/conv by default (``MLX_ENABLE_TF32``), and so do torch's
  cuDNN convolutions (``torch.backends.cudnn.allow_tf32``). On an H200 that put 99 conv1d and 21
  attention parity cases 4e-4 to 1e-3 away from the fp32 reference (issue 19), and made the
  HiFi-GAN MLX and torch trainers disagree (loss 88.5725 vs 88.5608).
* :func:`fp32_parity` switches TF32 off on both sides. The test suite's setup
  (``tests/conftest.py``) calls it when the suite runs on a GPU; nothing else does.
* **User runs may keep TF32**: it is the faster default, and its error (about 5e-4 absolute on
  unit-scale data) is far below what audio models notice. Call :func:`fp32_parity` yourself (or
  set ``MLX_ENABLE_TF32=0``) when you need bit-for-bit-comparable fp32.
* :func:`tolerance` is the single table of ``(rtol, atol)`` per dtype and device; parity tests
  read it rather than spelling their own numbers.

Nothing happens at import (docs/ARCHITECTURE.md section 3): this module imports neither mlx nor
torch, and touches the environment only when :func:`fp32_parity` is called.
"""

from __future__ import annotations

import importlib.util
import os
import sys

#: The dtype both sides of a parity test compute in.
PARITY_DTYPE = "float32"

#: ``(rtol, atol)`` per (dtype, device). ``"tf32"`` is not a storage dtype: it is fp32 computed
#: with TF32 matmuls/convs (a GPU user run's default), listed so that comparisons of user runs
#: have a number too. Reasons for each entry:
#:
#: * float32, cpu: 1e-5 absolute, as the parity tests have always asserted on unit-scale data.
#: * float32, gpu (TF32 off): the same, plus 1e-5 relative, because GPU kernels reorder fp32
#:   reductions (split-K, tree sums) and the outputs are not all of unit scale.
#:   Provisional until the GPU suite has run with this table (see README, "Devices").
#: * tf32: the H200 measured 4e-4 to 1e-3 absolute against fp32 on unit data.
#: * float16 / bfloat16: 10 / 7 mantissa bits; these bound comparisons against an fp32 reference
#:   (the half-precision tests), not parity.
TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    ("float32", "cpu"): (0.0, 1e-5),
    ("float32", "gpu"): (1e-5, 1e-5),
    ("tf32", "cpu"): (1e-3, 2e-3),
    ("tf32", "gpu"): (1e-3, 2e-3),
    ("float16", "cpu"): (1e-2, 1e-2),
    ("float16", "gpu"): (1e-2, 1e-2),
    ("bfloat16", "cpu"): (5e-2, 5e-2),
    ("bfloat16", "gpu"): (5e-2, 5e-2),
}

_DTYPE_ALIASES = {"fp32": "float32", "f32": "float32", "float": "float32", "fp16": "float16",
                  "half": "float16", "f16": "float16", "bf16": "bfloat16"}


def _dtype_name(dtype: object) -> str:
    """``"float32"`` from ``"fp32"``, ``np.float32``, ``np.dtype("float32")``, ``mx.float32``
    or ``torch.float32`` (all spelled without importing any of them)."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "__name__", None) or str(dtype)
    name = name.rsplit(".", 1)[-1].strip("'>").lower()
    return _DTYPE_ALIASES.get(name, name)


def device_kind(device: object) -> str:
    """``"cpu"`` or ``"gpu"`` for ``"cpu"``, ``"gpu"``, ``"cuda"``, ``"cuda:1"``, ``"metal"``,
    ``"mps"``, ``mx.cpu`` / ``mx.gpu`` (``Device(gpu, 0)``) or a ``torch.device``.

    Raises ValueError for anything else, so a typo never silently selects the CPU table."""
    text = str(device).lower()
    if "cpu" in text:
        return "cpu"
    if any(word in text for word in ("gpu", "cuda", "metal", "mps")):
        return "gpu"
    raise ValueError(f"unknown device {device!r}: expected cpu, gpu, cuda, metal or mps")


def tolerance(dtype: object = PARITY_DTYPE, device: object = "cpu") -> tuple[float, float]:
    """``(rtol, atol)`` for comparing a result computed in ``dtype`` on ``device`` with an fp32
    reference, for ``numpy.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol)``.

    ``dtype`` and ``device`` take strings or any framework's objects (see :func:`_dtype_name`,
    :func:`device_kind`). Raises ValueError for a dtype without an entry (int dtypes compare
    exactly, not with a tolerance)."""
    key = (_dtype_name(dtype), device_kind(device))
    if key not in TOLERANCES:
        known = sorted({d for d, _ in TOLERANCES})
        raise ValueError(f"no tolerance for dtype {key[0]!r}: expected one of {known}")
    return TOLERANCES[key]


def fp32_parity() -> dict[str, object]:
    """Switch TF32 off in MLX and, on CUDA, in torch, so fp32 means fp32 on both sides.

    * Sets ``MLX_ENABLE_TF32=0`` in the environment. MLX's CUDA backend reads it when it first
      uses the GPU, so call this before any MLX GPU work (``tests/conftest.py`` does so at its
      top, before a test imports mlx). Harmless on Metal and CPU, which have no TF32 path.
    * If torch is installed and CUDA is available: ``torch.backends.cuda.matmul.allow_tf32`` and
      ``torch.backends.cudnn.allow_tf32`` set to False. torch is imported only then (it is found
      with ``importlib.util.find_spec`` first), never at this module's import.

    Returns what it set, for the caller's log. Calling it twice changes nothing more."""
    os.environ["MLX_ENABLE_TF32"] = "0"
    applied: dict[str, object] = {"MLX_ENABLE_TF32": "0"}
    torch = sys.modules.get("torch")
    if torch is None and importlib.util.find_spec("torch") is not None:
        import torch  # noqa: PLC0415  (only when asked, see the docstring)
    if torch is not None and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        applied.update({"torch.backends.cuda.matmul.allow_tf32": False,
                        "torch.backends.cudnn.allow_tf32": False})
    return applied
