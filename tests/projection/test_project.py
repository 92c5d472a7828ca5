"""The projector: shapes, NVIDIA's schedules, batch independence, resume, prior, inputs, errors."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit import load_generator
from latentkit.errors import InputError, LatentkitError, ShapeError
from latentkit.projection.lpips import lpips_vgg
from latentkit.latent.prior import GaussianPrior
from latentkit.projection.project import ProjectionResult, ProjectionSettings, prepare_targets, project
from latentkit.projection.settings import NVIDIA_INITIAL_NOISE_FACTOR
from latentkit.projection.settings import learning_rate_at as _learning_rate
from latentkit.projection.settings import noise_scale_at as _noise_scale
from latentkit.projection.state import _noise_penalty

REFERENCE = Path(__file__).parents[1] / "data" / "reference-nets"
FAST = dict(perceptual=None, mse_weight=1.0, progress=False)
_RUN_KEYWORDS = {"prior", "c", "classes", "checkpoint", "checkpoint_every", "callback", "progress"}


def run(G, targets, **options):
    """``project()`` with the settings given as keywords, as these tests like to write them: the
    ProjectionSettings fields go into ``settings=``, a ready LPIPS module given as ``perceptual`` becomes
    ``perceptual_net``, the rest are ``project()``'s own keywords."""
    net = options.pop("perceptual", "vgg")
    run_kw = {k: options.pop(k) for k in list(options) if k in _RUN_KEYWORDS}
    if net is None or isinstance(net, str):
        options["perceptual"] = net
    else:
        run_kw["perceptual_net"] = net
    return project(G, targets, settings=ProjectionSettings(**options), **run_kw)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(4.0 / mse)


@pytest.fixture(scope="module")
def sg2():
    return load_generator(REFERENCE / "sg2ada_uncond_map8_res32.pkl")


@pytest.fixture(scope="module")
def random_lpips():
    return lpips_vgg("random")


def _targets(G, n, seed=3):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = G.mapping(z)
        return ws, G.synthesis(ws).clamp(-1, 1)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("space", ["w", "w+"])
def test_shapes_and_exact_reproduction(toy_generator, n, space):
    G = toy_generator
    _, target = _targets(G, n)
    result = run(G, target, space=space, num_steps=6, **FAST)
    assert isinstance(result, ProjectionResult)
    assert result.ws.shape == (n, G.num_ws, G.w_dim)
    assert result.images.shape == (n, 3, 16, 16)
    assert result.losses.shape == (n, 6)
    assert set(result.loss_terms) == {"perceptual", "mse", "noise", "prior"}
    assert result.noises["noise0"].shape == (n, 1, 16, 16)
    assert result.settings.space == space and result.perceptual_weights is None
    # The saved latents and noise reproduce the returned images exactly.
    again = G.synthesis(result.ws, noise=result.noises)
    assert torch.equal(again, result.images)
    if space == "w":
        assert torch.equal(result.ws, result.ws[:, :1].expand_as(result.ws))
    # Optimised noise is renormalised per image.
    noise = result.noises["noise0"]
    torch.testing.assert_close(noise.mean(dim=(1, 2, 3)), torch.zeros(n), atol=1e-5, rtol=0)
    torch.testing.assert_close(noise.square().mean(dim=(1, 2, 3)), torch.ones(n), atol=1e-4, rtol=0)


def test_schedules_follow_nvidia():
    s = ProjectionSettings(num_steps=1000)
    assert _learning_rate(s, 0) == 0.0
    assert _learning_rate(s, 25) == pytest.approx(0.05)  # linear ramp-up over 5 %
    assert _learning_rate(s, 500) == pytest.approx(0.1)
    assert _learning_rate(s, 875) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.5 * math.pi)))  # cosine down
    assert _noise_scale(s, 0) == 0.0  # latentkit's default: no latent noise
    nvidia = ProjectionSettings(num_steps=1000, initial_noise_factor=NVIDIA_INITIAL_NOISE_FACTOR)
    assert _noise_scale(nvidia, 0) == pytest.approx(0.05)
    assert _noise_scale(nvidia, 375) == pytest.approx(0.05 * 0.25)
    assert _noise_scale(nvidia, 750) == 0.0


def test_noise_penalty_is_per_image():
    gen = torch.Generator().manual_seed(0)
    a = {"x": torch.randn(3, 1, 32, 32, generator=gen), "y": torch.randn(3, 1, 4, 4, generator=gen)}
    whole = _noise_penalty(a, 3, torch.device("cpu"))
    for k in range(3):
        alone = _noise_penalty({n: v[k : k + 1] for n, v in a.items()}, 1, torch.device("cpu"))
        torch.testing.assert_close(whole[k : k + 1], alone)
    smooth = {"x": torch.ones(1, 1, 16, 16)}  # maximal autocorrelation: 1 per shift, 2 levels (16, 8)
    assert float(_noise_penalty(smooth, 1, torch.device("cpu"))) == pytest.approx(4.0)


