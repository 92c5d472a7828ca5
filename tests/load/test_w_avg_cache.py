"""The cached MobileStyleGAN w_avg heals: an unreadable or wrong cache file is re-estimated with a warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentkit import hub
from latentkit.load.mobilestylegan import load_mobilestylegan
from latentkit.nets.mobilestylegan import MobileStyleGAN

from test_mobilestylegan import _write_wheel


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(p.read_bytes()[:20]),
    lambda p: np.save(p, np.full(4, np.nan, dtype=np.float32)),
    lambda p: np.save(p, np.zeros(7, dtype=np.float32)),
    lambda p: p.write_bytes(b"\x93NUMPY garbage"),
], ids=["empty", "truncated", "nan", "wrong-shape", "garbage"])
def test_damaged_w_avg_cache_is_re_estimated(tmp_path, monkeypatch, damage):
    calls = []

    def fake_estimate(self, n, *, seed=0, batch_size=4096):
        calls.append(n)
        self.w_avg.copy_(torch.arange(4.0))
        return self.w_avg

    monkeypatch.setattr(MobileStyleGAN, "estimate_w_avg", fake_estimate)
    wheel = _write_wheel(tmp_path / "random_face-2021.7.21.1-py3-none-any.whl")
    load_mobilestylegan(wheel)
    (cached,) = hub.cache_dir("w_avg").glob("mobilestylegan-*.npy")
    damage(cached)
    with pytest.warns(UserWarning, match="estimating it again"):
        G = load_mobilestylegan(wheel)
    assert len(calls) == 2 and G.w_avg.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert np.load(cached).tolist() == [0.0, 1.0, 2.0, 3.0]  # the cache is whole again
    load_mobilestylegan(wheel)
    assert len(calls) == 2
