"""Tuning projected folders, resumably: the library side of ``latentkit tune`` and ``project --tune-steps``.

A projected folder ``OUTDIR/<name>/`` (written by :func:`latentkit.projection.batch.project_files`) holds
``projected_w.npz`` (the pivot), ``projected_noise.npz`` and ``target.png``. Tuning adds ``tuned.safetensors``
(the :class:`~latentkit.projection.delta.GeneratorDelta`), ``proj_tuned.png`` (the tuned generator at the
pivot, rendered from the saved delta) and ``tune.json`` (losses, settings), and appends to
``OUTDIR/manifest.jsonl`` the image's projection line extended with ``pivot_lpips``, ``pivot_psnr``,
``tuned_lpips``, ``tuned_psnr``, ``delta_bytes``, ``tune_seconds`` and ``tune_fingerprint`` (the last line
per input wins, so the projection's resume logic reads the same fingerprint as before).

A folder counts as tuned when its manifest line has the same tune fingerprint and its delta exists;
batches are checkpointed every ``checkpoint_every`` steps and on Ctrl-C, and a rerun resumes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.errors import InputError
from latentkit.nets.generator import Generator
from latentkit.projection.settings import DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT_EVERY
from latentkit.projection.tune_settings import TuneSettings

__all__ = ["TunedRecord", "estimate_tune_seconds", "load_projection", "tune_folders", "DELTA_FILE", "TUNED_IMAGE"]

logger = logging.getLogger(__name__)

DELTA_FILE = "tuned.safetensors"
TUNED_IMAGE = "proj_tuned.png"


@dataclass(frozen=True)
class TunedRecord:
    """One tuned folder: what its manifest line adds."""

    folder: str
    pivot_lpips: float | None
    pivot_psnr: float
    tuned_lpips: float | None
    tuned_psnr: float
    delta_bytes: int
    seconds: float
    skipped: bool = False


@dataclass
class Projection:
    """A projected folder read back: pivot ``ws [1, num_ws, w_dim]``, ``noise`` name -> ``[1, 1, H, W]``,
    ``target [1, C, H, W]`` in [-1, 1], one-hot ``c [1, c_dim]`` or None."""

    folder: Path
    ws: torch.Tensor
    noise: dict[str, torch.Tensor]
    target: torch.Tensor
    c: torch.Tensor | None


def load_projection(G: Generator, folder: str | os.PathLike) -> Projection:
    """Read a projected folder (``projected_w.npz``, ``projected_noise.npz`` if present, ``target.png``).

    Raises:
        InputError: a missing file or latents that do not fit ``G``.
    """
    from latentkit.generate import projection_noise
    from latentkit.io import load_latents
    from latentkit.projection.project import prepare_targets

    folder = Path(folder)
    w_file, target_file = folder / "projected_w.npz", folder / "target.png"
    for path in (w_file, target_file):
        if not path.is_file():
            raise InputError(f"{folder} is not a projected folder: {path.name} is missing (run latentkit project first)")
    ws = load_latents(w_file)
    G.check_ws(ws)
    if ws.shape[0] != 1:
        raise InputError(f"{w_file} holds {ws.shape[0]} latents; a projected folder holds one")
    noise = projection_noise(w_file)
    with np.load(w_file, allow_pickle=False) as data:
        c = torch.from_numpy(np.array(data["c"], dtype=np.float32)) if "c" in data.files else None
    return Projection(folder, ws, noise, prepare_targets(G, target_file), c)


def _psnr(images: torch.Tensor, targets: torch.Tensor) -> list[float]:
    from latentkit.projection.batch import psnr

    return [float(x) for x in psnr(images.cpu(), targets.cpu())]


def tune_key(G: Generator, settings: TuneSettings, prior: Any) -> str:
    """The tune fingerprint of a folder's manifest line (settings, network, prior)."""
    from latentkit.projection.delta import network_fingerprint

    mean = getattr(prior, "mean_", None)
    described = {"settings": settings.to_dict(), "network": network_fingerprint(G),
                 "prior": None if prior is None else (hashlib.sha256(mean.detach().cpu().double().numpy().tobytes()).hexdigest()[:16]
                                                      if isinstance(mean, torch.Tensor) else type(prior).__name__)}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def estimate_tune_seconds(G: Generator, folder: str | os.PathLike, settings: TuneSettings, *, prior: Any = None,
                          perceptual_net: Any = None) -> float:
    """Seconds per tuning step of one image, measured: the mean of two steps after building the state."""
    import dataclasses

    from latentkit.projection.tune import tune

    one = load_projection(G, folder)
    started = time.perf_counter()
    tune(G, one.target, one.ws, noise=one.noise or None, c=one.c, prior=prior, perceptual_net=perceptual_net,
         settings=dataclasses.replace(settings, num_steps=2), progress=False)
    return (time.perf_counter() - started) / 3  # two steps plus the final render and probe, about one step