def test_batch_independence_reference_net(sg2, random_lpips):
    """One image alone equals the same image inside a batch of 4 (any position), same seed, few steps."""
    _, targets = _targets(sg2, 4, seed=11)
    prior = GaussianPrior().fit(sg2.mapping(torch.randn(2000, sg2.z_dim, generator=torch.Generator().manual_seed(0))))
    kw = dict(perceptual=random_lpips, prior=prior, prior_weight=1e-3, mse_weight=0.5, num_steps=4, progress=False)
    batch = run(sg2, targets, **kw)
    for k in (0, 2):
        alone = run(sg2, targets[k : k + 1], **kw)
        torch.testing.assert_close(alone.ws, batch.ws[k : k + 1], atol=1e-4, rtol=0)
        torch.testing.assert_close(alone.losses, batch.losses[k : k + 1], atol=1e-4, rtol=1e-4)
        for name, v in alone.noises.items():
            torch.testing.assert_close(v, batch.noises[name][k : k + 1], atol=1e-4, rtol=0)


def test_resume_equals_uninterrupted(toy_generator, tmp_path):
    G = toy_generator
    _, target = _targets(G, 2)
    kw = dict(num_steps=10, checkpoint_every=3, **FAST)
    full = run(G, target, **kw)
    ckpt = tmp_path / "run.pt"

    def interrupt(step, ws):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(G, target, checkpoint=ckpt, callback=interrupt, **kw)
    assert ckpt.is_file()  # written after steps 3 and 6
    resumed = run(G, target, checkpoint=ckpt, **kw)
    assert torch.equal(resumed.ws, full.ws)
    assert torch.equal(resumed.losses, full.losses)
    assert torch.equal(resumed.noises["noise0"], full.noises["noise0"])


def test_checkpoint_of_another_run_is_refused(toy_generator, tmp_path):
    G = toy_generator
    _, target = _targets(G, 1)
    ckpt = tmp_path / "run.pt"
    run(G, target, num_steps=3, checkpoint=ckpt, checkpoint_every=1, **FAST)
    with pytest.raises(InputError, match="holds an unfinished run with other settings: seed=0 \\(now 1\\)"):
        run(G, target, num_steps=3, seed=1, checkpoint=ckpt, **FAST)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read checkpoint"):
        run(G, target, num_steps=3, checkpoint=ckpt, **FAST)


def test_stylegan3_has_no_noise():
    G = load_generator(REFERENCE / "sg3t_uncond_res32.pkl")
    _, target = _targets(G, 2)
    result = run(G, target, num_steps=3, **FAST)
    assert result.noises == {}
    assert result.ws.shape == (2, G.num_ws, G.w_dim)
    with torch.no_grad():  # as the projector renders: the grouped (fused) modulated convolution
        assert torch.equal(G.synthesis(result.ws), result.images)
    # With autograd on the frozen network the unfused form runs: the same image up to float rounding.
    torch.testing.assert_close(G.synthesis(result.ws), result.images, rtol=0, atol=1e-5)
    assert torch.all(result.loss_terms["noise"] == 0)


def test_conditional_generator_needs_labels(toy_conditional_generator):
    G = toy_conditional_generator
    target = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ShapeError, match="class-conditional"):
        run(G, target, num_steps=2, **FAST)
    c = torch.tensor([[0.0, 1.0, 0.0]])
    result = run(G, target, num_steps=2, c=c, **FAST)
    # Starts from the mean of the class's mapped samples.
    assert result.ws.shape == (1, G.num_ws, G.w_dim)


def test_prior_lowers_mahalanobis(sg2):
    """With the prior term on, the projected latents are more typical under the prior."""
    prior = GaussianPrior().fit(sg2.mapping(torch.randn(5000, sg2.z_dim, generator=torch.Generator().manual_seed(0))))
    _, target = _targets(sg2, 2, seed=5)
    plain = run(sg2, target, num_steps=40, **FAST)
    regular = run(sg2, target, num_steps=40, prior=prior, prior_weight=1e-2, **FAST)
    assert float(prior.mahalanobis(regular.ws).mean()) < float(prior.mahalanobis(plain.ws).mean())
    assert torch.all(regular.loss_terms["prior"] > 0) and torch.all(plain.loss_terms["prior"] == 0)


