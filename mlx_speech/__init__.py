"""mlx-speech: Apple-Silicon-first speech models in MLX, with a PyTorch mirror (torch_ref).

Importing this package does not import mlx. On Linux it first arranges for MLX to use an
optimised BLAS (see :mod:`mlx_speech._blas`); that must happen before ``mlx`` is imported.
"""

from mlx_speech import _blas

_blas.ensure()

__version__ = "0.1.0"
