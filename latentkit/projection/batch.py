"""Projecting many image files into an output folder, resumably: the library side of ``latentkit project``.

For each input image ``outdir/<name>/`` receives NVIDIA's ``projected_w.npz`` (key ``w``, ``[1, num_ws,
w_dim]``; a one-hot ``c`` for conditional generators), ``projected_noise.npz``, ``proj.png``,
``target.png`` and ``losses.json``; ``outdir/manifest.jsonl`` gets one JSON line per finished image (path,
folder, final loss terms, LPIPS, PSNR, seconds, the prior's radius model, the settings fingerprint) that
``pandas.read_json(..., lines=True)`` reads.

What is done is read from the manifest, not from folders that exist: an image counts as done when its
line has the same fingerprint (settings, generator, prior, class). A rerun with other settings refuses
with the difference named (``restart=True`` redoes the work). Inside a batch the state is checkpointed
every ``checkpoint_every`` steps and on Ctrl-C, so an interrupted run resumes at the step it stopped. A
lock file keeps two runs from writing into one folder at once. Targets of the next batch are read by a
loader thread while the current one optimises, so memory stays bounded by two batches.

Under torchrun, ``shard=(rank, world_size)`` gives file ``i`` to rank ``i % world_size`` (if not done yet),
as :mod:`latentkit.projection.distributed` describes; each image's result is the one a single process
gives (projection is batch-independent).

On the CPU every image computes on one intra-op thread, images side by side on the cores
(:func:`~latentkit.projection.cpu_parallel.one_thread_per_image`), so an image's latents are the same bits
whatever batch or rank it falls in. The exception is a run of a single image in a single process (the
common ``latentkit project img.png``): there is no batch or rank to agree with, so it gets every thread
(the default model's forward and backward pass: 0.70 s on one thread, 0.38 s on two, 1.8x, in
benchmarks/results/bench_speed_msg_avx512_amx.json; its bits then depend on the thread count, as any PyTorch
program's do).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from latentkit.errors import InputError, LatentkitError
from latentkit.latent.radius import describe_radius
from latentkit.nets.generator import Generator
from latentkit.projection.cpu_parallel import one_thread_per_image
from latentkit.projection.encoder import ImageEncoder, encoder_fingerprint
from latentkit.projection.inputs import folder_names
from latentkit.projection.distributed import agree, gather_records, manifest_name, my_share, shared_folder
from latentkit.projection.outdir import append_manifest, read_manifest
from latentkit.projection.settings import DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT_EVERY, ProjectionSettings
from latentkit.projection.fingerprint import describe_difference, run_fingerprint

if TYPE_CHECKING:
    from latentkit.latent.prior_protocol import LatentPrior
    from latentkit.projection.lpips import PerceptualLoss

__all__ = ["ESTIMATE_TIMED_STEPS", "ESTIMATE_WARMUP_STEPS", "ImageRecord", "estimate_step_seconds", "project_files",
           "psnr", "run_fingerprint"]  # run_fingerprint: from fingerprint

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ImageRecord:
    """One finished image: what a manifest line holds."""

    input: str
    folder: str
    fingerprint: str
    final_loss: float
    final_terms: dict[str, float]
    lpips: float | None
    psnr: float
    seconds: float
    klass: int | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("klass", "skipped")}
        out["class"] = self.klass
        return out


ESTIMATE_WARMUP_STEPS = 1
"""Steps run before the timed ones: the first calls carry one-time costs (allocations, kernel choices)."""
ESTIMATE_TIMED_STEPS = 3
"""Steps whose median is the estimate (a median, so one step slowed by another process does not count)."""


def estimate_step_seconds(G: Generator, target: torch.Tensor, settings: ProjectionSettings, *,
                          prior: LatentPrior | None = None, perceptual_net: PerceptualLoss | None = None, c: torch.Tensor | None = None,
                          warmup: int = ESTIMATE_WARMUP_STEPS, timed: int = ESTIMATE_TIMED_STEPS) -> float:
    """Seconds per step of one image, measured: the median of ``timed`` steps run after ``warmup`` steps.

    The set-up (the start point's mapped samples, the targets' features) is not timed.
    """
    import dataclasses
    import statistics

    from latentkit.projection.project import ProjectionInterrupted, project

    if warmup < 0 or timed < 1:
        raise InputError(f"estimate_step_seconds needs warmup >= 0 and timed >= 1, got {warmup} and {timed}")
    probe = dataclasses.replace(settings, num_steps=warmup + timed, w_avg_samples=min(settings.w_avg_samples, 1000),
                                start="auto" if settings.start == "encoder" else settings.start)  # same cost per step
    ends: list[float] = []
    try:
        project(G, target[:1], settings=probe, prior=prior, c=None if c is None else c[:1],
                perceptual_net=perceptual_net, callback=lambda step, ws: ends.append(time.perf_counter()), progress=False)
    except ProjectionInterrupted:  # Ctrl-C during the probe: nothing of the run was done or saved
        raise KeyboardInterrupt from None
    durations = [b - a for a, b in zip(ends, ends[1:])][max(warmup - 1, 0):]  # step k's time: end k - end k-1
    return statistics.median(durations) if durations else 0.0


def _write_image(folder: Path, result: Any, k: int, info: dict[str, Any], c_dim: int) -> None:
    from latentkit.files import atomic_path, check_inside, os_error
    from latentkit.io import save_image, save_latents

    check_inside(folder, folder.parent)  # a per-image folder symlinked elsewhere is never written through
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error(folder, err, "create") from None
    extra = {}
    if result.classes is not None:  # one-hot label so the latents can be re-rendered with the same class
        extra["c"] = np.eye(c_dim, dtype=np.float32)[[int(result.classes[k])]]  # [1, c_dim]
    save_latents(folder / "projected_w.npz", result.ws[k : k + 1], **extra)
    noise = {name: v[k : k + 1].cpu().numpy() for name, v in result.noises.items()}
    with atomic_path(folder / "projected_noise.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **noise)
    save_image(folder / "proj.png", result.images[k : k + 1].clamp(-1, 1))
    save_image(folder / "target.png", result.targets[k : k + 1].clamp(-1, 1))
    record = dict(info)
    record.update({
        "settings": result.settings.to_dict(),
        "perceptual_weights": result.perceptual_weights,
        "final_loss": float(result.losses[k, -1]),
        "final_terms": {name: float(v[k, -1]) for name, v in result.loss_terms.items()},
        "losses": [round(float(x), 6) for x in result.losses[k]],
        "loss_terms": {name: [round(float(x), 6) for x in v[k]] for name, v in result.loss_terms.items()},
        "noise_file": "projected_noise.npz",
        "steps_run": result.steps_run,
        "stop_reason": result.stop_reason,
    })
    if result.classes is not None:
        record["class"] = int(result.classes[k])
    if result.class_losses is not None:
        record["class_losses"] = {str(c): round(float(v), 6) for c, v in zip(result.candidate_classes, result.class_losses[k])}
    with atomic_path(folder / "losses.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))


def _check_finite(result: Any, paths: list[Path]) -> None:
    """Refuse to write or record results holding NaN or inf (a diverged run, a damaged state): one line."""
    bad = [str(path) for k, path in enumerate(paths)
           if not (bool(torch.isfinite(result.ws[k]).all()) and bool(torch.isfinite(result.losses[k]).all())
                   and all(bool(torch.isfinite(v[k]).all()) for v in result.noises.values()))]
    if bad:
        raise InputError(f"the projection of {bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''} holds NaN "
                         "or inf latents or losses (diverged: lower the learning rate or check the prior); nothing was "
                         "written for its batch, a rerun starts it afresh")


def psnr(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images against targets, both clamped to [-1, 1] (peak-to-peak 2): ``[N]``."""
    mse = (images.clamp(-1, 1) - targets.clamp(-1, 1)).square().flatten(1).mean(1).double()
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def _video(path: Path, G: Generator, frames: list[torch.Tensor], noises: dict, target: torch.Tensor) -> None:
    from latentkit.video import save_video

    with torch.no_grad():
        shots = [G.synthesis(ws.to(G.w_avg.device), noise=noises or None).clamp(-1, 1).cpu() for ws in frames]
    pairs = torch.cat([torch.cat([target.clamp(-1, 1), shot], dim=3) for shot in shots])  # target | projection
    save_video(path, pairs, fps=10)


