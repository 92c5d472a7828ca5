"""``--prior-radius student-t`` (project) and ``--radius student-t`` (fit-prior) on a reference net."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import invoke_cli
from PIL import Image

import latentkit.cli.project as cli_project
from latentkit import load_generator
from latentkit.cli import main
from latentkit.latent.prior import GaussianPrior
from latentkit.latent.prior_file import read_prior_file
from latentkit.latent.radius import RADIUS_MODELS, StudentTRadius, fit_student_t

api = importlib.import_module("latentkit.projection.project")

NET = Path(__file__).parents[1] / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"


run = invoke_cli


@pytest.fixture(scope="module")
def G():
    return load_generator(NET)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "face.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(path)
    return path


@pytest.fixture
def seen(monkeypatch):
    """The priors the command passes to project() (the cost probe's call and the run's)."""
    priors = []
    real = api.project

    def spy(*args, prior=None, **kwargs):
        priors.append(prior)
        return real(*args, prior=prior, **kwargs)

    monkeypatch.setattr(api, "project", spy)
    return priors


def _project(image, out, *extra):
    return run(["project", str(image), "--network", str(NET), "--perceptual-weights", "random", "--steps", "1",
                "--outdir", str(out), "--device", "cpu", *extra])


def test_choices_match_the_api():
    option = next(p for p in cli_project.project.params if p.name == "prior_radius")
    assert tuple(option.type.choices) == RADIUS_MODELS and option.default == "gaussian"


def test_prior_file_without_nu_gets_the_fitted_one(G, image, tmp_path, seen):
    prior_file = GaussianPrior.from_generator(G, 2000, progress=False).save(tmp_path / "prior.npz")
    result = _project(image, tmp_path / "out", "--prior", str(prior_file), "--prior-radius", "student-t")
    assert result.exit_code == 0, result.output
    expected = fit_student_t(GaussianPrior.load(prior_file), G)  # 20000 held-out samples, z seed 3
    assert seen and all(isinstance(p, StudentTRadius) for p in seen)
    assert all(p.nu_ == pytest.approx(expected.nu_, rel=1e-12) and p.fit_seed_ == 3 for p in seen)
    assert f"nu = {expected.nu_:.1f}" in result.stderr
    record = json.loads((tmp_path / "out" / "face" / "losses.json").read_text())
    assert record["prior_radius"] == pytest.approx({**expected.radius_info()})
    line = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[-1])
    assert line["prior_radius"]["nu"] == pytest.approx(expected.nu_) and line["described"]["prior_radius"]["model"] == "student-t"
    assert read_prior_file(prior_file)[2]["radius"] is None  # the user's file is left as it was


def test_stored_nu_is_used_and_the_default_stays_gaussian(G, image, tmp_path, seen):
    gp = GaussianPrior.from_generator(G, 2000, progress=False)
    stored = StudentTRadius.from_nu(gp, 7.25, n_fit=500, seed=3).save(tmp_path / "t.npz")
    assert _project(image, tmp_path / "t", "--prior", str(stored), "--prior-radius", "student-t").exit_code == 0
    assert seen and all(p.nu_ == 7.25 for p in seen)
    seen.clear()
    result = _project(image, tmp_path / "g", "--prior", str(stored))  # the field is there, but not asked for
    assert result.exit_code == 0, result.output
    assert seen and all(type(p) is GaussianPrior for p in seen)
    assert json.loads((tmp_path / "g" / "face" / "losses.json").read_text())["prior_radius"] == {"model": "gaussian"}


def test_student_t_needs_a_prior(image, tmp_path):
    result = CliRunner().invoke(main, ["project", str(image), "--network", str(NET), "--prior", "none",
                                       "--prior-radius", "student-t", "--outdir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--prior-radius student-t needs a prior" in result.output


def test_fit_prior_stores_nu(tmp_path):
    out = tmp_path / "p.npz"
    result = run(["fit-prior", str(NET), "--samples", "2000", "--seed", "1", "--radius", "student-t", "--out", str(out),
                  "--device", "cpu"])
    assert result.exit_code == 0, result.output
    t = StudentTRadius.load(out)
    assert (t.n_fit_, t.fit_seed_) == (20_000, 4)  # held-out z seed = seed + 3
    assert json.loads(result.stdout)["radius"]["nu"] == t.nu_
    assert isinstance(GaussianPrior.load(out), GaussianPrior)