def test_reconstruction_psnr_floor(sg2):
    """Images rendered from known latents come back above a PSNR floor.

    Measured 16.0 / 13.4 dB after 150 MSE steps (the reference net's raw outputs span about [-10, 20], so
    most pixels of its clamped renders are saturated and hard to match); the floor is set below that."""
    _, target = _targets(sg2, 2, seed=7)
    start = psnr(run(sg2, target, num_steps=1, **FAST).images, target)
    result = run(sg2, target, num_steps=150, **FAST)
    final = psnr(result.images, target)
    assert torch.all(final > start + 3)
    assert torch.all(final > 12.0), final
    assert torch.all(result.losses[:, -1] < result.losses[:, 0])


def test_file_targets_are_resized_with_notice(toy_generator, tmp_path, caplog):
    rgba = np.zeros((40, 30, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    grey16 = (np.linspace(0, 65535, 24 * 24).reshape(24, 24)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "b.png")
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "c.webp", lossless=True)
    with caplog.at_level(logging.INFO, logger="latentkit"):
        targets = prepare_targets(toy_generator, [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.webp"])
    assert targets.shape == (3, 3, 16, 16)
    assert "resized to 16x16" in caplog.text
    assert float(targets[0, 0].mean()) > float(targets[0, 2].mean())  # red over white
    torch.testing.assert_close(targets[2], torch.full((3, 16, 16), 90 / 127.5 - 1))
    tensor = prepare_targets(toy_generator, torch.zeros(3, 20, 32))  # [C, H, W], cropped to 20x20
    assert tensor.shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(space="z"), InputError, "space must be one of"),
        (dict(perceptual=None, mse_weight=0.0), InputError, "needs mse_weight > 0"),
        (dict(perceptual="alex"), InputError, "perceptual must be 'vgg' or None"),
        (dict(num_steps=0), InputError, r"num_steps must be in \[1, 1000000\]"),
        (dict(prior=object()), InputError, "mahalanobis"),
        (dict(learning_rat=0.1), TypeError, "learning_rat"),
    ],
)
def test_option_errors(toy_generator, kwargs, error, match):
    base = dict(mse_weight=1.0, perceptual=None, progress=False, num_steps=2)
    base.update(kwargs)
    with pytest.raises(error, match=match):
        run(toy_generator, torch.zeros(1, 3, 16, 16), **base)


def test_one_way_to_configure(toy_generator):
    """Settings are fields of ProjectionSettings only: a settings keyword on project() is a TypeError, so a
    keyword can never be silently dropped in favour of a settings object."""
    with pytest.raises(TypeError, match="num_steps"):
        project(toy_generator, torch.zeros(1, 3, 16, 16), num_steps=2)
    with pytest.raises(InputError, match="settings must be a ProjectionSettings"):
        project(toy_generator, torch.zeros(1, 3, 16, 16), settings={"num_steps": 2})
    with pytest.raises(InputError, match="prior_weight must be a finite number"):
        ProjectionSettings(prior_weight=float("nan"))
    with pytest.raises(InputError, match="mse_weight must be a finite number"):
        ProjectionSettings(mse_weight=float("inf"))


def test_interrupt_saves_the_current_step(toy_generator, tmp_path):
    from latentkit.projection.project import ProjectionInterrupted

    _, target = _targets(toy_generator, 1)
    ckpt = tmp_path / "run.pt"

    def stop(step, ws):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(ProjectionInterrupted, match="interrupted at step 5 of 10") as info:
        run(toy_generator, target, num_steps=10, checkpoint=ckpt, checkpoint_every=100, callback=stop, **FAST)
    assert info.value.step == 5 and ckpt.is_file()  # saved at the interrupt, not at the last checkpoint
    resumed = run(toy_generator, target, num_steps=10, checkpoint=ckpt, **FAST)
    assert torch.equal(resumed.ws, run(toy_generator, target, num_steps=10, **FAST).ws)


def test_target_errors(toy_generator, tmp_path):
    with pytest.raises(InputError, match=r"looks like 0-255 pixel data.*img / 127.5 - 1"):
        run(toy_generator, torch.full((1, 3, 16, 16), 200.0), **FAST)
    with pytest.raises(InputError, match="looks like 0-255"):
        run(toy_generator, torch.linspace(0, 255, 768).reshape(1, 3, 16, 16), **FAST)
    with pytest.raises(LatentkitError, match="non-finite"):
        run(toy_generator, torch.full((1, 3, 16, 16), float("nan")), **FAST)
    with pytest.raises(InputError, match="targets is empty"):
        run(toy_generator, [], **FAST)
    with pytest.raises(ShapeError, match="targets"):
        run(toy_generator, torch.zeros(16, 16), **FAST)
    with pytest.raises(InputError, match="image file not found"):
        run(toy_generator, tmp_path / "missing.png", **FAST)


