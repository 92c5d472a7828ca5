"""The tau-versus-psi study: how much identity each method keeps for a given sample quality.

For ``N`` samples ``ws = G.mapping(z)`` (seeds ``seed .. seed + N - 1``, untruncated), every setting renders
a moved copy (log compression :func:`~latentkit.latent.compress.compress` with each tau, truncation
:func:`~latentkit.latent.compress.truncate` with each psi) and measures:

* identity: cosine similarity of the face embedding of each moved sample to that of its own untruncated
  original (:mod:`latentkit.metrics.identity`), mean and std over samples;
* quality: Fréchet and kernel distance of the moved samples to a reference set. The reference is the
  ``real`` images when given; otherwise it is the generator's own untruncated samples for the *next*
  ``N`` seeds (``seed + N .. seed + 2N - 1``), so it shares no sample with the evaluated set. A row
  ``method='none'`` (the untruncated samples themselves) gives the floor of that distance at this ``N``.

Results are a :class:`TradeoffResult` that :func:`save_tradeoff` writes as CSV, JSON and a plot with one
curve for tau and one for psi (identity against distance, the seed paper's figure).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from latentkit.latent.prior_cache import cached_prior
from latentkit.errors import InputError
from latentkit.metrics.settings import TradeoffSettings, parse_floats

if TYPE_CHECKING:
    from latentkit.nets.generator import Generator
    from latentkit.latent.prior import GaussianPrior

__all__ = ["TradeoffResult", "TradeoffSettings", "parse_floats", "plot_tradeoff", "save_tradeoff", "tradeoff"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TradeoffResult:
    """Rows of the study, one per setting.

    Attributes:
        rows: dicts with ``method`` (``'none'``, ``'tau'`` or ``'psi'``), ``value``, ``identity``,
            ``identity_std``, ``faces_missing`` and the distance keys (e.g. ``fid``, ``kid``, ``kid_std``, or
            ``fd_pixels``...).
        distance_key: the key of the Fréchet distance in ``rows`` (``'fid'`` for Inception features).
        reference: what the distances were measured against.
        settings: the settings used.
        prior_info: where the prior came from.
    """

    rows: list[dict[str, Any]]
    distance_key: str
    reference: str
    settings: TradeoffSettings
    prior_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "rows": self.rows,
            "distance_key": self.distance_key,
            "reference": self.reference,
            "settings": asdict(self.settings),
            "prior": self.prior_info,
        }


def _classes(G: Generator, seeds: range) -> torch.Tensor | None:
    if not G.c_dim:
        return None
    from latentkit.latent.sampling import one_hot

    return one_hot([int(np.random.RandomState(s).randint(G.c_dim)) for s in seeds], G.c_dim, device=G.w_avg.device)


def _mapped(G: Generator, seeds: range) -> tuple[torch.Tensor, torch.Tensor | None]:
    from latentkit.latent.sampling import z_from_seed

    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(G.w_avg.device)
    c = _classes(G, seeds)
    with torch.no_grad():
        return G.mapping(z, c), c  # [N, num_ws, w_dim]


def _render(G: Generator, ws: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 ``[B, 3, H, W]`` batches of ``G.synthesis(ws)``."""
    from latentkit.metrics.image_sources import to_uint8_batch

    for start in range(0, len(ws), batch_size):
        with torch.no_grad():
            yield to_uint8_batch(G.synthesis(ws[start : start + batch_size], noise_mode="const").cpu())


