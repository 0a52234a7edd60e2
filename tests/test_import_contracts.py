"""The dependency rules of docs/ARCHITECTURE.md, checked by import-linter (contracts in
pyproject.toml): packages point one way (convert -> torch_ref -> mlx_speech), torch_ref never
reaches mlx, the framework-free core imports no framework, and sibling packages have no cycles."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept():
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
