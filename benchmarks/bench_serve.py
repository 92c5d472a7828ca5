"""Benchmark of the explorer (``latentkit serve``): slider change to new image, on the real default model.

Measures, with ``mobilestylegan-ffhq`` (1024 px) at a 512 px preview on this CPU:

- server side: one render of each view as the API computes it (mapping / compression / edit / interpolation,
  synthesis, area-downscale to the preview, PNG encode), split into synthesis and encode; wall seconds and
  process CPU seconds (the machine is shared: CPU seconds show the work, wall seconds the wait);
- in the browser (headless Chromium via selenium, the page served by uvicorn on 127.0.0.1): the time from a
  slider's ``input`` event to the new image decoded in the page (``img.decode()``), which adds HTTP, JSON,
  base64 and the browser's decode to the server's work.

The goal is under 1 s per slider change. With ``--screenshots DIR`` it also saves a screenshot of each view
(PNG, palette-quantised to stay small) for the README; an upload is projected with ``--project-steps`` steps
for the projections view.

Usage (on the shared machine, at the lowest priority):
    nice -n 19 python benchmarks/bench_serve.py --repeats 8 --screenshots docs/explorer
Writes benchmarks/results/bench_serve.json (after each stage, so a partial run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_serve.json"


def _summary(times: list[float], cpu: list[float] | None = None) -> dict:
    out = {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
           "max_s": round(max(times), 4), "n": len(times)}
    if cpu:
        out["median_cpu_s"] = round(statistics.median(cpu), 4)  # process CPU seconds (all torch threads)
    return out


class _Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _write(results: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))


def server_side(explorer, repeats: int) -> dict:
    """Each view's render through the API methods (what one request costs the server)."""
    from latentkit.app.state import png_data_url

    out: dict = {}
    n_dirs = len(explorer.directions)
    calls = {
        "seeds, psi moves (the truncated image changes)":
            lambda k: explorer.seeds("bench", [0], psi=0.5 + 0.02 * k, tau=3.0),
        "seeds, tau moves (the compressed image changes)":
            lambda k: explorer.seeds("bench", [0], psi=0.5, tau=1.0 + 0.1 * k),
        "seeds, new seed (all three images change)":
            lambda k: explorer.seeds("bench", [100 + k], psi=0.5, tau=3.0),
        "edit (1 image)": lambda k: explorer.edit("bench", "seed:1", [0.2 * k] + [0.0] * (n_dirs - 1), layers="0-5"),
        "interp (1 image, space v)": lambda k: explorer.interp("bench", "seed:0", "seed:1", position=5 * k, space="v"),
    }
    for name, call in calls.items():
        call(0)  # warm-up
        times, cpu = [], []
        for k in range(1, repeats + 1):
            with _Clock() as clock:
                call(k)
            times.append(clock.wall)
            cpu.append(clock.cpu)
        out[name] = _summary(times, cpu)
        print(f"{name}: {out[name]}", flush=True)
    ws = explorer.latent("seed:0")
    synth, encode, synth_cpu, encode_cpu = [], [], [], []
    for _ in range(repeats):
        with _Clock() as clock, torch.no_grad():
            img = explorer.G.synthesis(ws, noise_mode="const")
        synth.append(clock.wall)
        synth_cpu.append(clock.cpu)
        with _Clock() as clock:
            png_data_url(img, explorer.preview)
        encode.append(clock.wall)
        encode_cpu.append(clock.cpu)
    out["split: synthesis of one image"] = _summary(synth, synth_cpu)
    out["split: downscale + PNG encode of one image"] = _summary(encode, encode_cpu)
    print(out, flush=True)
    return out


