"""The explorer's state: one generator shared by every tab, and renders that always show the latest request.

Every render goes through :meth:`Explorer.latest_only`: a request is numbered per (tab, view) when it
arrives, waits for the generator, and is dropped (:class:`Superseded`) if a newer request of the same tab and
view arrived while it waited. A slider dragged fast therefore costs at most one render in progress plus the
latest value, never a backlog, and several tabs take turns on one generator.
"""

from __future__ import annotations

import io as _bytes_io
import base64
import hashlib
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from latentkit.app.catalog import Catalog
from latentkit.app.settings import DEFAULT_COMPONENTS, DEFAULT_LEG_FRAMES, DEFAULT_PREVIEW
from latentkit.app.videos import downscale, edit_frames, path_frames, seed_latents, write_video
from latentkit.errors import InputError
from latentkit.io import save_latents, to_uint8
from latentkit.latent.compress import compress, truncate
from latentkit.latent.directions import Directions, prior_directions
from latentkit.latent.edit import edit, parse_layers
from latentkit.latent.interpolate import SPACES, interpolate, render_interpolation
from latentkit.latent.sampling import z_from_seed

if TYPE_CHECKING:
    from latentkit.latent.prior import GaussianPrior
    from latentkit.nets.generator import Generator

__all__ = ["Explorer", "Superseded", "DEFAULT_PREVIEW", "DEFAULT_COMPONENTS", "MAX_SEEDS", "VIEWS"]

MAX_SEEDS = 4  # seeds view: a small grid
POSITIONS = 101  # interpolation slider: t = 0, 0.01, ..., 1
VIEWS = ("seeds", "edit", "interp")
PICKS = ("untruncated", "truncated", "compressed")
_MAX_CLIENTS = 512
_CACHED_IMAGES = 32  # rendered previews kept by latent: a slider that moves one image re-renders only that one
T = TypeVar("T")


class Superseded(Exception):
    """A render request that a newer one of the same tab and view replaced before it ran."""


@dataclass(frozen=True)
class _Shown:
    """What a tab's view shows now: its latents ``[1, num_ws, w_dim]`` by name, and how to make its video."""

    ws: dict[str, torch.Tensor]
    video: Callable[[Path, int], Path] | None = None


