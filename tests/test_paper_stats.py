"""The statistics behind the paper report's verdicts (no model: numbers with known answers)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "paper"))

stats = pytest.importorskip("stats")


def test_verdict_is_never_stronger_than_the_interval():
    lower = stats.paired([1.0, 1.1, 0.9, 1.05, 0.95], [0.5, 0.62, 0.41, 0.55, 0.44])
    assert lower.hi < 0 and lower.p < 0.01 and lower.verdict("lower") == "holds" and lower.verdict("higher") == "opposite"
    noisy = stats.paired([0, 0, 0, 0], [1.0, -1.2, 0.9, -0.8])
    assert noisy.lo < 0 < noisy.hi and noisy.verdict("lower") == "not established"
    assert stats.paired([1.0], [0.0]).verdict("lower") == "no test (n = 1)"
    assert noisy.verdict("none") == "no difference shown"


def test_jackknife_of_a_pairwise_mean_is_wider_than_the_naive_pairs_se():
    rng = np.random.default_rng(0)
    m = 30
    x = rng.normal(size=m)  # per-sample effect shared by all its pairs
    pairs = [x[i] + x[j] + 0.1 * rng.normal() for i, j in itertools.combinations(range(m), 2)]
    mat = stats.pairwise_matrix(pairs, m)
    mean, se = stats.jackknife(lambda keep: stats.pairwise_mean(mat, keep), m)
    assert mean == pytest.approx(np.mean(pairs))
    assert se > 3 * np.std(pairs, ddof=1) / np.sqrt(len(pairs))


def test_power_matches_the_textbook_paired_t():
    assert stats.n_for_power(1.0) == 10  # G*Power: dz = 1, alpha 0.05 two-sided, 80 % -> 10
    assert stats.n_for_power(0.5) == 34


def test_fast_frechet_equals_the_square_root_formula():
    pytest.importorskip("torch_fidelity")
    tradeoff = pytest.importorskip("table3_tradeoff")
    from latentkit.metrics.quality import frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 60)), rng.normal(0.3, 1.2, size=(50, 60))  # fewer samples than dimensions
    assert tradeoff.fast_frechet(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-5)


def test_pairwise_lpips_one_tap_at_a_time_equals_the_all_taps_distance():
    """Table 3's diversity holds one VGG tap at a time; the distances must be those of every tap held at once
    (same float16 features, terms added in tap order), for every pair in combinations order."""
    torch = pytest.importorskip("torch")
    t3 = pytest.importorskip("table3_tradeoff")
    from latentkit.projection.lpips import lpips_vgg, unit_channels

    lp = lpips_vgg("random").eval()  # random backbone: the test checks the bookkeeping, not a perceptual metric
    with torch.no_grad():
        for head in lp.heads:
            head.copy_(torch.rand_like(head))
    small = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1  # 64 px: Winograd taps (channels_last)
    got = t3.pairwise_lpips(lp, small, batch=2)
    feats = [[] for _ in lp.heads]
    with torch.no_grad():
        for i in range(0, len(small), 2):
            for k, f in enumerate(t3.vgg_taps(lp, small[i:i + 2])):
                feats[k].append(unit_channels(f).half())
        feats = [torch.cat(f) for f in feats]
        want = [float(lp.distance_from_features([x[i:i + 1].float() for x in feats], [x[j:j + 1].float() for x in feats]))
                for i, j in itertools.combinations(range(len(small)), 2)]
    assert len(got) == 10 and got == want
    assert all(d > 0 for d in got)


def _t3_rows():
    """The untruncated setting, three psi settings whose fd first falls and then rises, and one tau."""
    def row(method, value, fd, ident, moved):
        return {"method": method, "value": value, "fd": fd, "fd_se": 0.1, "identity": [ident] * 4, "w_moved": [moved] * 4}
    return [row("none", 1.0, 10.0, 1.0, 0.0), row("psi", 0.9, 9.0, 0.99, 1.0), row("psi", 0.7, 8.0, 0.98, 3.0),
            row("psi", 0.5, 12.0, 0.95, 5.0)]


def test_equal_distance_match_stops_at_the_curves_first_turn_and_needs_a_resolved_distance():
    report = pytest.importorskip("report")
    t3 = report.Table3.__new__(report.Table3)
    t3.rows = _t3_rows()
    near = {"method": "tau", "value": 2.0, "fd": 9.5, "fd_se": 0.1, "identity": [0.995] * 4, "w_moved": [0.5] * 4}
    ident, where, (r0, r1, f) = t3.at_equal(near, "fd")
    assert where == "psi 1 (none)-0.9" and f == pytest.approx(0.5) and ident == pytest.approx([0.995] * 4)
    assert t3.unresolved(near, "fd") == ""  # 0.5 from the untruncated 10.0, more than 2 SEs (0.2)
    far = dict(near, fd=11.0)  # only met again after the curve turns (psi 0.7 -> 0.5): no match
    ident, where, _ = t3.at_equal(far, "fd")
    assert ident is None and "turn" in where
    noisy = dict(near, fd=9.9)  # within 2 SEs of the untruncated setting: a match would be chosen by noise
    assert "2 SE" in t3.unresolved(noisy, "fd")
    assert t3.unresolved(near, "w_moved") == ""  # no SE recorded: a displacement is exact on its seeds
