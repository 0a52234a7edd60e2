"""MLX's CPU kernels built with AVX2 on Linux x86-64: only MLX kernel builds get the flags, the
results are bit for bit those of the baseline build, and the opt-out works."""

import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlx_speech import _jit

# Tests the Linux-CPU acceleration itself: nothing to test when the suite runs on a GPU.
pytestmark = pytest.mark.cpu_only

x86_linux = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() in {"x86_64", "AMD64"}),
    reason="the kernel flags apply on Linux x86-64 only")


def _fake_compiler(tmp_path: Path) -> Path:
    """A stand-in ``g++`` that prints its arguments, one per line."""
    real = tmp_path / "fake-g++"
    real.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    real.chmod(0o755)
    return real


def _run_wrapper(tmp_path: Path, *args: str) -> list[str]:
    wrapper = tmp_path / "g++"
    wrapper.write_text(_jit.wrapper_text(str(_fake_compiler(tmp_path))))
    wrapper.chmod(0o755)
    out = subprocess.run(["sh", "-c", f'"{wrapper}" "$@"', "sh", *args], capture_output=True,
                         text=True, check=True)
    return out.stdout.splitlines()


def test_wrapper_adds_flags_to_mlx_kernel_builds_only(tmp_path):
    kernel = ["-std=c++17", "-O3", "-Wall", "-fPIC", "-shared",
              "/tmp/mlx/0.32.4/cpu/Cf4IAddABD_contiguous.cpp", "-o",
              "/tmp/mlx/0.32.4/cpu/libCf4IAddABD_contiguous.so"]
    assert _run_wrapper(tmp_path, *kernel) == kernel + list(_jit.FLAGS)
    other = ["-O2", "-shared", "ext.cpp", "-o", "ext.so"]
    assert _run_wrapper(tmp_path, *other) == other
    assert _run_wrapper(tmp_path, "--version") == ["--version"]
    odd = ["-c", "my dir/mlx/1/cpu/a b.cpp"]  # a kernel path but no -shared: untouched
    assert _run_wrapper(tmp_path, *odd) == odd


def _child(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=600)


@x86_linux
def test_status_and_opt_out(tmp_path):
    code = ("import mlx_speech, os; mlx_speech.accelerate(); import mlx_speech._jit as j;"
            "print(j.status()['mode']); print(os.environ['PATH'])")
    out = _child(code, MLX_SPEECH_JIT_FLAGS="off")
    assert out.stdout.splitlines()[0] == "baseline", out.stderr
    out = _child(code, MLX_SPEECH_CACHE=str(tmp_path / "cache"))
    mode, path = out.stdout.splitlines()
    if mode == "avx2":  # a CPU with AVX2 and a g++: the wrapper folder leads PATH
        assert path.split(os.pathsep)[0].startswith(str(tmp_path / "cache")), path
        # a child that imports mlx_speech again must not wrap the wrapper
        nested = _child(code, MLX_SPEECH_CACHE=str(tmp_path / "cache"), PATH=path)
        mode2, path2 = nested.stdout.splitlines()
        assert mode2 == "avx2" and path2.split(os.pathsep).count(path.split(os.pathsep)[0]) == 1
        wrapper = Path(path.split(os.pathsep)[0]) / "g++"
        assert "exec /" in wrapper.read_text() and str(wrapper) not in wrapper.read_text()
    else:
        assert mode == "baseline", out.stderr


_KERNELS = """
import sys, numpy as np, mlx_speech
mlx_speech.accelerate()
import mlx.core as mx
from mlx_speech.layers import activations as A
from mlx_speech.train import optim as O
mx.random.seed(0)
x = mx.random.normal((64, 1000)) * 3
f32 = mx.float32
s = lambda v: mx.array(v, dtype=f32)
ps = [mx.random.normal((128, 96)), mx.random.normal((96,))]
gs = [mx.random.normal((96, 128)).T, mx.random.normal((96,))]
adam = O._adamw_compiled(ps, gs, [mx.zeros_like(p) + 0.1 for p in ps],
                         [mx.zeros_like(p) + 0.01 for p in ps], [s(1e-3)] * 2, [s(0.01)] * 2,
                         s(0.9), s(0.999), s(1e-8), s(0.1), s(0.001), s(1.0))
out = {
    "gelu": A.gelu_cpu(x), "gelu_grad": mx.grad(lambda y: A.gelu_cpu(y).sum())(x),
    "elu_grad": mx.grad(lambda y: A.elu(y).sum())(x), "exp2": A.exp2_fast(-mx.abs(x)),
    "silu_grad": mx.grad(lambda y: A.silu(y).sum())(x),
    "softmax": mx.compile(lambda y: mx.softmax(y, axis=-1))(x),
    "sqrt_div": mx.compile(lambda a, b: a / (mx.sqrt(mx.abs(b)) + 1e-8) * 0.3 - b)(x, x * 0.7),
    "adam_w": adam[1][0], "adam_b": adam[1][1], "adam_v": adam[3][0],
}
np.savez(sys.argv[1], **{k: np.array(v) for k, v in out.items()})
"""


@x86_linux
def test_kernels_are_bit_identical_to_the_baseline_build(tmp_path):
    """Fresh kernel caches (TMPDIR) for both builds; every output must match exactly."""
    script = tmp_path / "kernels.py"
    script.write_text(_KERNELS)
    results, ymm = {}, {}
    for mode in ("baseline", "avx2"):
        tmp = tmp_path / f"tmp_{mode}"
        tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(tmp), "MLX_SPEECH_CACHE": str(tmp_path / "cache")}
        if mode == "baseline":
            env["MLX_SPEECH_JIT_FLAGS"] = "off"
        out = subprocess.run([sys.executable, str(script), str(tmp_path / f"{mode}.npz")],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        results[mode] = np.load(tmp_path / f"{mode}.npz")
        built = list((tmp / "mlx").rglob("*.so"))
        assert built, f"{mode}: MLX compiled no CPU kernels"
        if shutil.which("objdump"):  # 256-bit registers only in the AVX2 build
            ymm[mode] = sum("ymm" in subprocess.run(["objdump", "-d", str(so)], capture_output=True,
                                                    text=True).stdout for so in built)
    if ymm and _jit.status()["mode"] == "avx2":
        assert ymm["baseline"] == 0 and ymm["avx2"] > 0, ymm
    for key in results["baseline"]:
        np.testing.assert_array_equal(results["avx2"][key], results["baseline"][key], err_msg=key)
