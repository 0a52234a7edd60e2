"""Import isolation: specs import neither mlx nor torch; torch_ref never imports mlx."""

import subprocess
import sys

import pytest

_PROBE = """
import sys
{imports}
bad = [m for m in {forbidden!r} if m in sys.modules]
print(",".join(bad))
"""


def _loaded(imports: str, forbidden: list[str]) -> list[str]:
    code = _PROBE.format(imports=imports, forbidden=forbidden)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return [m for m in line.split(",") if m]


@pytest.mark.parametrize("imports", [
    "import mlx_speech.specs",
    "import mlx_speech.specs.audio; import mlx_speech.errors; import mlx_speech.registry",
], ids=["specs", "specs-errors-registry"])
def test_specs_import_neither_mlx_nor_torch(imports):
    assert _loaded(imports, ["mlx", "mlx.core", "torch"]) == []


def test_torch_ref_does_not_import_mlx():
    imports = ("import torch_ref, pkgutil, importlib\n"
               "for m in pkgutil.walk_packages(torch_ref.__path__, 'torch_ref.'):\n"
               "    importlib.import_module(m.name)")
    assert _loaded(imports, ["mlx", "mlx.core"]) == []


def test_mlx_speech_package_import_is_light():
    assert _loaded("import mlx_speech", ["mlx.core", "torch"]) == []


def test_cli_import_is_light():
    assert _loaded("import cli", ["mlx.core", "torch", "librosa"]) == []
