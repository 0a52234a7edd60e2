"""The precision policy (mlx_speech/precision.py) and the suite's device switch (conftest.py):
one tolerance table, TF32 off only when asked, nothing at import, and a GPU run that cannot
silently become a CPU run."""

import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_speech import precision
from mlx_speech.precision import PARITY_DTYPE, device_kind, fp32_parity, tolerance

ROOT = Path(__file__).resolve().parents[1]


def test_parity_is_fp32_and_the_cpu_numbers_are_the_old_asserts():
    assert PARITY_DTYPE == "float32"
    assert tolerance() == tolerance("float32", "cpu") == (0.0, 1e-5)
    rtol, atol = tolerance("fp32", "cuda:0")
    assert rtol >= 0 and atol >= 1e-5  # never stricter on the GPU than on the CPU


@pytest.mark.parametrize("dtype", ["float32", "fp32", np.float32, np.dtype("float32"),
                                   mx.float32, "torch.float32"])
def test_every_spelling_of_a_dtype_finds_the_same_entry(dtype):
    assert tolerance(dtype, mx.gpu) == tolerance("float32", "gpu")


def test_looser_dtypes_get_looser_tolerances():
    for device in ("cpu", "gpu"):
        order = [tolerance(d, device)[1] for d in ("float32", "tf32", "float16", "bfloat16")]
        assert order == sorted(order), device


@pytest.mark.parametrize("device,kind", [("cpu", "cpu"), (mx.cpu, "cpu"), (mx.gpu, "gpu"),
                                         ("cuda", "gpu"), ("cuda:1", "gpu"), ("metal", "gpu"),
                                         ("mps", "gpu"), ("GPU", "gpu")])
def test_device_kinds(device, kind):
    assert device_kind(device) == kind


def test_unknown_device_or_dtype_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tolerance("float32", "tpu")
    with pytest.raises(ValueError, match="no tolerance for dtype 'int32'"):
        tolerance(mx.int32, "cpu")


def test_fp32_parity_turns_tf32_off_and_is_idempotent(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("MLX_ENABLE_TF32", "1")
    first = fp32_parity()
    assert os.environ["MLX_ENABLE_TF32"] == "0" and fp32_parity() == first
    if torch.cuda.is_available():
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    else:  # on the CPU only MLX's variable is set: torch's CUDA flags are left alone
        assert first == {"MLX_ENABLE_TF32": "0"}


def test_importing_the_policy_imports_no_framework():
    code = ("import sys, os; before = dict(os.environ); import mlx_speech.precision;"
            "print([m for m in ('mlx', 'torch', 'numpy') if m in sys.modules],"
            " dict(os.environ) == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ})
    assert out.returncode == 0 and out.stdout.split() == ["[]", "True"], out.stderr


def _pytest_child(device: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLX_SPEECH_TEST_DEVICE": device}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(mx.is_available(mx.gpu), reason="this machine has a GPU")
def test_gpu_suite_without_a_gpu_stops_with_one_line():
    out = _pytest_child("gpu", "tests/test_precision.py::test_device_kinds")
    assert out.returncode == 4, out.stdout + out.stderr  # pytest's usage error
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "MLX has no GPU" in ln]
    assert len(lines) == 1 and "passed" not in out.stdout, out.stdout + out.stderr


def test_unknown_test_device_is_refused():
    out = _pytest_child("tpu", "tests/test_precision.py::test_device_kinds")
    assert out.returncode == 4 and "expected cpu or gpu" in out.stdout + out.stderr


def test_the_policy_has_one_home():
    """No test module keeps its own TF32 switch: the policy lives in mlx_speech/precision.py."""
    hits = [p.name for p in (ROOT / "tests").glob("*.py")
            if p.name not in {"test_precision.py"} and "allow_tf32" in p.read_text()]
    assert hits == [] and "allow_tf32" in Path(precision.__file__).read_text()
