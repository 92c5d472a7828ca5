"""The explorer's web app (Starlette): a plain page, its script and style, and a small JSON API.

Routes::

    GET  /                      the page        GET /static/app.js, /static/style.css
    GET  /api/info              network, directions, latents
    GET  /api/render/seeds      ?client&seeds&psi&tau           untruncated | truncated | compressed
    GET  /api/render/edit       ?client&base&amounts&layers     principal components of v / fitted directions
    GET  /api/render/interp     ?client&a&b&position&space
    GET  /api/file/{id}/{kind}  a listed projection's target or proj image (nothing else is ever served)
    POST /api/project?name=F    the photo as the request body -> a background job
    GET  /api/jobs/{id}         progress          POST /api/jobs/{id}/cancel
    GET  /api/export/{png|latent|video}?client&view[&pick][&format=mp4|gif]

A render that a newer request of the same tab and view replaced answers 204 (no content). Errors are JSON
``{"error": "..."}`` with status 400 (413 for an upload over the size limit). Static files come from a fixed
list in the package, never from a path in the request.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from latentkit.app.jobs import MAX_UPLOAD_BYTES, Projector
from latentkit.app.settings import DEFAULT_PORT
from latentkit.app.state import PICKS, VIEWS, Explorer, Superseded
from latentkit.errors import InputError, LatentkitError
from latentkit.latent.sampling import parse_seeds

__all__ = ["create_app", "serve"]

logger = logging.getLogger(__name__)

_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
_NO_STORE = {"Cache-Control": "no-store"}


def _asset(name: str) -> bytes:
    return resources.files("latentkit.app").joinpath("static", name).read_bytes()


def _float(params: Any, name: str, default: float) -> float:
    text = params.get(name)
    try:
        value = float(text) if text is not None else default
    except ValueError:
        raise InputError(f"{name} must be a number, got {text!r:.40}") from None
    if value != value or abs(value) > 1e6:
        raise InputError(f"{name} must be a finite number, got {text!r:.40}")
    return value


def _error(err: Exception, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(err).split())}, status_code=status)


def create_app(explorer: Explorer, projector: Projector | None = None, *,
               max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Starlette:
    """The Starlette app over one :class:`~latentkit.app.state.Explorer` (and an optional
    :class:`~latentkit.app.jobs.Projector` for uploads; without one, uploads are refused with a message)."""

    async def render(call) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(call), headers=_NO_STORE)
        except Superseded:
            return Response(status_code=204)
        except (LatentkitError, ValueError) as err:
            return _error(err)

    async def page(request: Request) -> Response:
        return Response(_asset("index.html"), media_type="text/html", headers=_NO_STORE)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", status_code=404)
        return Response(_asset(name), media_type=_STATIC[name])

    async def info(request: Request) -> Response:
        out = explorer.info()
        out["uploads"] = projector is not None
        out["project_steps"] = projector.settings.num_steps if projector is not None else 0
        out["device"] = str(explorer.G.w_avg.device)
        out["max_upload_bytes"] = int(max_upload_bytes)
        return JSONResponse(out, headers=_NO_STORE)

    async def seeds(request: Request) -> Response:
        q = request.query_params
        return await render(lambda: explorer.seeds(q.get("client", ""), parse_seeds(q.get("seeds", "0"), limit=64),
                                                   psi=_float(q, "psi", 0.7), tau=_float(q, "tau", 3.0)))

    async def edit(request: Request) -> Response:
        q = request.query_params

        def call() -> dict[str, Any]:
            amounts = [_float({"amount": a}, "amount", 0.0) for a in q.get("amounts", "").split(",") if a.strip()]
            return explorer.edit(q.get("client", ""), q.get("base", "seed:0"), amounts, layers=q.get("layers") or None)

        return await render(call)

    async def interp(request: Request) -> Response:
        q = request.query_params
        return await render(lambda: explorer.interp(q.get("client", ""), q.get("a", "seed:0"), q.get("b", "seed:1"),
                                                    position=int(_float(q, "position", 0)), space=q.get("space", "w")))

    async def file(request: Request) -> Response:
        path = explorer.catalog.file(request.path_params["entry"], request.path_params["kind"])
        if path is None or not path.is_file():
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="image/png")

    async def upload(request: Request) -> Response:
        if projector is None:
            return _error(InputError("this server projects no uploads"))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            return _error(InputError(f"the upload is {int(declared):,} bytes, more than the limit of "
                                     f"{max_upload_bytes:,}"), 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_upload_bytes:
                return _error(InputError(f"the upload is more than the limit of {max_upload_bytes:,} bytes"), 413)
        if not body:
            return _error(InputError("the upload is empty: choose an image file"))
        try:
            job = await run_in_threadpool(projector.submit, bytes(body), request.query_params.get("name", "upload"))
        except LatentkitError as err:
            return _error(err)
        return JSONResponse(job.describe())

    async def job(request: Request) -> Response:
        if projector is None:
            return _error(InputError("this server projects no uploads"))
        try:
            found = projector.get(request.path_params["job"])
            if request.method == "POST":
                projector.cancel(found.id)
        except LatentkitError as err:
            return _error(err)
        return JSONResponse(found.describe(), headers=_NO_STORE)

    async def export(request: Request) -> Response:
        q = request.query_params
        what, client, view = request.path_params["what"], q.get("client", ""), q.get("view", "seeds")
        pick = q.get("pick") if q.get("pick") in PICKS else None
        if view not in VIEWS:
            return _error(InputError(f"view must be one of {', '.join(VIEWS)}, got {view!r:.40}"))
        try:
            if what == "png":
                data, kind, name = await run_in_threadpool(explorer.export_png, client, view, pick), "image/png", f"{view}.png"
            elif what == "latent":
                data = await run_in_threadpool(explorer.export_latent, client, view, pick)
                kind, name = "application/octet-stream", "projected_w.npz"
            elif what == "video":
                suffix = ".gif" if q.get("format") == "gif" else ".mp4"
                frames = int(_float(q, "frames", 48))
                data = await run_in_threadpool(lambda: explorer.export_video(client, view, suffix=suffix, frames=frames))
                kind, name = ("image/gif" if suffix == ".gif" else "video/mp4"), f"{view}{suffix}"
            else:
                return Response("not found", status_code=404)
        except LatentkitError as err:
            return _error(err)
        return Response(data, media_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/info", info),
        Route("/api/render/seeds", seeds),
        Route("/api/render/edit", edit),
        Route("/api/render/interp", interp),
        Route("/api/file/{entry}/{kind}", file),
        Route("/api/project", upload, methods=["POST"]),
        Route("/api/jobs/{job}", job, methods=["GET"]),
        Route("/api/jobs/{job}/cancel", job, methods=["POST"]),
        Route("/api/export/{what}", export),
    ]
    return Starlette(routes=routes)


def serve(app: Starlette, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve ``app`` with uvicorn until interrupted (Ctrl-C)."""
    import uvicorn

    uvicorn.run(app, host=host, port=int(port), log_level="warning")
