"""Projecting uploaded photos in the background: one at a time, with progress and cancel.

An upload is checked before a job starts (size in bytes by the server, then :func:`latentkit.io.load_image`
checks the header's pixel count before decoding and refuses anything that is not an image). The result is
written as ``latentkit project`` writes one image (``projected_w.npz``, ``proj.png``, ``target.png`` and a
``manifest.jsonl`` line) in the uploads folder, so that folder can be opened again with ``--latents``, and
joins the explorer's list.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from latentkit.app.catalog import Catalog
from latentkit.errors import InputError, LatentkitError
from latentkit.io import load_image, save_image, save_latents
from latentkit.projection.outdir import append_manifest
from latentkit.projection.settings import ProjectionSettings

if TYPE_CHECKING:
    from latentkit.latent.prior import GaussianPrior
    from latentkit.nets.generator import Generator

__all__ = ["Job", "Projector", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "CPU_STEPS"]

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
CPU_STEPS = 50  # projection steps by default on a CPU (NVIDIA's 1000 take an hour on the default model there)
_MAX_JOBS = 100


class _Cancelled(Exception):
    """Raised inside the projection's step callback when its job was cancelled."""


@dataclass
class Job:
    """One upload being projected. ``status``: queued, running, done, failed or cancelled."""

    id: str
    name: str
    total: int
    step: int = 0
    status: str = "queued"
    message: str = ""
    loss: float | None = None
    entry: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict[str, Any]:
        """JSON for the page."""
        return {"id": self.id, "name": self.name, "step": self.step, "total": self.total, "status": self.status,
                "message": self.message, "loss": self.loss, "entry": self.entry,
                "seconds": round(time.monotonic() - self.started, 1)}


class Projector:
    """Projects uploads with ``G`` and ``prior`` one at a time into ``folder``; finished ones join ``catalog``.

    Args:
        G, prior: the explorer's generator and prior.
        generator_lock: the explorer's (:attr:`Explorer.generator_lock`): a projection holds it during each
            step and lets waiting renders in between, so the generator never runs two things at once.
        catalog: where finished projections are listed.
        folder: where uploads and their projections are written.
        settings: the projection (e.g. few steps on a CPU: :data:`CPU_STEPS`).
        max_pixels: the largest upload in pixels (width * height).
    """

    def __init__(self, G: Generator, prior: GaussianPrior | None, catalog: Catalog, folder: Path, *,
                 settings: ProjectionSettings, max_pixels: int = MAX_UPLOAD_PIXELS,
                 generator_lock: threading.Lock | None = None) -> None:
        self.G, self.prior, self.catalog, self.folder = G, prior, catalog, Path(folder)
        self.generator_lock = generator_lock if generator_lock is not None else threading.Lock()
        self.settings, self.max_pixels = settings, int(max_pixels)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._one_at_a_time = threading.Lock()

    def submit(self, data: bytes, filename: str) -> Job:
        """Store an upload, check it is an image within the pixel limit, and start projecting it.

        Raises:
            InputError: not an image, or larger than the limit (the message is shown in the page).
        """
        with self._lock:
            number = len(self._jobs)
            if number >= _MAX_JOBS:
                raise InputError(f"{_MAX_JOBS} uploads in this session already: restart the server for more")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(str(filename)).stem)[:40] or "upload"
        name = f"upload{number:03d}-{stem}"
        job_dir = self.folder / name
        job_dir.mkdir(parents=True, exist_ok=True)
        source = job_dir / "upload.bin"
        source.write_bytes(data)
        try:
            target = load_image(source, resolution=self.G.img_resolution, channels=self.G.img_channels,
                                max_pixels=self.max_pixels)  # [1, C, H, W]
        except InputError as err:
            source.unlink(missing_ok=True)
            raise InputError(f"{filename!s:.80}: not accepted: {str(err).replace(str(source), 'the upload')}") from None
        job = Job(f"j{number}", name, self.settings.num_steps)
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, target, job_dir), daemon=True, name=f"project-{job.id}").start()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(str(job_id))
        if job is None:
            raise InputError(f"no projection job {job_id!r}")
        return job

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop after its current step (a queued job never starts)."""
        job = self.get(job_id)
        job.cancel.set()
        return job

    def _run(self, job: Job, target: torch.Tensor, folder: Path) -> None:
        from latentkit.projection.project import project

        def step(index: int, ws: torch.Tensor) -> None:
            job.step = index + 1
            self.generator_lock.release()  # renders waiting for the generator go between two steps
            time.sleep(0.005)
            self.generator_lock.acquire()
            if job.cancel.is_set():
                raise _Cancelled

        with self._one_at_a_time:
            if job.cancel.is_set():
                job.status = "cancelled"
                return
            job.status, job.started = "running", time.monotonic()
            try:
                with self.generator_lock:
                    result = project(self.G, target, settings=self.settings, prior=self.prior, callback=step,
                                     progress=False)
            except _Cancelled:
                job.status, job.message = "cancelled", f"cancelled at step {job.step} of {job.total}"
                return
            except LatentkitError as err:
                job.status, job.message = "failed", str(err)
                return
            except Exception as err:  # a bug: keep its traceback in the log, tell the page
                logger.exception("projection of %s failed", job.name)
                job.status, job.message = "failed", f"{type(err).__name__}: {err}"
                return
        save_latents(folder / "projected_w.npz", result.ws.cpu())
        save_image(folder / "proj.png", result.images[:1].clamp(-1, 1))
        save_image(folder / "target.png", result.targets[:1].clamp(-1, 1))
        loss = float(result.losses[0, -1])
        scores = {"final_loss": round(loss, 6), "seconds": round(time.monotonic() - job.started, 1),
                  "steps": self.settings.num_steps}
        append_manifest(self.folder, {"input": str(folder / "upload.bin"), "folder": str(folder), **scores,
                                      "settings": self.settings.to_dict()})
        entry = self.catalog.add(job.name, result.ws.cpu(), files={"target": folder / "target.png",
                                                                   "proj": folder / "proj.png"},
                                 scores=scores, source="upload")
        job.loss, job.entry, job.status = loss, entry.describe(), "done"
        job.message = f"done: {job.total} steps in {scores['seconds']} s"
