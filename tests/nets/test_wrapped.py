"""latentkit.wrap: any G(z) module as a Generator (Z space only), and the Z-space tools on it."""

from __future__ import annotations

import pytest
import torch

from latentkit import GaussianPrior, InputError, ShapeError, project, wrap
from latentkit.latent.interpolate import render_interpolation, slerp
from latentkit.metrics.ppl import perceptual_path_length
from latentkit.metrics.quality import evaluate
from latentkit.nets.wrapped import NO_W_SPACE, WrappedGenerator
from latentkit.projection.lpips import lpips_vgg
from latentkit.projection.settings import ProjectionSettings
from latentkit.projection.zspace import project_z

Z_DIM, RES = 6, 32


class TinyDCGAN(torch.nn.Module):
    """Random weights (tests only): z [N, 6] -> [N, 3, 32, 32] in (0, 1) (sigmoid)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.fc = torch.nn.Linear(Z_DIM, 8 * 4 * 4)
        self.up = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(8, 8, 4, 2, 1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(8, 4, 4, 2, 1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(4, 3, 4, 2, 1), torch.nn.Sigmoid(),
        )
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(z).view(-1, 8, 4, 4))


@pytest.fixture(scope="module")
def G():
    return wrap(TinyDCGAN(), z_dim=Z_DIM, img_resolution=RES, output_range=(0, 1))


def _z(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, Z_DIM, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", [1, 3])
def test_renders_z_mapped_to_minus_one_one(G, n):
    z = _z(n)
    img = G(z)
    assert img.shape == (n, 3, RES, RES) and img.dtype == torch.float32
    torch.testing.assert_close(img, G.module(z) * 2 - 1)
    assert G.num_ws == 0 and G.w_dim == 0 and G.c_dim == 0 and G.architecture == "wrapped"
    assert not G.training and G.info()["module"] == "TinyDCGAN"
    assert isinstance(G, WrappedGenerator)


def test_w_space_operations_say_there_is_none(G):
    z = _z(2)
    for call in (lambda: G.mapping(z), lambda: G.synthesis(torch.zeros(2, 0, 0)), lambda: G(z, truncation_psi=0.7)):
        with pytest.raises(InputError, match="no W space"):
            call()
    with pytest.raises(InputError, match="no W space"):
        GaussianPrior.from_generator(G, n_samples=16, progress=False)
    with pytest.raises(InputError, match="no W space"):
        project(G, G(z), settings=ProjectionSettings(num_steps=2, perceptual=None, mse_weight=1.0), progress=False)
    assert "\n" not in NO_W_SPACE


def test_bad_arguments_and_outputs():
    with pytest.raises(InputError, match="torch.nn.Module"):
        wrap(lambda z: z, z_dim=2, img_resolution=4)
    with pytest.raises(InputError, match="z_dim must be a positive integer"):
        wrap(TinyDCGAN(), z_dim=0, img_resolution=RES)
    with pytest.raises(InputError, match="high > low"):
        wrap(TinyDCGAN(), z_dim=Z_DIM, img_resolution=RES, output_range=(1, 1))
    wrong = wrap(TinyDCGAN(), z_dim=Z_DIM, img_resolution=64)
    with pytest.raises(ShapeError, match=r"returned \[2, 3, 32, 32\].*expected images \[2, 3, 64, 64\]"):
        wrong(_z(2))
    with pytest.raises(ShapeError, match="z"):
        wrong(torch.zeros(2, Z_DIM + 1))


def test_slerp_interpolation_in_z(G):
    a, b = _z(2, 1), _z(2, 2)
    frames = render_interpolation(G, a, b, 5, space="z", batch_size=3)
    assert frames.shape == (5, 2, 3, RES, RES)
    t = torch.tensor(0.25)
    torch.testing.assert_close(frames[1], G(slerp(a, b, t)))
    torch.testing.assert_close(frames[0], G(a))
    torch.testing.assert_close(frames[-1], G(b))


def test_ppl_in_z_routes_z_to_the_module(G):
    net = lpips_vgg("random")  # NOT pretrained: tests the procedure, not the number
    result = perceptual_path_length(G, num_samples=6, space="z", crop=False, perceptual=net, batch_size=4,
                                    progress=False)
    assert result.space == "z" and result.distances.shape == (6,) and result.ppl > 0
    again = perceptual_path_length(G, num_samples=6, space="z", crop=False, perceptual=net, batch_size=6,
                                   progress=False)
    assert abs(again.ppl - result.ppl) <= 1e-3 * abs(result.ppl)  # batch size does not matter
    with pytest.raises(InputError, match="no W space"):
        perceptual_path_length(G, num_samples=3, space="w", crop=False, perceptual=net, progress=False)


def test_evaluate_renders_the_wrapped_module(G):
    result = evaluate(G, G, metrics=("fid",), features="pixels", num_samples=8, progress=False)
    assert abs(result.metrics["fd_pixels"]) < 1e-3 and result.num_fake == 8  # the same seeds on both sides


def test_project_z_recovers_a_rendered_target(G):
    z_true = _z(2, 7) * 0.5
    target = G(z_true)
    settings = ProjectionSettings(num_steps=60, perceptual=None, mse_weight=1.0, prior_weight=1e-4,
                                  learning_rate=0.1, initial_noise_factor=0.0)
    result = project_z(G, target, settings=settings, progress=False)
    assert result.z.shape == (2, Z_DIM) and result.images.shape == target.shape
    assert result.losses.shape == (2, 60) and set(result.loss_terms) == {"perceptual", "mse", "prior"}
    start = (G(torch.zeros(2, Z_DIM)) - target).square().mean(dim=(1, 2, 3))
    assert (result.loss_terms["mse"][:, -1] < 0.2 * start).all()
    torch.testing.assert_close(result.images, G(result.z))
    alone = project_z(G, target[1:], settings=settings, progress=False)  # each image on its own
    torch.testing.assert_close(alone.z, result.z[1:], atol=1e-4, rtol=1e-4)


def test_project_z_errors(G):
    with pytest.raises(InputError, match="needs mse_weight > 0"):  # the settings check it themselves
        project_z(G, G(_z(1)), settings=ProjectionSettings(perceptual=None, mse_weight=0.0), progress=False)
    with pytest.raises(InputError, match="ProjectionSettings"):
        project_z(G, G(_z(1)), settings={"num_steps": 3}, progress=False)