def png_data_url(images: torch.Tensor, preview: int | None) -> str:
    """``images [N, C, H, W]`` in [-1, 1] stacked vertically, downscaled to ``preview`` px, as a PNG data URL."""
    from PIL import Image

    array = to_uint8(downscale(images.float().cpu(), preview))  # [N, h, w, C]
    array = array.reshape(-1, *array.shape[2:])  # [N * h, w, C]
    if array.shape[-1] == 1:
        array = array[..., 0]
    buf = _bytes_io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Explorer:
    """One generator, its prior and directions, the latent list, and each tab's current latents.

    Args:
        G: the generator (every tab shares it).
        prior: a fitted :class:`~latentkit.latent.prior.GaussianPrior` of ``G`` (compression, v, components).
        catalog: the latents to list (None: an empty one).
        preview: longest side of the images sent to the page (None: full resolution).
        n_components: sliders for the first K principal components of v.
        directions: fitted directions (``Directions``, e.g. from ``latentkit directions``) with sliders too.
    """

    def __init__(self, G: Generator, prior: GaussianPrior, *, catalog: Catalog | None = None,
                 preview: int | None = DEFAULT_PREVIEW, n_components: int = DEFAULT_COMPONENTS,
                 directions: Sequence[Directions] = ()) -> None:
        if prior.w_dim != G.w_dim:
            raise InputError(f"the prior has w_dim {prior.w_dim}, the network {G.w_dim}: fit one for this network")
        self.G, self.prior, self.preview = G, prior, preview
        self.catalog = catalog if catalog is not None else Catalog(G.num_ws, G.w_dim)
        pcs = prior_directions(prior, n_components=max(1, min(int(n_components), G.w_dim)))
        self.directions: list[Directions] = [pcs[i] for i in range(len(pcs))]
        for dirs in directions:
            self.directions += [dirs[i] for i in range(len(dirs)) if dirs.w_dim == G.w_dim]
        self.renders = 0
        self._generator = threading.Lock()
        self._numbers = threading.Lock()
        self._latest: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._shown: OrderedDict[tuple[str, str], _Shown] = OrderedDict()
        self._images: OrderedDict[bytes, str] = OrderedDict()

    # ----------------------------------------------------------------------------------------------
    # Scheduling.

    @property
    def generator_lock(self) -> threading.Lock:
        """Held while the generator computes (renders, exports, and each step of an upload's projection)."""
        return self._generator

    def latest_only(self, client: str, view: str, work: Callable[[], T]) -> T:
        """Run ``work`` on the generator unless a newer request of ``(client, view)`` arrives first.

        Raises:
            Superseded: a newer request of the same tab and view came in while this one waited.
        """
        key = (str(client)[:64], str(view))
        with self._numbers:
            number = self._latest.pop(key, 0) + 1
            self._latest[key] = number
            while len(self._latest) > _MAX_CLIENTS * len(VIEWS):
                self._latest.popitem(last=False)
        with self._generator:
            if self._latest.get(key) != number:
                raise Superseded(f"{view}: a newer request replaced this one")
            self.renders += 1
            with torch.no_grad():
                return work()

    def _show(self, client: str, view: str, shown: _Shown) -> None:
        with self._numbers:
            self._shown.pop((client, view), None)
            self._shown[(client, view)] = shown
            while len(self._shown) > _MAX_CLIENTS * len(VIEWS):
                self._shown.popitem(last=False)

    def _synth(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws.to(self.G.w_avg.device), noise_mode="const").float().cpu()

    def _preview(self, ws: torch.Tensor) -> str:
        """The preview data URL of ``ws [N, num_ws, w_dim]``, rendered once per distinct latent (e.g. the
        untruncated image while psi moves, or the compressed one while tau is above every component).
        Called with the generator lock held."""
        key = hashlib.sha256(ws.detach().cpu().float().contiguous().numpy().tobytes()).digest()
        image = self._images.pop(key, None)
        if image is None:
            image = png_data_url(self._synth(ws), self.preview)
        self._images[key] = image
        while len(self._images) > _CACHED_IMAGES:
            self._images.popitem(last=False)
        return image

    # ----------------------------------------------------------------------------------------------
    # Latents.

    def latent(self, ref: str) -> torch.Tensor:
        """``'seed:N'`` (z as NVIDIA draws it) or a list entry id -> ``[1, num_ws, w_dim]`` on the CPU."""
        match = re.fullmatch(r"seed:(\d{1,10})", str(ref))
        if match:
            return seed_latents(self.G, [int(match.group(1))])
        return self.catalog.get(ref).ws

    def info(self) -> dict[str, Any]:
        """What the page needs to build its controls."""
        G = self.G
        return {"network": str(G.source or G.architecture), "architecture": G.architecture,
                "resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim, "c_dim": G.c_dim,
                "preview": self.preview, "max_seeds": MAX_SEEDS, "positions": POSITIONS, "spaces": list(SPACES),
                "directions": [{"index": i, "name": d.names[0], "method": d.method} for i, d in enumerate(self.directions)],
                "latents": self.catalog.listing()}

    # ----------------------------------------------------------------------------------------------
    # Views.

    def seeds(self, client: str, seeds: Sequence[int], *, psi: float, tau: float) -> dict[str, Any]:
        """Untruncated, truncated (psi) and compressed (tau) renders of up to :data:`MAX_SEEDS` seeds, and
        how many principal components of each seed's v lie beyond tau."""
        seeds = [int(s) for s in seeds]
        if not 1 <= len(seeds) <= MAX_SEEDS:
            raise InputError(f"give 1 to {MAX_SEEDS} seeds, got {len(seeds)}")

        def work() -> dict[str, Any]:
            ws = seed_latents(self.G, seeds)  # [N, num_ws, w_dim]
            centre = self.G.w_avg.detach().cpu().float()
            if self.G.c_dim:
                from latentkit.latent.sampling import one_hot

                centre = self.G.class_average(one_hot([0], self.G.c_dim, device=self.G.w_avg.device))[0].cpu().float()
            picks = {"untruncated": ws, "truncated": truncate(ws, centre, psi),
                     "compressed": compress(ws, self.prior, tau=tau)}
            beyond = (self.prior.coefficients(ws[:, 0]).abs() > tau).sum(-1)  # [N]
            images = {k: self._preview(v) for k, v in picks.items()}
            self._show(client, "seeds", _Shown({k: v[:1] for k, v in picks.items()}))
            return {"images": images, "beyond": [int(b) for b in beyond], "seeds": seeds, "w_dim": self.G.w_dim}

        return self.latest_only(client, "seeds", work)

    def _edited(self, base: str, amounts: Sequence[float], layers: str | None) -> torch.Tensor:
        ws = self.latent(base)
        if len(amounts) > len(self.directions):
            raise InputError(f"{len(amounts)} amounts for {len(self.directions)} directions")
        for direction, amount in zip(self.directions, amounts):
            if float(amount) != 0.0:
                ws = edit(ws, direction, float(amount), layers=layers)
        return ws

    def edit(self, client: str, base: str, amounts: Sequence[float], *, layers: str | None = None) -> dict[str, Any]:
        """``base`` moved by ``amounts[k]`` standard deviations along direction ``k`` (the principal
        components of v, then fitted directions) on the ``layers`` range."""
        rows = parse_layers(layers, self.G.num_ws)

        def work() -> dict[str, Any]:
            ws = self._edited(base, amounts, layers)
            strongest = max(range(len(amounts)), key=lambda k: abs(float(amounts[k])), default=0)
            start = self._edited(base, [a if k != strongest else 0.0 for k, a in enumerate(amounts)], layers)
            direction = self.directions[strongest]

            def video(path: Path, frames: int) -> Path:
                return write_video(path, edit_frames(self.G, start, direction, frames=frames, layers=layers),
                                   fps=24, size=self.preview, progress=False)

            self._show(client, "edit", _Shown({"edited": ws}, video))
            return {"image": self._preview(ws), "layers": rows,
                    "sweep": direction.names[0]}

        return self.latest_only(client, "edit", work)

    def interp(self, client: str, a: str, b: str, *, position: int, space: str = "w") -> dict[str, Any]:
        """The latent ``position / (POSITIONS - 1)`` of the way from ``a`` to ``b`` in ``space`` (w, v, z)."""
        if space not in SPACES:
            raise InputError(f"space must be one of {SPACES}, got {space!r}")
        if not 0 <= int(position) < POSITIONS:
            raise InputError(f"position must be in 0..{POSITIONS - 1}, got {position}")

        def work() -> dict[str, Any]:
            if space == "z":
                za, zb = (self._seed_z(ref) for ref in (a, b))
                z = interpolate(za, zb, POSITIONS, space="z")[int(position)]  # [1, z_dim]
                ws = self.G.mapping(z.to(self.G.w_avg.device)).float().cpu()
            else:
                za, zb = self.latent(a), self.latent(b)
                ws = interpolate(za, zb, POSITIONS, space=space, prior=self.prior)[int(position)]

            def video(path: Path, frames: int) -> Path:
                if space == "z":
                    images = render_interpolation(self.G, za, zb, frames, space="z")[:, 0]
                    return write_video(path, [downscale(images.cpu(), self.preview)], fps=24, progress=False)
                return write_video(path, path_frames(self.G, torch.cat([za, zb]), frames_per_pair=frames - 1,
                                                     space=space, prior=self.prior), fps=24, size=self.preview,
                                   progress=False)

            self._show(client, "interp", _Shown({"interpolated": ws}, video))
            return {"image": self._preview(ws), "t": int(position) / (POSITIONS - 1)}

        return self.latest_only(client, "interp", work)

    def _seed_z(self, ref: str) -> torch.Tensor:
        match = re.fullmatch(r"seed:(\d{1,10})", str(ref))
        if match is None:
            raise InputError("space z interpolates between seeds (z is known only for them): pick two seeds, "
                             "or use space w or v for projected latents")
        if self.G.c_dim:
            raise InputError("space z on a conditional network: use space w or v")
        return z_from_seed(int(match.group(1)), self.G.z_dim)

    # ----------------------------------------------------------------------------------------------
    # Export.

    def shown(self, client: str, view: str, pick: str | None = None) -> tuple[str, torch.Tensor]:
        """(name, latents ``[1, num_ws, w_dim]``) a tab's view shows now (``pick`` one of the seeds view's three)."""
        with self._numbers:
            shown = self._shown.get((str(client)[:64], str(view)))
        if shown is None:
            raise InputError(f"nothing is shown in the {view} view of this tab yet: move a slider first")
        name = pick if pick in shown.ws else next(iter(shown.ws))
        return name, shown.ws[name]

    def export_png(self, client: str, view: str, pick: str | None = None) -> bytes:
        """The shown image at full resolution, PNG bytes."""
        from PIL import Image

        _, ws = self.shown(client, view, pick)
        with self._generator, torch.no_grad():
            array = to_uint8(self._synth(ws))[0]
        buf = _bytes_io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buf, format="PNG")
        return buf.getvalue()

    def export_latent(self, client: str, view: str, pick: str | None = None) -> bytes:
        """The shown latents as NVIDIA's ``projected_w.npz`` (key ``w``, ``[1, num_ws, w_dim]``), bytes."""
        _, ws = self.shown(client, view, pick)
        with tempfile.TemporaryDirectory() as tmp:
            return save_latents(Path(tmp) / "projected_w.npz", ws).read_bytes()

    def export_video(self, client: str, view: str, *, suffix: str = ".mp4", frames: int = DEFAULT_LEG_FRAMES) -> bytes:
        """A video of the view (edit: a sweep of the strongest direction; interpolate: the path), bytes."""
        with self._numbers:
            shown = self._shown.get((str(client)[:64], str(view)))
        if shown is None or shown.video is None:
            raise InputError(f"no video for the {view} view: videos are made in the edit and interpolate views, "
                             "after a first render")
        if suffix not in (".mp4", ".gif") or not 2 <= int(frames) <= 240:
            raise InputError(f"a video is .mp4 or .gif with 2 to 240 frames, got {suffix} with {frames}")
        with tempfile.TemporaryDirectory() as tmp, self._generator, torch.no_grad():
            return shown.video(Path(tmp) / f"latentkit{suffix}", int(frames)).read_bytes()