def test_settings_object_and_callback(toy_generator):
    settings = dataclasses.replace(ProjectionSettings(), num_steps=3, perceptual=None, mse_weight=1.0)
    seen = []
    result = project(
        toy_generator,
        torch.zeros(2, 3, 16, 16),
        settings=settings,
        progress=False,
        callback=lambda step, ws: seen.append((step, ws.shape)),
    )
    assert result.settings is settings
    assert seen == [(k, (2, 4, 8)) for k in range(3)]
    assert settings.to_dict()["betas"] == [0.9, 0.999]


def test_prior_parametrization_and_start(sg2):
    """Adam on the prior's whitened coefficients: starts at the prior's mode, |u|^2 is the Mahalanobis
    distance of the rendered latents, and results stay batch independent."""
    prior = GaussianPrior().fit(sg2.mapping(torch.randn(5000, sg2.z_dim, generator=torch.Generator().manual_seed(0))))
    _, target = _targets(sg2, 3, seed=5)
    kw = dict(prior=prior, prior_weight=1e-3, num_steps=4, **FAST)
    settings = dataclasses.replace(
        ProjectionSettings(), parametrization="prior", prior_weight=1e-3, num_steps=4, perceptual=None, mse_weight=1.0
    )
    batch = project(sg2, target, settings=settings, prior=prior, progress=False)
    assert torch.all(batch.loss_terms["prior"][:, 0] < 1e-6)  # step 0 at the mode: u = 0
    alone = project(sg2, target[1:2], settings=settings, prior=prior, progress=False)
    torch.testing.assert_close(alone.ws, batch.ws[1:2], atol=1e-4, rtol=0)
    w_settings = dataclasses.replace(settings, parametrization="w")
    w_param = project(sg2, target, settings=w_settings, prior=prior, progress=False)  # start='auto': the mode too
    assert torch.all(w_param.loss_terms["prior"][:, 0] < 1e-3)
    nvidia = run(sg2, target, **dict(kw, prior=None))  # parametrization 'auto' without a prior: w
    assert torch.all(nvidia.loss_terms["prior"] == 0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(parametrization="u"), "parametrization must be 'auto', 'w' or 'prior'"),
        (dict(start="zero"), "start must be 'auto', 'w_avg', 'prior_mean' or 'encoder'"),
        (dict(parametrization="prior"), "parametrization='prior' needs a fitted GaussianPrior"),
        (dict(start="prior_mean"), "start='prior_mean' needs a fitted GaussianPrior"),
    ],
)
def test_prior_option_errors(toy_generator, changes, match):
    with pytest.raises(InputError, match=match):
        settings = dataclasses.replace(ProjectionSettings(), perceptual=None, mse_weight=1.0, num_steps=1, **changes)
        project(toy_generator, torch.zeros(1, 3, 16, 16), settings=settings, progress=False)


@pytest.mark.parametrize("name", sorted(p.name for p in REFERENCE.glob("*.p*") if p.suffix in (".pkl", ".pt")))
def test_projects_the_generators_own_raw_output(name):
    """The standard experiment: project G.synthesis(ws) as it is, overshoot of [-1, 1] included."""
    G = load_generator(REFERENCE / name)
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.nn.functional.one_hot(torch.tensor([0, 1]), G.c_dim).float() if G.c_dim else None
    with torch.no_grad():
        raw = G.synthesis(G.mapping(z, c))
    targets = prepare_targets(G, raw)
    assert torch.equal(targets, raw.float())  # taken as it is: not clamped, not rescaled
    result = run(G, raw, c=c, num_steps=2, **FAST)
    assert result.ws.shape == (2, G.num_ws, G.w_dim) and torch.isfinite(result.losses).all()


@pytest.mark.slow
def test_projects_the_real_models_raw_output():
    import os

    from latentkit.load.mobilestylegan import load_mobilestylegan

    cache = Path(os.environ.get("LATENTKIT_TEST_CACHE", "~/.cache/latentkit-tests")).expanduser()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENTKIT_CACHE", str(cache))
        G = load_mobilestylegan()
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = G.synthesis(G.mapping(z))
    assert float(raw.abs().max()) > 1  # the real model overshoots [-1, 1] (seed 1: about [-1.6, 2.75])
    result = run(G, raw, num_steps=1, **FAST)
    assert result.ws.shape == (1, G.num_ws, G.w_dim) and torch.isfinite(result.losses).all()
