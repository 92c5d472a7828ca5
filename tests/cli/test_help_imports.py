"""``latentkit --help`` and every command's ``--help`` work where torch and numpy are not installed and
import neither (a subprocess whose import system refuses them), and CLI defaults are the library's."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latentkit.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# Runs `python -m latentkit ARGS` with torch and numpy made uninstallable, then reports what was imported.
_SCRIPT = r"""
import importlib.abc, runpy, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "numpy"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
        return None

sys.meta_path.insert(0, NotInstalled())
sys.argv = ["latentkit", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("latentkit", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code or 0
heavy = sorted(m for m in ("torch", "numpy") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _help(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _SCRIPT, *args, "--help"], capture_output=True, text=True,
                          timeout=120, env=_ENV, cwd=ROOT)


def test_top_level_help_imports_neither_torch_nor_numpy():
    out = _help()
    assert out.returncode == 0, out.stderr
    assert "Usage: latentkit" in out.stdout and all(name in out.stdout for name in COMMANDS)
    assert "HEAVY=\n" in out.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_imports_neither_torch_nor_numpy(command):
    out = _help(command)
    assert out.returncode == 0, out.stderr
    assert f"Usage: latentkit {command}" in out.stdout
    assert "HEAVY=\n" in out.stderr


def _defaults(command: str) -> dict:
    from latentkit.cli import main

    cmd = main.get_command(None, command)
    return {p.name: p.default for p in cmd.params}


def test_cli_defaults_are_the_librarys():
    from latentkit.latent.compress import DEFAULT_PSI, DEFAULT_TAU
    from latentkit.latent.diagnostics import diagnose_generator
    from latentkit.latent.prior import DEFAULT_CACHED_SAMPLES, GaussianPrior
    from latentkit.metrics.ppl import perceptual_path_length
    from latentkit.metrics.quality import evaluate
    from latentkit.metrics.tradeoff import TradeoffSettings

    fit = inspect.signature(GaussianPrior.from_generator).parameters
    assert _defaults("fit-prior")["n_samples"] == fit["n_samples"].default
    assert _defaults("fit-prior")["batch_size"] == fit["batch_size"].default
    assert _defaults("fit-prior")["holdout"] == inspect.signature(diagnose_generator).parameters["n_samples"].default
    compress = _defaults("compress")
    assert (compress["compare_psi"], compress["n_samples"]) == (DEFAULT_PSI, DEFAULT_CACHED_SAMPLES)
    assert float(compress["tau_text"].split(",")[-1]) == DEFAULT_TAU  # the demo's last column is the default tau
    ppl = inspect.signature(perceptual_path_length).parameters
    assert _defaults("ppl")["num_samples"] == ppl["num_samples"].default
    assert _defaults("ppl")["epsilon"] == ppl["epsilon"].default
    assert _defaults("evaluate")["nearest_k"] == inspect.signature(evaluate).parameters["nearest_k"].default
    s = TradeoffSettings()
    tradeoff = _defaults("tradeoff")
    assert tuple(float(t) for t in tradeoff["taus"].split(",")) == s.taus
    assert (tradeoff["num_samples"], tradeoff["prior_samples"], tradeoff["batch_size"]) == (
        s.num_samples, s.prior_samples, s.batch_size)


def test_every_command_declares_network_the_same_way():
    from latentkit.cli import main

    helps = {}
    for command in COMMANDS:
        params = {p.name: p for p in main.get_command(None, command).params}
        if "network" in params:
            opt = params["network"]
            assert opt.opts == ["--network"] and opt.default is None
            helps[command] = opt.help
    assert len(helps) >= 10
