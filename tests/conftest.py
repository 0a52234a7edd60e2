"""Shared test fixtures. mlx_speech is imported first so MLX gets the optimised BLAS."""

import mlx_speech  # noqa: F401  (must precede any `import mlx`)
import numpy as np
from mlx_speech.audio.synth import speechlike  # noqa: F401
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
