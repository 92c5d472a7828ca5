"""Shared pieces of the paper benchmarks: sizes, arguments, the generator and prior, images, markdown.

Every table script takes ``--network`` (default ``mobilestylegan-ffhq``), ``--size quick|cpu|full`` and
``--out`` (default ``examples/paper``) and writes ``<out>/<table>.json`` and ``<out>/<table>.md``;
``run_all.py`` runs them and assembles ``<out>/REPORT.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEFAULT_NETWORK = "mobilestylegan-ffhq"
DEFAULT_OUT = ROOT / "examples" / "paper"
# The example photos: face.png is already an FFHQ-style crop; the others are whole photos, aligned with MTCNN
# (latentkit.projection.align, offline) before projection. Eileen Collins (face.png, astronaut.jpg) appears
# twice, so the distinct people come first.
REAL_TARGETS = [ROOT / "examples" / "face.png", ROOT / "tests" / "data" / "photos" / "grace_hopper.jpg",
                ROOT / "tests" / "data" / "photos" / "astronaut.jpg"]
PRE_ALIGNED = {ROOT / "examples" / "face.png"}


@dataclass(frozen=True)
class Size:
    """How much work each table does (every result file records the size it was run at)."""

    name: str
    prior_samples: int      # fit of the Gaussian prior (seed 0), also P_N
    heldout: int            # Table 1 held-out samples (seed 2; the `cpu` size keeps Table 1 under 3 GB RSS)
    proj_steps: int         # Table 2 steps per method
    gen_targets: int        # Table 2 generated targets (seeds 1000..)
    real_targets: int       # Table 2 real photos (first of REAL_TARGETS, then --targets)
    paper_weights: tuple    # Table 2 the paper's recipe (Adam on w + prior): prior weights ...
    paper_lrs: tuple        # ... times learning rates
    pn_lrs: tuple           # Table 2 P_N's learning rates
    interp_steps: int       # Table 2 frames per interpolation
    interp_pairs: int       # Table 2 disjoint pairs of targets interpolated
    bank: int               # Table 2 generated samples for the midpoint distance
    perturbations: int      # Table 2 random v-steps per image
    convergence_targets: int  # Table 2 targets repeated at 2x steps
    trade_n: int            # Table 3 samples per setting
    bootstrap: int          # Table 3 bootstrap resamples (over seeds) per distance
    artifact_pool: int      # Table 3 mapped samples searched for the largest coefficients
    artifact_k: int         # Table 3 samples shown
    t_method: bool          # Table 2 also runs the Student-t prior
    grid_tune: int = 4      # Table 2 grids: every cell on the first grid_tune targets (cpu: the 3 photos), the best cell on all


SIZES = {
    "quick": Size("quick", 4000, 4000, 3, 2, 1, (1e-5,), (0.1,), (0.1, 0.01), 4, 1, 4, 1, 1, 6, 20, 500, 1, True, 2),
    "cpu": Size("cpu", 100_000, 50_000, 150, 13, 3, (1e-7, 1e-6, 1e-5), (0.1, 0.01), (0.1, 0.01, 0.001), 5, 8, 64, 2, 2,
                200, 200, 10_000, 2, True, 3),
    "full": Size("full", 100_000, 200_000, 1000, 29, 3, (1e-8, 1e-7, 1e-6, 1e-5), (0.1, 0.03, 0.01),
                 (0.1, 0.03, 0.01, 0.003, 0.001), 9, 16, 500, 4, 4, 1000, 500, 100_000, 4, True, 6),
}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--network", default=DEFAULT_NETWORK, help="generator name, path or URL (latentkit.load_generator)")
    p.add_argument("--size", default="cpu", choices=sorted(SIZES), help="quick (test), cpu (this report), full (GPU)")
    p.add_argument("--quick", action="store_const", const="quick", dest="size", help="same as --size quick")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="report folder")
    p.add_argument("--targets", default=None, help="folder of extra real aligned faces for Table 2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip the runs whose result file exists (default); --no-resume recomputes them")
    return p


def setup(args: argparse.Namespace):
    """(G, prior, size, out) for parsed arguments; the prior is the cached fit of size.prior_samples."""
    import latentkit
    from latentkit.latent.prior_cache import cached_prior

    G = latentkit.load_generator(args.network).to(args.device).eval()
    size = SIZES[args.size]
    prior = cached_prior(G, n_samples=size.prior_samples, progress=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return G, prior, size, out


def runs_dir(out: Path, network: str, size: Size) -> Path:
    """``<out>/runs/<network>-<size>``: one result file per run below it (a path network by its file stem)."""
    slug = Path(network).stem if ("/" in network or "." in network) else network
    return Path(out) / "runs" / f"{slug}-{size.name}"


def machine() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        model = ""
    threads = torch.get_num_threads()
    return f"{model or platform.processor() or 'unknown CPU'}, torch {torch.__version__}, {threads} threads"


def commit() -> str:
    """The commit this process started from (HEAD when ``common`` was imported, ``+dirty`` when the library or
    benchmark files differed from it), '' outside git."""
    return _STARTED_AT


def _head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "latentkit", "benchmarks"], cwd=ROOT, check=False).returncode
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("+dirty" if dirty else "")


_STARTED_AT = _head()


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (``resource.getrusage``), GB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


def provenance(size: Size, network: str, started: float) -> dict:
    """What every result file records: commit, size (as run), network, machine, wall time, peak RSS."""
    return {"commit": commit(), "size": asdict(size), "network": network, "machine": machine(),
            "wall_s": time.time() - started, "peak_rss_gb": peak_rss_gb(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def best_cell(lpips: dict, on: list) -> str | None:
    """The grid cell with the lowest mean reconstruction LPIPS over the tuning targets ``on``, from
    ``lpips[cell][target]``; None while a cell lacks one of them, so a choice once made does not change."""
    if not lpips or not on or any(t not in by_target for by_target in lpips.values() for t in on):
        return None
    return min(sorted(lpips), key=lambda cell: float(np.mean([lpips[cell][t] for t in on])))


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (a temporary file renamed over ``path``), so an interrupted run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json))
    tmp.replace(path)


def write(out: Path, name: str, data: dict, markdown: str, *, size: Size, network: str, started: float) -> None:
    """Save ``<name>.json`` and ``<name>.md`` (with the commit, size, network, machine, wall time and peak RSS)."""
    meta = provenance(size, network, started)
    write_json(out / f"{name}.json", {"meta": meta, **data})
    head = f"_Size `{size.name}`, network `{network}`, {meta['machine']}, wall time {meta['wall_s'] / 60:.1f} min._\n\n"
    (out / f"{name}.md").write_text(head + markdown.strip() + "\n")


def _json(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x.tolist()
    return str(x)


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats get 4 significant digits."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def render(G, ws: torch.Tensor, *, batch: int = 4, noise=None) -> torch.Tensor:
    """``G.synthesis`` in batches, no grad, const noise: float ``[N, C, H, W]`` in [-1, 1] on the CPU."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(ws), batch):
            outs.append(G.synthesis(ws[i:i + batch].to(G.w_avg.device), noise_mode="const", noise=noise).cpu())
    return torch.cat(outs)


