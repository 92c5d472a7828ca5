"""The one run fingerprint of a projection: what decides an image's result besides the image.

:func:`run_fingerprint` describes and hashes the settings, the generator, the prior and the class (a batch
projection's manifest records it per image); :func:`fingerprint` adds the targets, labels, LPIPS weights and
an encoder's start (a checkpoint resumes only a run with the same one); :func:`describe_difference` names what
changed, so a rerun with other settings is refused with the difference named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from latentkit.latent.radius import radius_key
from latentkit.nets.generator import Generator
from latentkit.projection.settings import ProjectionSettings

if TYPE_CHECKING:
    from latentkit.latent.prior_protocol import LatentPrior

__all__ = ["describe_difference", "fingerprint", "run_fingerprint"]


def run_fingerprint(G: Generator, settings: ProjectionSettings, prior: LatentPrior | None, *, class_idx: int | None = None,
                    classes: Sequence[int] | None = None, encoder: str | None = None) -> tuple[str, dict[str, Any]]:
    """(sha256 prefix, the description it hashes) of everything that decides an image's result besides the
    image: the settings, the generator, the prior (a hash of its mean, its radius model), the class and, for
    a run started from an encoder, that encoder's fingerprint (``encoder``).

    The one run fingerprint: the manifest of a batch projection records it per image, and a checkpoint's
    :func:`fingerprint` adds the targets to it.
    """
    prior_hash = None if prior is None else hashlib.sha256(
        prior.mean_.detach().cpu().double().numpy().tobytes()).hexdigest()[:16]
    described = {
        "settings": settings.to_dict(),
        "generator": G.sha256 or str(G.source) or G.architecture,
        "prior": prior_hash,
        "class": class_idx,
        "classes": None if classes is None else list(classes),
    }
    radius = radius_key(prior)  # the Student-t's nu; absent for a Gaussian prior, whose fingerprints stay as they were
    if radius is not None:
        described["prior_radius"] = radius
    if encoder is not None:  # another encoder gives other results
        described["encoder"] = encoder
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16], described


def fingerprint(
    G: Generator,
    targets: torch.Tensor,
    c: torch.Tensor,
    settings: ProjectionSettings,
    prior: LatentPrior | None,
    perceptual_weights: str | None,
    start_ws: torch.Tensor | None = None,
) -> str:
    """sha256 of a checkpointed run: :func:`run_fingerprint` plus the targets ``[N, C, H, W]``, the labels
    ``[N, c_dim]`` and where the LPIPS weights came from; a checkpoint resumes only a run with the same one."""
    digest = hashlib.sha256()
    digest.update(targets.detach().cpu().numpy().tobytes())
    digest.update(c.detach().cpu().numpy().tobytes())
    digest.update(run_fingerprint(G, settings, prior)[0].encode())
    digest.update(json.dumps(perceptual_weights).encode())
    if start_ws is not None:  # another encoder's start must not resume this run
        digest.update(start_ws.detach().to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``'num_steps=1000 (now 30), prior ...'``: what differs between two descriptions of :func:`run_fingerprint`."""
    parts = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            parts += [f"{k}={a.get(k)!r} (now {b.get(k)!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            parts.append(f"{key}={a!r} (now {b!r})")
    return ", ".join(parts)
