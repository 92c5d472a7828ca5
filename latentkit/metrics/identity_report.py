"""Same-person verdicts for image files: pairing two folders by file name, comparing every pair with
:func:`~latentkit.metrics.identity.compare_faces`, and the JSON-ready report ``latentkit identity`` prints."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentkit.errors import InputError
from latentkit.io import IMAGE_SUFFIXES
from latentkit.metrics.identity import FaceComparison, compare_faces
from latentkit.metrics.settings import ON_MISSING

__all__ = ["IdentityReport", "ON_MISSING", "compare_face_files", "paired_files"]

def paired_files(dir_a: str | os.PathLike, dir_b: str | os.PathLike) -> tuple[list[str], list[str], int]:
    """The images of ``dir_a`` that have a file of the same name in ``dir_b``, by sorted name.

    Returns:
        ``(files_a, files_b, unmatched)``: paths of the pairs (possibly empty) and how many images of
        ``dir_a`` have no partner.
    """
    a, b = Path(dir_a), Path(dir_b)
    names = sorted(p.name for p in a.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    matched = [n for n in names if (b / n).is_file()]
    return [str(a / n) for n in matched], [str(b / n) for n in matched], len(names) - len(matched)


@dataclass(frozen=True)
class IdentityReport:
    """:func:`compare_face_files`' result: the files and the :class:`FaceComparison` of each pair."""

    files_a: list[str]
    files_b: list[str]
    comparison: FaceComparison

    @property
    def faces_missing(self) -> int:
        """Pairs with no face in one image or both."""
        return int(torch.isnan(self.comparison.similarity).sum())

    def to_dict(self, *, single: bool = False) -> dict[str, Any]:
        """JSON-ready: backend, operating point, threshold, one entry per pair (``same_person`` None where a
        face is missing), the mean similarity over the pairs with faces (None if none) and ``faces_missing``;
        with ``single`` (a comparison of two images) also the first pair's ``similarity``, ``distance`` and
        ``same_person`` at the top level."""
        c = self.comparison
        pairs = []
        for fa, fb, x, d, v in zip(self.files_a, self.files_b, c.similarity.tolist(), c.distance.tolist(),
                                   c.same_person.tolist()):
            found = math.isfinite(x)
            pairs.append({"a": fa, "b": fb, "similarity": x if found else None, "distance": d if found else None,
                          "same_person": bool(v) if found else None})
        sims = [float(p["similarity"]) for p in pairs if p["similarity"] is not None]
        out: dict[str, Any] = {
            "backend": c.backend,
            "operating_point": c.operating_point,
            "threshold": c.threshold,
            "pairs": pairs,
            "mean": sum(sims) / len(sims) if sims else None,
            "faces_missing": self.faces_missing,
        }
        if single:
            out.update(similarity=pairs[0]["similarity"], distance=pairs[0]["distance"],
                       same_person=pairs[0]["same_person"])
        return out


def compare_face_files(
    files_a: Sequence[str | os.PathLike],
    files_b: Sequence[str | os.PathLike],
    *,
    backend: str = "auto",
    detect: bool = True,
    face_weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    on_missing: str = "raise",
) -> IdentityReport:
    """Same person or not for each pair ``(files_a[i], files_b[i])`` (see :func:`compare_faces`).

    Args:
        files_a, files_b: image files, as many of each.
        backend, detect, face_weights, device: as in :func:`compare_faces`.
        on_missing: ``'raise'``: a pair without a face is an error; ``'nan'``: it is reported as NaN.

    Returns:
        :class:`IdentityReport`.

    Raises:
        InputError: a pair without a face (``on_missing='raise'``), an unknown ``on_missing``, or files
            of unequal count.
    """
    if on_missing not in ON_MISSING:
        raise InputError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    if len(files_a) != len(files_b) or not files_a:
        raise InputError(f"give as many files in a as in b (at least one), got {len(files_a)} and {len(files_b)}")
    a, b = [str(f) for f in files_a], [str(f) for f in files_b]
    report = IdentityReport(a, b, compare_faces(a, b, backend=backend, detect=detect, face_weights=face_weights,
                                                device=device))
    missing = [(fa, fb) for fa, fb, x in zip(a, b, report.comparison.similarity.tolist()) if not math.isfinite(x)]
    if missing and on_missing == "raise":
        raise InputError(f"no face found in {missing[0][0]} or {missing[0][1]} ({len(missing)} of {len(a)} pairs, "
                         f"backend {report.comparison.backend!r}); pass --on-missing nan (on_missing='nan') to report "
                         "null for those pairs, or --no-detect (detect=False) for aligned face crops")
    return report