def render_map(G, ws: torch.Tensor, fn, *, batch: int = 4) -> list:
    """``[fn(images) for each batch]``: render ``ws`` batch by batch without keeping the images (full sizes)."""
    return [fn(render(G, ws[i:i + batch], batch=batch)) for i in range(0, len(ws), batch)]


def mapped(G, seeds) -> torch.Tensor:
    """``[N, num_ws, w_dim]`` for z from the given seeds (as NVIDIA's gen_images)."""
    from latentkit.latent.sampling import z_from_seed

    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(G.w_avg.device)
    with torch.no_grad():
        return G.mapping(z, None)


def save_grid(rows: list[torch.Tensor], path: Path, *, cell: int = 128, labels: list[str] | None = None) -> Path:
    """Save rows of images (each ``[K, C, H, W]`` in [-1, 1]) as one PNG through :func:`latentkit.grid.save_labelled_grid`
    (tiles of at most ``cell`` px; a shorter row is filled with white)."""
    from latentkit.grid import save_labelled_grid

    cols = max(len(r) for r in rows)
    shape = rows[0].shape[1:]
    filled = [torch.cat([r.float().cpu(), torch.ones((cols - len(r), *shape))]) for r in rows]
    return save_labelled_grid(path, torch.cat(filled), cols=[""] * cols, rows=labels or [""] * len(rows), tile=cell)
