"""Shared test fixtures. The Linux-CPU accelerations are switched on here, before any test
module imports mlx, so the suite runs the paths our users run (``mlx_speech.accelerate``)."""

import os
from pathlib import Path

import mlx_speech

mlx_speech.accelerate()

import numpy as np
from mlx_speech.audio.synth import speechlike  # noqa: F401
import pytest

# Subprocesses (`python -m cli ...`, mlx.launch, torchrun) import this checkout's modules
# whatever the current directory or where an earlier editable install points.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test, restored after it: the test machine is shared,
    and tiny torch ops stall on contended threads (modules that compare with torch_ref use it
    through ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
