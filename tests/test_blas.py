"""The private OpenBLAS for MLX on Linux: loaded, correct, and invisible to torch."""

import os
import subprocess
import sys

import numpy as np
import pytest

from mlx_speech import _blas

# Tests the Linux-CPU acceleration itself: nothing to test when the suite runs on a GPU.
pytestmark = pytest.mark.cpu_only

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
    code = ("import os, mlx_speech; mlx_speech.accelerate(); import mlx_speech._blas as b, mlx.core as mx;"
            "print(b.status()['backend'])")
    env = {**os.environ, "MLX_SPEECH_BLAS": "reference"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "reference", out.stderr
    code = ("import mlx.core, mlx_speech; mlx_speech.accelerate(); import mlx_speech._blas as b;"
            "print(b.status()['detail'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "call it first" in out.stdout, out.stderr


@linux
def test_torch_does_not_see_openblas_symbols():
    """torch's sgemm must still be MKL's: the shim is RTLD_LOCAL, so torch output is unchanged."""
    code = ("import mlx_speech; mlx_speech.accelerate(); import mlx.core as mx, torch, ctypes;"
            "mx.eval(mx.ones((8,8))@mx.ones((8,8)));"
            "g = ctypes.CDLL(None);"
            "print(hasattr(g, 'openblas_get_config'), hasattr(g, 'scipy_openblas_get_config'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False False", out.stderr


@linux
def test_shim_build_is_cached_and_atomic(tmp_path):
    env = {**os.environ, "MLX_SPEECH_CACHE": str(tmp_path)}
    code = ("import mlx_speech; mlx_speech.accelerate(); import mlx_speech._blas as b;"
            "print(b.status()['library'])")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lib = first.stdout.strip()
    assert lib.startswith(str(tmp_path)), first.stderr
    mtime = os.stat(lib).st_mtime_ns
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert again.stdout.strip() == lib and os.stat(lib).st_mtime_ns == mtime
    ours = {os.path.basename(lib), _blas._OPENBLAS_SONAME}  # + the OpenBLAS behind our sgemm
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in ours
                 and not (p.name == "g++" and p.parent.parent == tmp_path / "jit")]  # _jit's wrapper
    assert leftovers == []


few_rows_here = pytest.mark.skipif(
    not sys.platform.startswith("linux") or _blas._few_rows_unavailable() is not None,
    reason="our few-row sgemm is built on Linux x86-64 with AVX2/FMA and a C compiler")


@few_rows_here
def test_few_rows_sgemm_is_loaded_where_it_can_be():
    st = _blas.status()
    assert st["few_rows_sgemm"] == "on" and _blas.few_rows_kernel(), st
    assert "/few-rows-" in st["library"] and _blas._OPENBLAS_SONAME in (st.get("loaded") or "")


@few_rows_here
def test_few_rows_sgemm_matches_float64_through_mlx():
    """MLX's products (x @ w.T, batched, strided, addmm) with 1-5 rows, odd sizes and K tails."""
    import mlx.core as mx

    rng = np.random.default_rng(1)

    def check(got, want, k):
        got = np.array(got)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 2e-6 * (np.sqrt(k) + 1) * max(1.0, np.abs(want).max())

    for m, n, k in ((1, 2048, 512), (2, 2048, 512), (3, 7, 9), (4, 513, 37), (2, 1, 1),
                    (1, 3, 8), (4, 1024, 8192), (5, 64, 64), (2, 252, 64)):
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        want = x.astype(np.float64) @ w.T.astype(np.float64)
        check(mx.array(x) @ mx.array(w).T, want, k)
        # the weight as a strided view (rows longer than k), and as 128-row slices in a batch
        wide = np.concatenate([w, rng.standard_normal((n, 5)).astype(np.float32)], axis=1)
        check(mx.array(x) @ mx.array(wide)[:, :k].T, want, k)
        if n % 128 == 0:
            y = mx.array(x)[None] @ mx.array(w).reshape(n // 128, 128, k).swapaxes(-1, -2)
            check(y.transpose(1, 0, 2).reshape(m, n), want, k)
        c = rng.standard_normal((m, n)).astype(np.float32)
        check(mx.addmm(mx.array(c), mx.array(x), mx.array(w).T, alpha=0.5, beta=2.0),
              0.5 * want + 2.0 * c, k)
    x = mx.array(rng.standard_normal((2, 512)).astype(np.float32))
    w = mx.array(rng.standard_normal((768, 512)).astype(np.float32))
    assert np.array_equal(np.array(x @ w.T), np.array(x @ w.T))  # same inputs, same bits


@few_rows_here
def test_few_rows_sgemm_blas_contract():
    """The C entry point itself: column-major calls, beta = 0 never reads C (NaN there stays out),
    alpha, and calls it leaves to OpenBLAS (k = 0, transposed A) keep BLAS semantics."""
    import ctypes

    lib = _blas._HANDLE
    f = lib.cblas_sgemm
    f.restype = None
    i, fl, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    f.argtypes = [i, i, i, i, i, i, fl, p, i, p, i, fl, p, i]
    row, col, no, tr = 101, 102, 111, 112
    rng = np.random.default_rng(2)

    def call(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        f(order, ta, tb, m, n, k, alpha, a.ctypes.data, lda, b.ctypes.data, ldb, beta,
          c.ctypes.data, ldc)

    a = rng.standard_normal((3, 40)).astype(np.float32)
    b = rng.standard_normal((50, 40)).astype(np.float32)
    want = a.astype(np.float64) @ b.T
    c = np.full((3, 50), np.nan, np.float32)
    call(row, no, tr, 3, 50, 40, 1.0, a, 40, b, 40, 0.0, c, 50)
    assert np.isfinite(c).all() and np.abs(c - want).max() < 1e-4
    c2 = np.ones((3, 50), np.float32)
    call(row, no, tr, 3, 50, 40, -2.0, a, 40, b, 40, 0.5, c2, 50)
    assert np.abs(c2 - (-2.0 * want + 0.5)).max() < 2e-4
    # column-major C (50 x 3) = b a^T: the same product seen transposed
    ct = np.zeros((3, 50), np.float32)  # column-major 50 x 3 with ldc 50 = row-major 3 x 50
    call(col, tr, no, 50, 3, 40, 1.0, b, 40, a, 40, 0.0, ct, 50)
    assert np.abs(ct - want).max() < 1e-4
    # transposed A with few rows and k = 0 go to OpenBLAS
    at = np.ascontiguousarray(a.T)
    c3 = np.zeros((3, 50), np.float32)
    call(row, tr, tr, 3, 50, 40, 1.0, at, 3, b, 40, 0.0, c3, 50)
    assert np.abs(c3 - want).max() < 1e-4
    c4 = np.full((3, 50), 2.0, np.float32)
    call(row, no, tr, 3, 50, 0, 1.0, a, 40, b, 40, 3.0, c4, 50)
    assert np.array_equal(c4, np.full((3, 50), 6.0, np.float32))


@linux
def test_few_rows_sgemm_falls_back_to_openblas(tmp_path):
    """Opted out, or the compile failing: OpenBLAS alone, said so, and products still right."""
    code = ("import mlx_speech; mlx_speech.accelerate(); import mlx_speech._blas as b, mlx.core as mx, numpy as np;"
            "x = mx.arange(6, dtype=mx.float32).reshape(2, 3); w = mx.ones((4, 3));"
            "print(np.array(x @ w.T).tolist()); print(b.status()['few_rows_sgemm'])")
    for extra in ({"MLX_SPEECH_SGEMM": "openblas"}, {"CC": "false"}):
        env = {**os.environ, "MLX_SPEECH_CACHE": str(tmp_path), **extra}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        values, state = out.stdout.strip().splitlines()
        assert values == str([[3.0] * 4, [12.0] * 4])
        assert state.startswith("off: "), state
        if "CC" in extra and _blas._few_rows_unavailable() is None:
            assert "compiling _sgemm_few_rows.c failed" in state, state


@few_rows_here
def test_few_rows_sgemm_two_streams_and_a_forked_child():
    """Products split over the helper thread stay right when two CPU streams call at once
    (one of them runs alone), and in a child forked after the helper started."""
    import mlx.core as mx

    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, 512)).astype(np.float32) for _ in range(2)]
    ws = [rng.standard_normal((2048, 512)).astype(np.float32) for _ in range(8)]
    want = [[x.astype(np.float64) @ w.T for w in ws] for x in xs]
    streams = [mx.new_stream(mx.cpu) for _ in xs]
    for _ in range(3):
        outs = []
        for x, s in zip(xs, streams):
            with mx.stream(s):
                outs.append([mx.array(x) @ mx.array(w).T for w in ws])
        mx.eval(outs)
        for got, ref in zip(outs, want):
            assert max(np.abs(np.array(g) - r).max() for g, r in zip(got, ref)) < 1e-3
    # the child calls the C entry point directly (MLX's own threads do not survive a fork)
    import ctypes
    import select
    import signal

    f = _blas._HANDLE.cblas_sgemm
    f.restype = None
    i, fl, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    f.argtypes = [i, i, i, i, i, i, fl, p, i, p, i, fl, p, i]
    y = np.zeros((2, 2048), np.float32)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery, report through the pipe and leave at once
        ok = 0
        try:
            f(101, 111, 112, 2, 2048, 512, 1.0, xs[0].ctypes.data, 512, ws[0].ctypes.data, 512,
              0.0, y.ctypes.data, 2048)
            ok = int(np.abs(y - want[0][0]).max() < 1e-3)
        finally:
            os.write(w, bytes([ok]))
            os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 60)
    got = os.read(r, 1) if ready else b""
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    assert got == b"\x01"
