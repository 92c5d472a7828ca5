"""The paper study's run order (no model: the job list only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "paper"))
pytest.importorskip("torch")
t2 = pytest.importorskip("table2_projection")
common = pytest.importorskip("common")


def _study(tmp_path):
    size = common.SIZES["quick"]
    study = t2.Study.__new__(t2.Study)
    study.size, study.dir = size, tmp_path
    study.targets = t2.targets(size)
    study.pairs = t2.pairs(study.targets, size.interp_pairs)
    study.methods = t2.methods(size)
    return study


def test_core_rows_come_first_and_only_picks_one_phase(tmp_path):
    study = _study(tmp_path)
    names = [name for name, _, _ in study.jobs() if not name.startswith("interp")]
    core = {m.key for m in study.methods if m.family in t2.CORE_FAMILIES}
    first_grid = next(i for i, n in enumerate(names) if n.split("/")[1] not in core and not n.endswith("x2"))
    assert all(n.split("/")[1] in core for n in names[:first_grid])
    assert len(names[:first_grid]) == len(core) * len(study.targets)  # every target's core rows before any grid row
    assert names[-1].endswith(" x2")  # the convergence subset last
    for only in t2.PHASES:
        picked = [name for name, _, _ in study.jobs(only=only) if not name.startswith("interp")]
        assert picked and set(picked) < set(names)
        if only == "convergence":
            assert all(n.endswith(" x2") for n in picked)
            assert len(picked) == study.size.convergence_targets * len(t2.CONVERGENCE_KEYS)
        else:
            assert not any(n.endswith(" x2") for n in picked)
            assert all((n.split("/")[1] in core) == (only == "core") for n in picked)
