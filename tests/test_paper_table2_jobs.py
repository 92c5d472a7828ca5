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


def test_grids_tune_every_cell_on_a_subset_then_run_the_best_on_every_target(tmp_path):
    study = _study(tmp_path)
    tune = study.targets[: study.size.grid_tune]
    pn = [m for m in study.methods if m.family == "pn"]
    assert len(pn) >= 2 and 0 < len(tune) < len(study.targets)
    names = [name for name, _, _ in study.jobs(only="grids") if not name.startswith("interp")]
    assert {n.split("/")[0] for n in names if n.split("/")[1] == pn[0].key} == {t.name for t in tune}
    assert not any(n.startswith("interp") for n, _, _ in study.jobs(only="grids") if n.split("/")[1] == pn[0].key)
    for i, t in enumerate(tune):  # every P_N cell done on the tuning targets; the second cell is better on average
        for m, lp in zip(pn, ([0.30, 0.20][i % 2], [0.25, 0.22][i % 2])):
            common.write_json(study.path(t, m), {"lpips": lp})
    assert study.tuned("pn").key == pn[1].key
    assert not any(n.endswith(pn[1].key) and n.startswith("seed1001") for n, _, _ in study.jobs(only="grids"))
    for t in tune:  # the chosen P_N cell waits until the paper's recipe is tuned too
        for m in (m for m in study.methods if m.family == "paper"):
            common.write_json(study.path(t, m), {"lpips": 0.3})
    names = [name for name, _, _ in study.jobs(only="grids")]
    t_key = next(m.key for m in study.methods if m.family == "student-t")
    assert not any(n.endswith(t_key) for n in names)  # Student-t is the 'extra' phase
    assert {n.split("/")[0] for n, _, _ in study.jobs(only="extra") if not n.startswith("interp")} == {t.name for t in study.targets}
    assert [n for n, _, _ in study.jobs(only="grids", first=2) if not n.startswith("interp")] == \
        [n for n in names if not n.startswith("interp") and n.split("/")[0] in {t.name for t in study.targets[:2]}]
    assert {n.split("/")[0] for n in names if n.endswith("/" + pn[1].key) and not n.startswith("interp")} == \
        {t.name for t in study.targets}
    assert {n.split("/")[0] for n in names if n.endswith("/" + pn[0].key)} == {t.name for t in tune}
    assert any(n.startswith("interp") and n.endswith(pn[1].key) for n in names)


def test_best_cell_waits_for_every_tuning_target():
    assert common.best_cell({"a": {"x": 0.3, "y": 0.1}, "b": {"x": 0.2, "y": 0.25}}, ["x", "y"]) == "a"
    assert common.best_cell({"a": {"x": 0.3}, "b": {"x": 0.2, "y": 0.25}}, ["x", "y"]) is None
    assert common.best_cell({}, ["x"]) is None
