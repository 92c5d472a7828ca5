"""The latents the explorer lists: seeds, rows of latent files, projections of output folders, uploads.

Each entry has an id the page refers to it by, and the only files the server ever sends are the ones an
entry registered here when it was read (its target and projection images): a request names an entry id and
a kind, never a path, so nothing outside the given folders can be asked for.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import InputError
from latentkit.io import load_latents
from latentkit.projection.outdir import read_manifest

__all__ = ["Catalog", "Entry", "FILE_KINDS"]

logger = logging.getLogger(__name__)

FILE_KINDS = ("target", "proj")
_SCORES = ("final_loss", "lpips", "psnr", "seconds")


@dataclass
class Entry:
    """One latent in the list.

    Attributes:
        id: what the page calls it (``'p3'``).
        name: shown in the page.
        ws: ``[1, num_ws, w_dim]`` float32 on the CPU.
        files: kind (``'target'``, ``'proj'``) -> an image file registered when the entry was read.
        scores: the manifest's numbers (final loss, LPIPS, PSNR, seconds), JSON-ready.
        source: the file or folder it came from.
    """

    id: str
    name: str
    ws: torch.Tensor
    files: dict[str, Path] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON for the page: id, name, scores, source and the URLs of its images."""
        return {"id": self.id, "name": self.name, "scores": self.scores, "source": self.source,
                "images": {kind: f"/api/file/{self.id}/{kind}" for kind in self.files}}


class Catalog:
    """A thread-safe, growing list of :class:`Entry` for one generator (``num_ws``, ``w_dim``)."""

    def __init__(self, num_ws: int, w_dim: int) -> None:
        self.num_ws, self.w_dim = int(num_ws), int(w_dim)
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def _fit(self, ws: torch.Tensor, where: str) -> torch.Tensor:
        """``[N, num_ws, w_dim]`` float32 (a W ``[N, 1, w_dim]`` broadcast); InputError when it does not fit."""
        if ws.ndim == 3 and ws.shape[1] == 1:
            ws = ws.expand(-1, self.num_ws, -1)
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise InputError(f"{where}: latents of shape {list(ws.shape)} do not fit this network "
                             f"([N, {self.num_ws}, {self.w_dim}])")
        return ws.float().contiguous()

    def add(self, name: str, ws: torch.Tensor, *, files: dict[str, Path] | None = None,
            scores: dict[str, Any] | None = None, source: str = "") -> Entry:
        """Register ``ws [1, num_ws, w_dim]`` (or W ``[1, 1, w_dim]``) under a new id; returns the entry."""
        ws = self._fit(ws.detach().cpu(), name)
        with self._lock:
            entry = Entry(f"p{len(self._entries)}", str(name), ws[:1].clone(),
                          {k: Path(v).resolve() for k, v in (files or {}).items() if k in FILE_KINDS and Path(v).is_file()},
                          dict(scores or {}), str(source))
            self._entries[entry.id] = entry
        return entry

    def read(self, source: str | os.PathLike) -> list[Entry]:
        """Add the latents of a projection output folder (its ``manifest.jsonl``, else every
        ``*/projected_w.npz`` in it) or of a latent file (one entry per row).

        Raises:
            InputError: a missing source, or latents that do not fit the network.
        """
        path = Path(source)
        if path.is_file():
            ws = self._fit(load_latents(path), str(path))
            return [self.add(f"{path.stem}[{i}]" if len(ws) > 1 else path.stem, ws[i : i + 1], source=str(path))
                    for i in range(len(ws))]
        if not path.is_dir():
            raise InputError(f"--latents {path}: no such file or folder")
        records = read_manifest(path)
        folders = [(path / Path(r.get("folder", "")).name, r) for r in records.values()] if records else \
            [(f.parent, {}) for f in sorted(path.glob("*/projected_w.npz"))]
        out = []
        for folder, record in folders:
            latent = folder / "projected_w.npz"
            if not latent.is_file():
                logger.warning("%s: no projected_w.npz; skipped", folder)
                continue
            scores = {k: record[k] for k in _SCORES if isinstance(record.get(k), (int, float))}
            if record.get("input"):
                scores["input"] = Path(str(record["input"])).name
            out.append(self.add(folder.name, self._fit(load_latents(latent), str(latent))[:1],
                                files={"target": folder / "target.png", "proj": folder / "proj.png"},
                                scores=scores, source=str(path)))
        return out

    def get(self, entry_id: str) -> Entry:
        """The entry called ``entry_id``; InputError if there is none."""
        with self._lock:
            entry = self._entries.get(str(entry_id))
        if entry is None:
            raise InputError(f"no latent {entry_id!r} in the list")
        return entry

    def file(self, entry_id: str, kind: str) -> Path | None:
        """The registered ``kind`` image of an entry, or None (never any other file)."""
        with self._lock:
            entry = self._entries.get(str(entry_id))
        return None if entry is None else entry.files.get(kind)

    def listing(self) -> list[dict[str, Any]]:
        """Every entry's :meth:`Entry.describe`, in the order they were added."""
        with self._lock:
            return [e.describe() for e in self._entries.values()]
