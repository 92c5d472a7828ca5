"""Every command of the README's table as a new user types it: once with no network (the default network,
here mapped to a reference net, must be announced) and once with --network REF; each exits 0, says its
defaults on stderr and prints no traceback. Sizes are the smallest that exercise the path."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import REFERENCE_NETS
from latentkit.cli import main

REF = str(REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    import latentkit.load as load

    monkeypatch.setattr(load, "default_network", lambda: REF)
    monkeypatch.chdir(tmp_path)
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.RandomState(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)).save(faces / f"{name}.png")
    from latentkit import load_generator
    from latentkit.io import save_latents
    from latentkit.latent.sampling import z_from_seed

    G = load_generator(REF)
    save_latents(tmp_path / "a.npz", G.mapping(z_from_seed(1, G.z_dim)))
    save_latents(tmp_path / "b.npz", G.mapping(z_from_seed(2, G.z_dim)))
    return tmp_path


COMMANDS = {
    "info": [],
    "generate": ["--seeds", "0-1"],
    "fit-prior": ["--samples", "2000"],
    "compress": ["--tau", "3", "--samples", "2000"],
    "project": ["faces/a.png", "--num-steps", "2", "--perceptual-weights", "random", "--prior", "none"],
    "interpolate": ["a.npz", "b.npz", "--steps", "3"],
    "ppl": ["-n", "3", "--perceptual", "random"],
    "evaluate": ["--real", "faces", "-n", "3", "--features", "pixels", "--metrics", "fid,kid"],
    "tradeoff": ["-n", "2", "--taus", "3", "--psis", "0.7", "--features", "pixels", "--identity-backend", "dlib",
                 "--prior-samples", "2000"],
    "edit": ["a.npz", "--component", "0", "--amounts", "-1,0,1", "--samples", "2000"],
    "directions": ["--components", "2", "--analysis-samples", "1", "--no-plot"],
}
NO_NETWORK = {"interpolate"}  # renders latents of an explicitly given network only when asked


@pytest.mark.parametrize("with_network", [False, True], ids=["default-network", "--network"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_as_a_new_user_types_it(workdir, command, with_network):
    if command == "tradeoff":
        pytest.importorskip("dlib")
    args = [command, *COMMANDS[command]]
    if with_network:
        args += ["--network", REF]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    if not with_network and command not in NO_NETWORK:
        assert f"no network given: using the default {REF!r}" in result.stderr


def test_the_two_main_jobs_literally(workdir, monkeypatch):
    """`latentkit project img.png` and `latentkit compress --tau 3` with nothing else typed (LPIPS mapped to its
    random test backbone and the step count shortened, which a CPU user would do with --num-steps)."""
    import dataclasses

    import latentkit.projection.lpips as lpips
    import latentkit.projection.project as api

    real_lpips, real_project = lpips.lpips_vgg, api.project
    monkeypatch.setattr(lpips, "lpips_vgg", lambda weights="auto", **kw: real_lpips("random", **kw))
    monkeypatch.setattr(api, "project", lambda *a, settings, **kw: real_project(
        *a, settings=dataclasses.replace(settings, num_steps=min(settings.num_steps, 2)), **kw))
    (workdir / "img.png").write_bytes((workdir / "faces" / "a.png").read_bytes())
    project = CliRunner().invoke(main, ["project", "img.png"], catch_exceptions=False)
    assert project.exit_code == 0, project.output
    for announced in ("using the default", "out/project", "prior: the cached Gaussian prior", "steps on cpu"):
        assert announced in project.stderr
    assert (workdir / "out" / "project" / "img" / "projected_w.npz").is_file()
    compress = CliRunner().invoke(main, ["compress", "--tau", "3"], catch_exceptions=False)
    assert compress.exit_code == 0, compress.output
    for announced in ("using the default", "out/compress", "seeds with components beyond tau=3"):
        assert announced in compress.stderr