def tune_folders(
    G: Generator,
    folders: Sequence[str | os.PathLike],
    *,
    settings: TuneSettings | None = None,
    prior: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    restart: bool = False,
    perceptual_net: Any = None,
    on_image: Callable[[TunedRecord], None] | None = None,
    progress: bool = True,
) -> list[TunedRecord]:
    """Tune every projected folder (skipping those tuned with the same settings), writing its files.

    Args:
        G: the generator the folders were projected with.
        folders: ``OUTDIR/<name>`` folders of ``latentkit project``.
        settings: the :class:`TuneSettings` (None: the defaults).
        prior: a fitted prior for the locality samples (see :func:`~latentkit.projection.tune.tune`), or None.
        batch_size: folders tuned together (each its own delta; results do not depend on it).
        checkpoint_every: steps between checkpoints (and on Ctrl-C).
        restart: retune folders tuned before (and discard checkpoints).
        perceptual_net: LPIPS to share (None: built from the settings).
        on_image: called with each :class:`TunedRecord` once its files are written.
        progress: tqdm bars on stderr.

    Returns:
        One :class:`TunedRecord` per folder.

    Raises:
        InputError: a folder that is not a projection, or another run writing to the output folder.
        ProjectionInterrupted: Ctrl-C (the batch's state is checkpointed; a rerun resumes).
    """
    from latentkit.projection.lpips import lpips_vgg
    from latentkit.projection.outdir import folder_lock

    s = settings if settings is not None else TuneSettings()
    paths = [Path(f) for f in folders]
    if not paths:
        raise InputError("no folders to tune: give OUTDIR/<name> folders written by latentkit project")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for path in paths:
        if not (path / "projected_w.npz").is_file():
            raise InputError(f"{path} is not a projected folder (no projected_w.npz); run latentkit project first")
    key = tune_key(G, s, prior)
    net = perceptual_net
    if net is None and s.uses_lpips:
        net = lpips_vgg(s.perceptual_weights, device=G.w_avg.device, max_resolution=s.max_perceptual_resolution)
    records: dict[Path, TunedRecord] = {}
    by_outdir: dict[Path, list[Path]] = {}
    for path in paths:
        by_outdir.setdefault(path.resolve().parent, []).append(path)
    for outdir, group in by_outdir.items():
        with folder_lock(outdir):
            todo = []
            for path, line in zip(group, _lines_for(outdir, group)):
                done = line.get("tune_fingerprint") == key and (path / DELTA_FILE).is_file() and not restart
                if done:
                    records[path] = TunedRecord(str(path), line.get("pivot_lpips"), line.get("pivot_psnr", 0.0),
                                                line.get("tuned_lpips"), line.get("tuned_psnr", 0.0),
                                                int(line.get("delta_bytes", 0)), float(line.get("tune_seconds", 0)), True)
                else:
                    todo.append((path, line))
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                for record in _tune_batch(G, batch, outdir, s, prior, net, key, checkpoint_every, restart, progress):
                    records[Path(record.folder)] = record
                    if on_image is not None:
                        on_image(record)
    return [records[p] if p in records else records[Path(str(p))] for p in paths]


