"""The explorer's HTTP API with Starlette's TestClient on a toy generator (fast, default suite)."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
from explorer_fixtures import app_parts, client, projection_folder, toy_g, toy_prior  # noqa: F401

from latentkit.app.state import Superseded

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _png(data_url: str) -> np.ndarray:
    from PIL import Image

    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and '<input id="seeds-psi" type="range"' in page.text
    assert "https://" not in page.text and "http://" not in page.text  # nothing from a CDN
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "https://" not in script.text
    assert client.get("/static/style.css").status_code == 200


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/../../etc/passwd", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%2f..%2fetc%2fpasswd", "/api/file/p0/..%2f..%2f..%2fetc%2fpasswd", "/api/file/..%2f..%2fetc/passwd",
    "/static/index.html/../../../etc/passwd", "/static/__init__.py", "/api/file/p0/manifest", "//etc/passwd",
])
def test_no_file_outside_the_app(client, path):
    response = client.get(path)
    assert response.status_code in (404, 405)
    assert "root:" not in response.text


def test_listed_files_only(client, projection_folder):
    info = client.get("/api/info").json()
    assert [e["name"] for e in info["latents"]] == ["img0", "img1"]
    assert info["latents"][1]["scores"]["psnr"] == 21.0
    target = client.get(info["latents"][0]["images"]["target"])
    assert target.status_code == 200 and target.content[:4] == b"\x89PNG"


def test_seeds_view(client, toy_prior):
    r = client.get("/api/render/seeds", params={"client": "a", "seeds": "0-1", "psi": 0.5, "tau": 0.5})
    assert r.status_code == 200
    body = r.json()
    untruncated, truncated = _png(body["images"]["untruncated"]), _png(body["images"]["truncated"])
    assert untruncated.shape == (32, 16, 3)  # two seeds stacked, full resolution without --preview
    assert not np.array_equal(untruncated, truncated)
    assert len(body["beyond"]) == 2 and all(0 <= b <= 8 for b in body["beyond"])
    same = client.get("/api/render/seeds", params={"client": "a", "seeds": "0-1", "psi": 1, "tau": 100}).json()
    assert same["images"]["truncated"] == same["images"]["untruncated"] == same["images"]["compressed"]
    assert same["beyond"] == [0, 0]


def test_errors_are_one_line_json(client):
    r = client.get("/api/render/seeds", params={"seeds": "0-9"})
    assert r.status_code == 400 and "1 to 4 seeds" in r.json()["error"]
    r = client.get("/api/render/seeds", params={"seeds": "0", "tau": "nan"})
    assert r.status_code == 400 and "tau" in r.json()["error"]
    r = client.get("/api/render/edit", params={"base": "p99"})
    assert r.status_code == 400 and "p99" in r.json()["error"]
    r = client.get("/api/render/interp", params={"a": "p0", "b": "seed:1", "space": "z"})
    assert r.status_code == 400 and "seeds" in r.json()["error"]


def test_edit_view(client):
    base = client.get("/api/render/edit", params={"client": "a", "base": "p0", "amounts": "0,0,0,0"}).json()
    moved = client.get("/api/render/edit", params={"client": "a", "base": "p0", "amounts": "3,0,0,0",
                                                   "layers": "0-1"}).json()
    assert moved["layers"] == [0, 1] and moved["sweep"] == "pc0"
    assert not np.array_equal(_png(base["image"]), _png(moved["image"]))
    proj = client.get("/api/file/p0/proj").content  # the unedited projection renders as stored
    assert base["image"].split(",")[1] != "" and proj[:4] == b"\x89PNG"


@pytest.mark.parametrize("space", ["w", "v", "z"])
def test_interpolate_view(client, space):
    ends = [client.get("/api/render/interp", params={"client": "a", "a": "seed:0", "b": "seed:1", "position": p,
                                                      "space": space}).json()["image"] for p in (0, 100)]
    seeds = client.get("/api/render/seeds", params={"client": "b", "seeds": "0", "psi": 1}).json()
    assert ends[0] == seeds["images"]["untruncated"] and ends[0] != ends[1]


def test_exports(client, toy_g):
    from PIL import Image

    assert client.get("/api/export/png", params={"client": "x", "view": "edit"}).status_code == 400
    client.get("/api/render/seeds", params={"client": "x", "seeds": "3", "psi": 0.5})
    png = client.get("/api/export/png", params={"client": "x", "view": "seeds", "pick": "truncated"})
    assert Image.open(io.BytesIO(png.content)).size == (16, 16)
    npz = client.get("/api/export/latent", params={"client": "x", "view": "seeds", "pick": "compressed"})
    with np.load(io.BytesIO(npz.content)) as data:
        assert data["w"].shape == (1, toy_g.num_ws, toy_g.w_dim) and data["w"].dtype == np.float32
    client.get("/api/render/interp", params={"client": "x", "a": "seed:0", "b": "p1", "position": 30})
    video = client.get("/api/export/video", params={"client": "x", "view": "interp", "format": "gif", "frames": 6})
    assert video.status_code == 200 and video.content[:3] == b"GIF"
    import imageio.v3 as iio

    assert iio.imread(video.content, extension=".gif").shape[:3] == (6, 16, 16)
    client.get("/api/render/edit", params={"client": "x", "base": "seed:2", "amounts": "0,2"})
    mp4 = client.get("/api/export/video", params={"client": "x", "view": "edit", "frames": 8})
    from latentkit.latent.edit import ramp_amounts

    frames = len(ramp_amounts([-3, 3], 8))  # there and back, the turning points once
    assert mp4.status_code == 200 and iio.imread(mp4.content, extension=".mp4").shape[:3] == (frames, 16, 16)


def test_stale_requests_are_dropped(app_parts):
    """While the generator is busy, three requests of one tab and view queue: only the latest renders."""
    explorer, _ = app_parts
    results: dict[int, object] = {}
    explorer._generator.acquire()
    try:
        def ask(k: int) -> None:
            try:
                results[k] = explorer.seeds("tab", [k], psi=0.7, tau=3.0)
            except Superseded:
                results[k] = "superseded"

        threads = []
        for k in range(3):
            threads.append(threading.Thread(target=ask, args=(k,)))
            threads[-1].start()
            time.sleep(0.2)  # numbered in order of arrival
        before = explorer.renders
    finally:
        explorer._generator.release()
    for t in threads:
        t.join()
    assert results[0] == results[1] == "superseded"
    assert results[2]["seeds"] == [2] and explorer.renders == before + 1


def test_tabs_do_not_drop_each_other(app_parts):
    """Two tabs (or two views of one tab) waiting at once both render: only a newer request of the same
    tab and view replaces one."""
    explorer, _ = app_parts
    results: dict[str, object] = {}
    explorer.generator_lock.acquire()
    try:
        threads = [threading.Thread(target=lambda c=c: results.__setitem__(c, explorer.seeds(c, [1], psi=0.5, tau=3.0)))
                   for c in ("tab-a", "tab-b")]
        threads.append(threading.Thread(target=lambda: results.__setitem__(
            "interp", explorer.interp("tab-a", "seed:0", "seed:1", position=40))))
        for t in threads:
            t.start()
        time.sleep(0.3)
    finally:
        explorer.generator_lock.release()
    for t in threads:
        t.join()
    assert set(results) == {"tab-a", "tab-b", "interp"}
    assert results["tab-a"]["images"] == results["tab-b"]["images"]


def test_upload_projects_in_the_background(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(buf, format="PNG")
    job = client.post("/api/project", params={"name": "grey.png"}, content=buf.getvalue()).json()
    for _ in range(600):
        state = client.get(f"/api/jobs/{job['id']}").json()
        if state["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert state["status"] == "done", state
    assert state["step"] == state["total"] == 3
    listed = client.get("/api/info").json()["latents"]
    assert listed[-1]["id"] == state["entry"]["id"] and listed[-1]["name"].startswith("upload000-grey")
    assert client.get(listed[-1]["images"]["proj"]).status_code == 200
    edited = client.get("/api/render/edit", params={"base": listed[-1]["id"], "amounts": "1"})
    assert edited.status_code == 200


def test_upload_cancel(app_parts):
    explorer, projector = app_parts
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="PNG")
    projector._one_at_a_time.acquire()  # a job ahead of it: this one stays queued
    try:
        job = projector.submit(buf.getvalue(), "black.png")
        projector.cancel(job.id)
    finally:
        projector._one_at_a_time.release()
    for _ in range(200):
        if job.status == "cancelled":
            break
        time.sleep(0.02)
    assert job.status == "cancelled"


@pytest.mark.parametrize("payload, message", [
    (b"not an image at all", "not accepted"),
    (b"%PDF-1.4 " + b"x" * 100, "not accepted"),
    (b"", "empty"),
])
def test_non_images_refused(client, payload, message):
    r = client.post("/api/project", params={"name": "notes.pdf"}, content=payload)
    assert r.status_code == 400 and message in r.json()["error"]


def test_upload_limits(client):
    from PIL import Image

    r = client.post("/api/project", params={"name": "big.bin"}, content=b"\0" * 2_000_001)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    buf = io.BytesIO()
    Image.new("L", (3000, 2000)).save(buf, format="PNG")  # 6 MP > the fixture's 4 MP, few bytes
    r = client.post("/api/project", params={"name": "wide.png"}, content=buf.getvalue())
    assert r.status_code == 400 and "pixels" in r.json()["error"]


def test_catalog_reads_files_and_folders(tmp_path, toy_g, projection_folder):
    import torch

    from latentkit.app.catalog import Catalog
    from latentkit.errors import InputError
    from latentkit.io import save_latents

    catalog = Catalog(toy_g.num_ws, toy_g.w_dim)
    save_latents(tmp_path / "two.npz", torch.zeros(2, 1, toy_g.w_dim))  # W, broadcast to W+
    assert [e.name for e in catalog.read(tmp_path / "two.npz")] == ["two[0]", "two[1]"]
    (projection_folder / "manifest.jsonl").unlink()  # without a manifest: every */projected_w.npz
    assert [e.name for e in catalog.read(projection_folder)] == ["img0", "img1"]
    assert catalog.file("p2", "proj") == (projection_folder / "img0" / "proj.png").resolve()
    assert catalog.file("p0", "proj") is None and catalog.file("p9", "target") is None
    save_latents(tmp_path / "wrong.npz", torch.zeros(1, 3, 5))
    with pytest.raises(InputError, match="do not fit this network"):
        catalog.read(tmp_path / "wrong.npz")
    with pytest.raises(InputError, match="no such file or folder"):
        catalog.read(tmp_path / "missing")
