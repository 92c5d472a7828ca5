"""The type checker passes at the stated strictness (pyproject.toml ``[tool.mypy]``, ARCHITECTURE.md): mypy
on ``latentkit/latent``, ``latentkit/projection``, ``latentkit/metrics`` and ``latentkit/app``. Skipped only where
mypy is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_the_checked_packages():
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Success: no issues found" in out.stdout