def project_files(
    G: Generator,
    files: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    settings: ProjectionSettings | None = None,
    prior: LatentPrior | None = None,
    prior_name: str = "",
    class_idx: int | None = None,
    classes: Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    restart: bool = False,
    save_video: bool = False,
    perceptual_net: PerceptualLoss | None = None,
    encoder: ImageEncoder | None = None,
    info: dict[str, Any] | None = None,
    on_image: Callable[[ImageRecord], None] | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> list[ImageRecord]:
    """Project every file into ``outdir``, skipping the ones the manifest has with the same fingerprint.

    Args:
        G: the generator.
        files: image files, in output order (a folder listing is sorted by the caller).
        outdir: the output folder (created).
        settings: the :class:`~latentkit.projection.settings.ProjectionSettings` (None: the defaults).
        prior: a fitted prior or None; ``prior_name`` says where it came from (written to ``losses.json``).
            Each ``losses.json`` and manifest line records its radius model as ``prior_radius``:
            ``{"model": "gaussian"}``, the Student-t's ``{"model": "student-t", "nu", "n_fit", "seed"}``, or null.
        class_idx: the class of every image for a conditional generator (exclusive with ``classes``).
        classes: search the class per image among these (see :func:`~latentkit.projection.project.project`).
        batch_size: images optimised together (results do not depend on it; memory and speed do).
        checkpoint_every: steps between checkpoints inside a batch.
        restart: redo images done with other settings and discard checkpoints, instead of refusing.
        save_video: also write ``proj.mp4`` per image (target | projection at every step; needs imageio).
        perceptual_net: a ready LPIPS module to share across batches (None: built from the settings).
        encoder: an :class:`~latentkit.projection.encoder.ImageEncoder` whose prediction starts each image
            (``settings.start`` ``'encoder'`` or ``'auto'``); its file's name belongs in ``info``, as the
            fingerprint knows only the settings.
        info: extra fields for each ``losses.json`` (e.g. the network's name).
        on_image: called with each :class:`ImageRecord` as soon as its files are written.
        progress: tqdm bars on stderr.
        shard: ``(rank, world_size)`` under torchrun (see :func:`latentkit.distributed.init_distributed`):
            every rank gets the same ``files`` and does its share; None: one process does all.

    Returns:
        One :class:`ImageRecord` per file (``skipped=True`` for those already done), on every rank.

    Raises:
        InputError: a file done before with other settings (unless ``restart``), another run holding the
            folder, an unreadable image, or invalid options.
        ProjectionInterrupted: Ctrl-C; the current batch's state was saved, a rerun resumes it.
    """
    s = settings if settings is not None else ProjectionSettings()
    paths = [Path(f) for f in files]
    if not paths:
        raise InputError("no images to project: give image files, a folder of images, a glob or a list file")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"outdir {outdir} exists and is not a folder; choose another output folder")
    outdir.mkdir(parents=True, exist_ok=True)
    key, described = run_fingerprint(G, s, prior, class_idx=class_idx, classes=classes,
                                     encoder=None if encoder is None else encoder_fingerprint(encoder))
    names = folder_names(paths)
    with shared_folder(outdir, shard, [str(p.resolve()) for p in paths]):
        try:
            todo, records = _remaining(G, paths, names, outdir, key, described, restart)
        except LatentkitError as err:
            agree(err, shard)
        agree(None, shard)  # one rank's refusal stops all
        remaining = {str(path) for path, _ in todo}  # rank R takes file i when i % world == R, if not done yet
        todo = [item for item in my_share(list(zip(paths, names)), shard) if str(item[0]) in remaining]
        alone = len(paths) == 1 and (shard is None or shard[1] == 1)  # nothing to be bit-identical with
        records = _run_batches(G, todo, records, outdir, key=key, described=described, s=s, prior=prior, all_threads=alone,
                               prior_name=prior_name, class_idx=class_idx, classes=classes, batch_size=batch_size,
                               checkpoint_every=checkpoint_every, restart=restart, save_video=save_video,
                               perceptual_net=perceptual_net, encoder=encoder, info=info, on_image=on_image,
                               progress=progress, manifest=manifest_name(shard))
        records = gather_records(records, shard)
    return [records[str(p)] for p in paths]


