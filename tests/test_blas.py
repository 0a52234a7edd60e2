"""The private OpenBLAS for MLX on Linux: loaded, correct, and invisible to torch."""

import os
import subprocess
import sys

import numpy as np
import pytest

import mlx_speech  # noqa: F401
from mlx_speech import _blas

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only BLAS shim")


@linux
def test_openblas_is_loaded_for_mlx():
    import mlx.core as mx

    mx.eval(mx.ones((4, 4)) @ mx.ones((4, 4)))
    st = _blas.status()
    assert st["backend"] == "openblas", st
    assert st["library"] and st["library"] in (st.get("loaded") or "")


def test_matmul_is_correct():
    import mlx.core as mx

    rng = np.random.default_rng(0)
    a = rng.standard_normal((257, 129)).astype(np.float32)
    b = rng.standard_normal((129, 65)).astype(np.float32)
    got = np.array(mx.array(a) @ mx.array(b))
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@linux
def test_opt_out_and_late_import_are_reported():
    code = ("import os, mlx_speech, mlx_speech._blas as b, mlx.core as mx;"
            "print(b.status()['backend'])")
    env = {**os.environ, "MLX_SPEECH_BLAS": "reference"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "reference", out.stderr
    code = "import mlx.core, mlx_speech, mlx_speech._blas as b; print(b.status()['detail'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "import mlx_speech first" in out.stdout, out.stderr


@linux
def test_torch_does_not_see_openblas_symbols():
    """torch's sgemm must still be MKL's: the shim is RTLD_LOCAL, so torch output is unchanged."""
    code = ("import mlx_speech, mlx.core as mx, torch, ctypes;"
            "mx.eval(mx.ones((8,8))@mx.ones((8,8)));"
            "g = ctypes.CDLL(None);"
            "print(hasattr(g, 'openblas_get_config'), hasattr(g, 'scipy_openblas_get_config'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False False", out.stderr


@linux
def test_shim_build_is_cached_and_atomic(tmp_path):
    env = {**os.environ, "MLX_SPEECH_CACHE": str(tmp_path)}
    code = "import mlx_speech, mlx_speech._blas as b; print(b.status()['library'])"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lib = first.stdout.strip()
    assert lib.startswith(str(tmp_path)), first.stderr
    mtime = os.stat(lib).st_mtime_ns
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert again.stdout.strip() == lib and os.stat(lib).st_mtime_ns == mtime
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != os.path.basename(lib)
                 and not (p.name == "g++" and p.parent.parent == tmp_path / "jit")]  # _jit's wrapper
    assert leftovers == []
