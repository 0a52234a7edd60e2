"""mlx-speech: Apple-Silicon-first speech models in MLX, with a PyTorch mirror (torch_ref).

Importing this package does not import mlx. On Linux it first arranges for MLX to use an
optimised BLAS (see :mod:`mlx_speech._blas`); that must happen before ``mlx`` is imported. On
Linux x86-64 it also has MLX build its CPU kernels with AVX2 (see :mod:`mlx_speech._jit`), and
on CPU-only Linux installs it makes MLX's evaluation order breadth-first, so work on several CPU
streams runs side by side (see :mod:`mlx_speech._evalorder`).
"""

from mlx_speech import _blas, _evalorder, _jit

_blas.ensure()
_jit.ensure()
_evalorder.ensure()

__version__ = "0.1.0"