def tradeoff(
    G: Generator,
    *,
    prior: GaussianPrior | None = None,
    real: str | os.PathLike | torch.Tensor | None = None,
    settings: TradeoffSettings = TradeoffSettings(),
    progress: bool = True,
) -> TradeoffResult:
    """Run the tau-versus-psi study on a generator.

    Args:
        G: the generator (computation runs where its parameters are).
        prior: a fitted :class:`~latentkit.latent.prior.GaussianPrior` of ``G``; None uses
            ``cached_prior(G, n_samples=settings.prior_samples)`` (fitted once, then read from the cache).
        real: reference images (folder or ``[N, C, H, W]`` in [-1, 1]); None uses ``G``'s own untruncated
            samples for the next N seeds (see the module docstring).
        settings: :class:`TradeoffSettings`.
        progress: tqdm bar on stderr.

    Returns:
        :class:`TradeoffResult` with one row for the untruncated samples, then one per tau and per psi.

    Raises:
        InputError: bad settings, or no face found when ``detect_faces`` is set and every sample fails.
        WeightsUnavailableError: facenet or Inception weights missing offline.

    Example:
        >>> result = tradeoff(G, prior=prior, settings=TradeoffSettings(num_samples=2000))  # doctest: +SKIP
        >>> save_tradeoff(result, "study/")                                                 # doctest: +SKIP
    """
    from tqdm import tqdm

    from latentkit.latent.compress import compress, truncate
    from latentkit.metrics.identity import FaceEmbedder, choose_backend
    from latentkit.metrics.features import feature_extractor, resolve_features, run_extractor
    from latentkit.metrics.quality import (
        frechet_distance,
        kernel_distance,
        metric_keys,
    )

    s = settings
    n = s.num_samples
    if prior is None:
        # the default (Gaussian) radius: cached_prior returns the GaussianPrior itself
        prior = cast("GaussianPrior", cached_prior(G, n_samples=s.prior_samples, progress=progress))
        prior_info = {"fitted_here": True, "n_samples": s.prior_samples}
    else:
        prior_info = {"fitted_here": False, "n_samples": int(getattr(prior, "n_samples_", 0))}
    backend = choose_backend(s.face_weights) if s.identity_backend == "auto" else s.identity_backend
    logger.info("tradeoff: identity by %s, distances in the %s feature space", backend, resolve_features(s.features, s.inception_weights))
    embedder = FaceEmbedder(backend, detect=s.detect_faces, face_weights=s.face_weights, device=G.w_avg.device)
    features = resolve_features(s.features, s.inception_weights)
    extract = feature_extractor(features, inception_weights=s.inception_weights, device=G.w_avg.device)
    fd_key, kd_key = metric_keys(features)

    def features_of(ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, embs = [], []
        for batch in _render(G, ws, s.batch_size):
            feats.append(extract(batch))
            embs.append(embedder.embed([np.ascontiguousarray(x) for x in batch.permute(0, 2, 3, 1).numpy()])[0])
        return torch.cat(feats), torch.cat(embs)

    if real is not None:
        ref_feats = run_extractor(extract, real, "real", features=features, num_samples=None, seed=s.seed,
                                   batch_size=s.batch_size, progress=progress)
        reference = f"real images ({real if not isinstance(real, torch.Tensor) else 'tensor'}, {len(ref_feats)} images)"
    else:
        ref_ws, _ = _mapped(G, range(s.seed + n, s.seed + 2 * n))
        batches = tqdm(_render(G, ref_ws, s.batch_size), total=-(-n // s.batch_size), disable=not progress,
                       desc="reference images", unit="batch", leave=False)
        ref_feats = torch.cat([extract(b) for b in batches])
        reference = f"generator's untruncated samples, seeds {s.seed + n}..{s.seed + 2 * n - 1}"

    ws, c = _mapped(G, range(s.seed, s.seed + n))
    centre = G.class_average(c if c is not None else torch.zeros(n, 0, device=ws.device))  # [N, w_dim]
    plan: list[tuple[str, float]] = [("none", 1.0)] + [("tau", t) for t in s.taus] + [("psi", p) for p in s.psis]
    rows: list[dict[str, Any]] = []
    original_emb = None
    with tqdm(total=len(plan), disable=not progress, desc="tradeoff", unit="setting", leave=False) as bar:
        for method, value in plan:
            if method == "none":
                moved = ws
            elif method == "tau":
                moved = compress(ws, prior, tau=value)
            else:
                moved = truncate(ws, centre, value)
            feats, emb = features_of(moved)
            if original_emb is None:
                original_emb = emb
            sims = (emb * original_emb).sum(dim=1)  # [N], NaN where a face is missing
            ok = ~torch.isnan(sims)
            if not bool(ok.any()):
                raise InputError(
                    f"no face found in any sample for {method}={value} (backend {backend!r}); "
                    "use detect_faces=False (--no-detect-faces) for aligned generator output"
                )
            kd, kd_std = kernel_distance(ref_feats, feats, seed=s.seed)
            rows.append({
                "method": method,
                "value": value,
                "identity": float(sims[ok].mean()),
                "identity_std": float(sims[ok].std()) if int(ok.sum()) > 1 else 0.0,
                "faces_missing": int((~ok).sum()),
                fd_key: frechet_distance(ref_feats, feats),
                kd_key: kd,
                f"{kd_key}_std": kd_std,
            })
            bar.update(1)
    return TradeoffResult(rows, fd_key, reference, s, prior_info)


def plot_tradeoff(result: TradeoffResult, path: str | os.PathLike) -> Path:
    """Plot identity similarity against the distance, one curve for tau and one for psi; PNG, atomic.

    Returns:
        The path written.

    Raises:
        InputError: matplotlib is not installed (``pip install 'latentkit[plot]'``).
    """
    try:
        from matplotlib.figure import (
            Figure,  # no pyplot: leaves the user's backend and figures alone
        )
    except ImportError as err:
        raise InputError(f"plotting the trade-off needs matplotlib: pip install 'latentkit[plot]' ({err})") from err

    from latentkit.files import atomic_path

    key = result.distance_key
    fig = Figure(figsize=(6, 4.5), dpi=120)
    ax = fig.subplots()
    for method, label, style in (("tau", "log compression (tau)", "o-"), ("psi", "truncation (psi)", "s--")):
        rows = sorted((r for r in result.rows if r["method"] == method), key=lambda r: r["value"])
        if not rows:
            continue
        xs, ys = [r[key] for r in rows], [r["identity"] for r in rows]
        ax.plot(xs, ys, style, label=label)
        for r in rows:
            ax.annotate(f"{method}={r['value']:g}", (r[key], r["identity"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for r in result.rows:
        if r["method"] == "none":
            ax.plot([r[key]], [r["identity"]], "k*", markersize=10, label="untruncated")
    ax.set_xlabel(key.upper() if key in ("fid",) else key)
    ax.set_ylabel(f"identity similarity to original ({result.settings.identity_backend})")
    ax.set_title(f"tau vs psi, N={result.settings.num_samples}")
    ax.ticklabel_format(useOffset=False)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def save_tradeoff(result: TradeoffResult, out_dir: str | os.PathLike, *, stem: str = "tradeoff") -> dict[str, Path]:
    """Write ``<stem>.csv``, ``<stem>.json`` and ``<stem>.png`` into ``out_dir`` (atomically).

    Returns:
        ``{'csv': path, 'json': path, 'png': path}``.
    """
    from latentkit.files import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json", "png": out / f"{stem}.png"}
    columns = list(result.rows[0].keys()) if result.rows else []
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.rows)
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    plot_tradeoff(result, paths["png"])
    return paths