def _remaining(G, paths, names, outdir, key, described, restart):
    """(the (path, folder name) pairs still to do, ``{path: ImageRecord}`` of the skipped ones)."""
    done = read_manifest(outdir)
    todo, records = [], {}
    for path, name in zip(paths, names):
        old = done.get(str(path.resolve()))
        if old is not None and old.get("fingerprint") == key and (outdir / name / "losses.json").is_file():
            records[str(path)] = ImageRecord(**{**{k: old.get(k) for k in ("input", "folder", "fingerprint", "final_loss",
                                             "final_terms", "lpips", "psnr", "seconds")}, "klass": old.get("class"), "skipped": True})
            continue
        if old is not None and old.get("fingerprint") != key and not restart:
            raise InputError(
                f"{outdir / name} was projected with other settings: {describe_difference(old.get('described', {}), described) or 'the settings'}; "
                f"pass restart=True (--restart) to redo it, or choose another output folder"
            )
        todo.append((path, name))
    if len(todo) < len(paths):
        logger.info("project: %d of %d images already done in %s (manifest), skipped", len(paths) - len(todo), len(paths), outdir)
    return todo, records


def _run_batches(G, todo, records, outdir, *, key, described, s, prior, all_threads, prior_name, class_idx, classes, batch_size,
                 checkpoint_every, restart, save_video, perceptual_net, encoder, info, on_image, progress, manifest):
    """Project ``todo`` (path, folder name) batch by batch, writing each image's files and a line of the
    manifest file ``manifest``; returns ``records`` with the new :class:`ImageRecord` added."""
    from latentkit.latent.sampling import one_hot
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.project import prepare_targets, project

    if todo and s.perceptual == "vgg" and perceptual_net is None:
        perceptual_net = lpips_vgg(s.perceptual_weights, device=G.w_avg.device, max_resolution=s.max_perceptual_resolution)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="latentkit-loader") as loader:
        pending = loader.submit(prepare_targets, G, [p for p, _ in batches[0]]) if batches else None
        for index, batch in enumerate(batches):
            targets = pending.result()  # [B, C, H, W]: read while the previous batch optimised
            pending = loader.submit(prepare_targets, G, [p for p, _ in batches[index + 1]]) if index + 1 < len(batches) else None
            # named by the batch's files only: a rerun with other settings finds it and is refused with the
            # difference named (or resumes when the settings match), never silently starts over
            batch_key = hashlib.sha256("\n".join(str(p.resolve()) for p, _ in batch).encode()).hexdigest()[:16]
            checkpoint = outdir / f".checkpoint-{batch_key}.pt"
            if restart:
                checkpoint.unlink(missing_ok=True)
            c = one_hot([class_idx] * len(batch), G.c_dim, device=G.w_avg.device) if class_idx is not None else None
            frames: list[torch.Tensor] = []
            started = time.perf_counter()
            # each image's result independent of batches and processes (a lone image: every thread instead)
            with contextlib.nullcontext() if all_threads else one_thread_per_image(G.w_avg.device):
                result = project(G, targets, settings=s, prior=prior, c=c, classes=classes, perceptual_net=perceptual_net,
                                 encoder=encoder,
                                 checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                                 callback=(lambda step, ws: frames.append(ws.cpu())) if save_video else None)
            seconds = (time.perf_counter() - started) / len(batch)
            checkpoint.unlink(missing_ok=True)  # before any line: a crash while writing redoes the rest from step 0
            _check_finite(result, [p for p, _ in batch])
            psnr_db = psnr(result.images.cpu(), result.targets)
            for k, (path, name) in enumerate(batch):
                folder = outdir / name
                extra = dict(info or {}, input=str(path), prior=prior_name, prior_radius=describe_radius(prior),
                             class_search=None if classes is None else list(classes))
                _write_image(folder, result, k, extra, G.c_dim)
                if save_video and frames:
                    noises = {n: v[k : k + 1] for n, v in result.noises.items()}
                    _video(folder / "proj.mp4", G, [f[k : k + 1] for f in frames], noises, result.targets[k : k + 1])
                terms = {n: float(v[k, -1]) for n, v in result.loss_terms.items()}
                record = ImageRecord(
                    input=str(path.resolve()), folder=str(folder), fingerprint=key, final_loss=float(result.losses[k, -1]),
                    final_terms=terms, lpips=terms["perceptual"] if s.perceptual == "vgg" else None,
                    psnr=float(psnr_db[k]), seconds=round(seconds, 3),
                    klass=None if result.classes is None else int(result.classes[k]),
                )
                append_manifest(outdir, {**record.to_json(), "prior_radius": describe_radius(prior), "described": described,
                                         "steps_run": result.steps_run, "stop_reason": result.stop_reason}, name=manifest)
                records[str(path)] = record
                if on_image is not None:
                    on_image(record)
    return records
