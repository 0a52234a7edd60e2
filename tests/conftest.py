"""Shared test fixtures and the suite's device.

Device: ``MLX_SPEECH_TEST_DEVICE=cpu`` (the default) or ``gpu``. With ``gpu`` the suite
* computes fp32 as fp32 (``mlx_speech.precision.fp32_parity``: TF32 off in MLX and torch), set
  here at the top, before any test module imports mlx or touches the GPU;
* makes MLX's GPU the default device (``mx.set_default_device(mx.gpu)``) and gives torch_ref
  tests CUDA where present (the ``torch_device`` fixture);
* skips tests marked ``cpu_only`` (the Linux-CPU accelerations: BLAS, kernel flags, evaluation
  order, CPU shards), which test nothing on a GPU;
* refuses to start, with one line, where MLX has no GPU: a GPU run that silently fell back to
  the CPU would report a GPU pass that never happened.

The Linux-CPU accelerations are switched on here, before any test module imports mlx, so the
suite runs the paths our users run (``mlx_speech.accelerate``; a no-op with mlx-cuda)."""

import os
from pathlib import Path

import mlx_speech
from mlx_speech.precision import fp32_parity

DEVICES = ("cpu", "gpu")
TEST_DEVICE = os.environ.get("MLX_SPEECH_TEST_DEVICE", "").strip().lower() or "cpu"
PARITY = fp32_parity() if TEST_DEVICE == "gpu" else None

mlx_speech.accelerate()

import numpy as np
from mlx_speech.audio.synth import speechlike  # noqa: F401
import pytest

# Subprocesses (`python -m cli ...`, mlx.launch, torchrun) import this checkout's modules
# whatever the current directory or where an earlier editable install points.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])


def pytest_configure(config):
    """Validate ``MLX_SPEECH_TEST_DEVICE`` and, for ``gpu``, select MLX's GPU or stop."""
    if TEST_DEVICE not in DEVICES:
        raise pytest.UsageError(f"MLX_SPEECH_TEST_DEVICE={TEST_DEVICE!r}: expected cpu or gpu")
    if TEST_DEVICE == "gpu":
        import mlx.core as mx

        if not mx.is_available(mx.gpu):
            raise pytest.UsageError(
                "MLX_SPEECH_TEST_DEVICE=gpu but MLX has no GPU here (mlx-cpu build, or no "
                "Metal/CUDA device); unset it to run the suite on the CPU")
        mx.set_default_device(mx.gpu)


def pytest_report_header(config):
    if TEST_DEVICE != "gpu":
        return "test device: cpu"
    import mlx.core as mx

    return f"test device: gpu (MLX {mx.default_device()}, torch {_torch_device_name()}; {PARITY})"


def pytest_collection_modifyitems(config, items):
    if TEST_DEVICE != "gpu":
        return
    skip = pytest.mark.skip(reason="cpu_only: a CPU-install feature, nothing to test on the GPU")
    for item in items:
        if item.get_closest_marker("cpu_only"):
            item.add_marker(skip)


def _torch_device_name() -> str:
    """``"cuda"`` when the suite runs on the GPU and torch sees CUDA, else ``"cpu"`` (a Mac
    runs MLX on Metal while torch_ref stays on the CPU)."""
    if TEST_DEVICE != "gpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def test_device() -> str:
    """``"cpu"`` or ``"gpu"``: the device MLX computes on in this run (for ``tolerance``)."""
    return TEST_DEVICE


@pytest.fixture(scope="session")
def torch_device():
    """The ``torch.device`` torch_ref tests should put their modules and inputs on: CUDA when
    the suite runs on the GPU and CUDA is present, else the CPU. Read results back with
    ``.detach().cpu().numpy()``."""
    torch = pytest.importorskip("torch")
    return torch.device(_torch_device_name())


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
