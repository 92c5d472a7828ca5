"""``project(..., classes=[...])``: the class searched per image on conditional reference nets."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from latentkit.errors import InputError
from latentkit.load import load_generator
from latentkit.latent.sampling import one_hot

api = importlib.import_module("latentkit.projection.project")  # the module; latentkit.projection.project is the function

NETS = Path(__file__).parents[1] / "data" / "reference-nets"
# MSE only, few samples for the mean w: fast, and deterministic.
FAST = api.ProjectionSettings(num_steps=3, perceptual=None, mse_weight=1.0, w_avg_samples=64, seed=5)


@pytest.fixture(scope="module")
def G():
    return load_generator(NETS / "sg2ada_cond_map2_res32.pkl")


def _targets(G, classes, seed=0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(len(classes), G.z_dim)).float()
    with torch.no_grad():
        return G(z, one_hot(classes, G.c_dim), noise_mode="const").clamp(-1, 1)


def test_search_keeps_the_lowest_final_loss_and_matches_single_class_runs(G):
    targets = _targets(G, [1, 4])
    candidates = [0, 4, 1]
    res = api.project(G, targets, settings=FAST, classes=candidates, progress=False)
    assert res.candidate_classes == (0, 4, 1)
    assert res.class_losses.shape == (2, 3) and res.classes.shape == (2,) and res.classes.dtype == torch.long
    for i in range(2):
        assert int(res.classes[i]) == candidates[int(res.class_losses[i].argmin())]
    assert res.ws.shape == (2, G.num_ws, G.w_dim) and res.images.shape == (2, 3, 32, 32)
    torch.testing.assert_close(res.targets, targets)
    # Each candidate's loss is what a plain projection with that class gives (batch independence), and
    # the kept latents, noise and loss history are the chosen class's.
    for j, k in enumerate(candidates):
        single = api.project(G, targets, settings=FAST, c=one_hot([k, k], G.c_dim), progress=False)
        torch.testing.assert_close(res.class_losses[:, j], single.losses[:, -1], rtol=1e-5, atol=1e-6)
        assert single.classes.tolist() == [k, k]
        for i in range(2):
            if int(res.classes[i]) == k:
                torch.testing.assert_close(res.ws[i], single.ws[i], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(res.losses[i], single.losses[i], rtol=1e-5, atol=1e-6)
                for name, buf in res.noises.items():
                    torch.testing.assert_close(buf[i], single.noises[name][i], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        again = G.synthesis(res.ws, noise_mode="const", noise=res.noises)
    torch.testing.assert_close(again, res.images)


def test_search_over_one_class_is_the_plain_projection(G):
    targets = _targets(G, [2])
    res = api.project(G, targets, settings=FAST, classes=[2], progress=False)
    plain = api.project(G, targets, settings=FAST, c=one_hot([2], G.c_dim), progress=False)
    torch.testing.assert_close(res.ws, plain.ws, rtol=0, atol=0)
    assert res.classes.tolist() == [2] and res.class_losses.shape == (1, 1)
    assert plain.class_losses is None and plain.candidate_classes is None


def test_unconditional_result_has_no_classes():
    U = load_generator(NETS / "sg2ada_uncond_map8_res32.pkl")
    res = api.project(U, torch.zeros(1, 3, 32, 32), settings=FAST, progress=False)
    assert res.classes is None and res.class_losses is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classes": [0, 1], "c": "onehot"}, "either c= .* or classes="),
        ({"classes": []}, "classes is empty"),
        ({"classes": [0, 10]}, r"classes must lie in \[0, 9\].*got \[10\]"),
        ({"classes": [-1]}, r"classes must lie in \[0, 9\]"),
        ({"classes": [3, 3]}, "repeated entries"),
        ({"classes": ["x"]}, "list of class indices"),
    ],
)
def test_search_errors(G, kwargs, match):
    if kwargs.get("c") == "onehot":
        kwargs = dict(kwargs, c=one_hot([0], G.c_dim))
    with pytest.raises(InputError, match=match):
        api.project(G, torch.zeros(1, 3, 32, 32), settings=FAST, progress=False, **kwargs)


def test_search_on_unconditional_net_is_an_error():
    U = load_generator(NETS / "sg2ada_uncond_map8_res32.pkl")
    with pytest.raises(InputError, match="unconditional"):
        api.project(U, torch.zeros(1, 3, 32, 32), settings=FAST, classes=[0], progress=False)
