"""Same-person verdicts for files: folder pairing, the report's JSON, missing faces (identity_report)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from latentkit.errors import InputError
from latentkit.metrics.identity import FaceComparison
from latentkit.metrics.identity_report import IdentityReport, compare_face_files, paired_files

DATA = Path(__file__).parents[1] / "data"


def _comparison(sims, dists):
    sim, dist = torch.tensor(sims, dtype=torch.float64), torch.tensor(dists, dtype=torch.float64)
    same = torch.nan_to_num(dist, nan=math.inf) < 0.6
    return FaceComparison(sim, dist, same, 0.6, "dlib", "euclidean < 0.6 (dlib)")


def test_paired_files_by_name(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for name in ("x.png", "y.jpg", "lonely.png", "notes.txt"):
        (a / name).write_bytes(b"")
    for name in ("y.jpg", "x.png", "other.png"):
        (b / name).write_bytes(b"")
    files_a, files_b, unmatched = paired_files(a, b)
    assert [Path(f).name for f in files_a] == ["x.png", "y.jpg"] == [Path(f).name for f in files_b]
    assert unmatched == 1  # lonely.png; notes.txt is no image
    assert paired_files(b, tmp_path)[0] == []


def test_report_dict_verdicts_and_missing_faces():
    report = IdentityReport(["a1", "a2", "a3"], ["b1", "b2", "b3"],
                            _comparison([0.9, float("nan"), 0.5], [0.3, float("nan"), 0.8]))
    out = report.to_dict()
    assert report.faces_missing == out["faces_missing"] == 1
    assert [p["same_person"] for p in out["pairs"]] == [True, None, False]
    assert out["pairs"][1]["similarity"] is None and out["pairs"][1]["distance"] is None
    assert out["mean"] == pytest.approx(0.7) and out["threshold"] == 0.6 and "similarity" not in out
    single = IdentityReport(["a"], ["b"], _comparison([float("nan")], [float("nan")])).to_dict(single=True)
    assert single["similarity"] is None and single["same_person"] is None and single["mean"] is None


def test_compare_face_files_errors(tmp_path):
    with pytest.raises(InputError, match="on_missing"):
        compare_face_files(["a"], ["b"], on_missing="skip")
    with pytest.raises(InputError, match="as many files"):
        compare_face_files(["a", "b"], ["c"], backend="dlib")


def test_compare_face_files_missing_face_dlib(tmp_path):
    pytest.importorskip("dlib")
    face = DATA / "photos" / "astronaut.jpg"
    grey = tmp_path / "grey.png"
    Image.new("RGB", (96, 96), (128, 128, 128)).save(grey)
    with pytest.raises(InputError, match="no face found in"):
        compare_face_files([face], [grey], backend="dlib")
    report = compare_face_files([face], [grey], backend="dlib", on_missing="nan")
    assert report.faces_missing == 1 and report.to_dict(single=True)["same_person"] is None