def _lines_for(outdir: Path, group: list[Path]) -> list[dict[str, Any]]:
    """Each folder's latest manifest line (matched on its folder), or a new line naming its target."""
    from latentkit.projection.outdir import read_manifest

    by_folder = {str(Path(r.get("folder", "")).resolve()): r for r in read_manifest(outdir).values()}
    return [dict(by_folder.get(str(p.resolve()), {"input": str((p / "target.png").resolve()), "folder": str(p)}))
            for p in group]


def _tune_batch(G, batch, outdir, s, prior, net, key, checkpoint_every, restart, progress) -> list[TunedRecord]:
    from latentkit.io import atomic_path, save_image
    from latentkit.projection.outdir import append_manifest
    from latentkit.projection.tune import stack_noise, tune

    items = [load_projection(G, path) for path, _ in batch]
    labels = torch.cat([it.c for it in items if it.c is not None]) if items[0].c is not None else None
    batch_key = hashlib.sha256(("\n".join(str(p.resolve()) for p, _ in batch) + key).encode()).hexdigest()[:16]
    checkpoint = outdir / f".tune-checkpoint-{batch_key}.pt"
    if restart:
        checkpoint.unlink(missing_ok=True)
    started = time.perf_counter()
    result = tune(G, torch.cat([it.target for it in items]), torch.cat([it.ws for it in items]), settings=s, prior=prior,
                  noise=stack_noise([it.noise for it in items]), c=labels, perceptual_net=net, checkpoint=checkpoint,
                  checkpoint_every=checkpoint_every, progress=progress)
    seconds = (time.perf_counter() - started) / len(items)
    checkpoint.unlink(missing_ok=True)
    with torch.no_grad():
        tuned_lpips = net(result.images.clamp(-1, 1), result.targets.to(result.images.device)) if net is not None else None
        pivot_lpips = net(result.pivot_images.clamp(-1, 1), result.targets.to(result.images.device)) if net is not None else None
    tuned_psnr, pivot_psnr = _psnr(result.images, result.targets), _psnr(result.pivot_images, result.targets)
    out = []
    for k, ((path, line), delta) in enumerate(zip(batch, result.deltas)):
        delta.save(path / DELTA_FILE)
        save_image(path / TUNED_IMAGE, result.images[k : k + 1].clamp(-1, 1))
        record = TunedRecord(
            folder=str(path), pivot_lpips=None if pivot_lpips is None else round(float(pivot_lpips[k]), 6),
            pivot_psnr=round(pivot_psnr[k], 4), tuned_lpips=None if tuned_lpips is None else round(float(tuned_lpips[k]), 6),
            tuned_psnr=round(tuned_psnr[k], 4), delta_bytes=(path / DELTA_FILE).stat().st_size, seconds=round(seconds, 3))
        with atomic_path(path / "tune.json") as tmp:
            tmp.write_text(json.dumps({
                "settings": s.to_dict(), "learning_rate_used": s.lr, "locality_weights_used": list(s.locality_weights), "perceptual_weights": result.perceptual_weights, "delta_file": DELTA_FILE,
                **{k2: v for k2, v in record.__dict__.items() if k2 not in ("folder", "skipped")},
                "losses": [round(float(x), 6) for x in result.losses[k]],
                "loss_terms": {n: [round(float(x), 6) for x in v[k]] for n, v in result.loss_terms.items()},
            }, indent=1))
        line = dict(line, pivot_lpips=record.pivot_lpips, pivot_psnr=record.pivot_psnr, tuned_lpips=record.tuned_lpips,
                    tuned_psnr=record.tuned_psnr, delta_file=DELTA_FILE, delta_bytes=record.delta_bytes,
                    tune_seconds=record.seconds, tune_fingerprint=key)
        append_manifest(outdir, line)
        out.append(record)
    return out