def in_browser(url: str, repeats: int, screenshots: Path | None, photo: Path, project_wait: float) -> dict:
    """Slider input event -> new image decoded, in headless Chromium; and the screenshots."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860"):
        options.add_argument(flag)
    import socket

    socket.setdefaulttimeout(900)  # selenium's client timeout: a loaded machine at nice 19 starts Chromium slowly
    try:
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    finally:
        socket.setdefaulttimeout(None)
    driver.set_script_timeout(300)
    out: dict = {}
    # Set a slider, fire its input event, resolve when the watched image has a new src that has decoded.
    script = """
        const [sliderId, imageId, value, done] = arguments;
        const slider = document.getElementById(sliderId), image = document.getElementById(imageId);
        const before = image.src, started = performance.now();
        const watch = new MutationObserver(async () => {
          if (image.src === before) return;
          watch.disconnect();
          await image.decode();
          done(performance.now() - started);
        });
        watch.observe(image, {attributes: true, attributeFilter: ["src"]});
        slider.value = value;
        slider.dispatchEvent(new Event("input"));
    """
    try:
        driver.get(url)
        image = driver.find_element(By.ID, "seeds-compressed")
        deadline = time.monotonic() + 300
        while not image.get_attribute("src") and time.monotonic() < deadline:
            time.sleep(0.2)
        # Every value differs from the others and from the warm-up's (k = 99), so no render is served from the
        # preview cache; the last edit value leaves pc0 moved for the screenshot.
        cases = {"seeds: psi slider": ("seeds", "seeds-psi", "seeds-truncated", lambda k: f"{min(1.5, 0.3 + 0.05 * k):.2f}"),
                 "edit: pc0 slider": ("edit", None, "edit-image", lambda k: f"{min(5.0, -2.2 + 0.9 * k):.1f}"),
                 "interp: position slider": ("interp", "interp-position", "interp-image", lambda k: str(min(100, 10 + 7 * k)))}
        for name, (view, slider, target, value) in cases.items():
            driver.find_element(By.CSS_SELECTOR, f'nav button[data-view="{view}"]').click()
            if slider is None:
                driver.execute_script("document.querySelector('#edit-sliders input').id = 'pc0-slider'")
                slider = "pc0-slider"
            time.sleep(1.0)
            driver.execute_async_script(script, slider, target, value(99))  # warm-up
            times, cpu = [], []
            for k in range(repeats):
                before = time.process_time()  # the server runs in this process
                times.append(driver.execute_async_script(script, slider, target, value(k)) / 1000)
                cpu.append(time.process_time() - before)
            out[name] = _summary(times, cpu)
            print(f"browser {name}: {out[name]}", flush=True)
            if screenshots is not None:
                time.sleep(0.5)
                _shot(driver, screenshots / f"{view}.png")
        if screenshots is not None:
            driver.find_element(By.CSS_SELECTOR, 'nav button[data-view="projections"]').click()
            driver.find_element(By.ID, "upload-file").send_keys(str(photo))
            deadline = time.monotonic() + project_wait
            while time.monotonic() < deadline and "done" not in driver.find_element(By.ID, "upload-status").text:
                time.sleep(1)
            _shot(driver, screenshots / "projections.png")
            driver.find_element(By.CSS_SELECTOR, 'nav button[data-view="export"]').click()
            time.sleep(0.5)
            _shot(driver, screenshots / "export.png")
    finally:
        driver.quit()
    return out


def _shot(driver, path: Path) -> None:
    """A screenshot as a palette PNG (small enough for the README)."""
    import io

    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default="mobilestylegan-ffhq")
    parser.add_argument("--preview", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--browser-only", action="store_true",
                        help="keep the server-side results of the last run (in the JSON) and add the browser's")
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--project-steps", type=int, default=5)
    parser.add_argument("--project-wait", type=float, default=600.0, help="seconds to wait for the upload's projection")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from latentkit.app.catalog import Catalog
    from latentkit.app.jobs import Projector
    from latentkit.app.state import Explorer
    from latentkit.latent.prior_cache import cached_prior
    from latentkit.load import load_generator
    from latentkit.projection.settings import ProjectionSettings

    results: dict = {"network": args.network, "preview": args.preview, "repeats": args.repeats,
                     "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                     "cpus": os.cpu_count(), "nice": os.nice(0), "load_before": os.getloadavg(),
                     "goal": "slider change to new image under 1 s at a 512 px preview"}
    started = time.perf_counter()
    G = load_generator(args.network, device="cpu")
    results["load_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    prior = cached_prior(G)
    results["prior_s"] = round(time.perf_counter() - started, 1)
    catalog = Catalog(G.num_ws, G.w_dim)
    explorer = Explorer(G, prior, catalog=catalog, preview=args.preview)
    if args.browser_only and OUT.is_file():
        previous = json.loads(OUT.read_text())
        results.update({k: previous[k] for k in ("server_side", "load_after_server_side", "load_before") if k in previous})
        results["load_before_browser"] = os.getloadavg()
    else:
        results["server_side"] = server_side(explorer, args.repeats)
        results["load_after_server_side"] = os.getloadavg()
    _write(results)
    print(f"load average {os.getloadavg()}", flush=True)
    if args.no_browser:
        return
    import uvicorn

    from latentkit.app.server import create_app

    projector = Projector(G, prior, catalog, Path(os.environ.get("TMPDIR", "/tmp")) / "bench_serve_uploads",
                          settings=ProjectionSettings(num_steps=args.project_steps),
                          generator_lock=explorer.generator_lock)
    server = uvicorn.Server(uvicorn.Config(create_app(explorer, projector), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    port = server.servers[0].sockets[0].getsockname()[1]
    results["browser"] = in_browser(f"http://127.0.0.1:{port}/", args.repeats, args.screenshots,
                                    ROOT / "tests" / "data" / "photos" / "astronaut.jpg", args.project_wait)
    results["load_after"] = os.getloadavg()
    _write(results)
    server.should_exit = True
    thread.join(timeout=10)
    print(json.dumps(results, indent=1))
    sys.exit(0)


if __name__ == "__main__":
    main()
