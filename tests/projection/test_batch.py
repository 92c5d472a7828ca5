"""Batch projection of files into a folder: outputs, manifest, resume, refusal of other settings, the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from latentkit.errors import InputError
from latentkit.io import load_latents
from latentkit.projection.batch import project_files
from latentkit.projection.inputs import check_images, expand_inputs, folder_names
from latentkit.projection.outdir import LOCK, MANIFEST, read_manifest
from latentkit.projection.project import ProjectionInterrupted, ProjectionSettings, project

FAST = ProjectionSettings(num_steps=3, perceptual=None, mse_weight=1.0, w_avg_samples=64)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.randint(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def test_outputs_manifest_and_equal_to_one_projection(toy_generator, images, tmp_path):
    out = tmp_path / "out"
    files = expand_inputs([images])
    records = project_files(toy_generator, files, out, settings=FAST, batch_size=2, progress=False)
    assert [r.folder for r in records] == [str(out / n) for n in ("a", "b", "c")]
    lines = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert [line["input"] for line in lines] == [str(f.resolve()) for f in files]
    assert all(line["psnr"] > 0 and line["seconds"] >= 0 and line["lpips"] is None for line in lines)
    # Each image's latents equal a projection of that image alone (batch independence).
    alone = project(toy_generator, files[2], settings=FAST, progress=False)
    torch.testing.assert_close(load_latents(out / "c" / "projected_w.npz"), alone.ws, rtol=1e-5, atol=1e-5)
    assert not list(out.glob(".checkpoint-*")) and not (out / LOCK).exists()


def test_a_lone_image_gets_every_thread_and_a_batch_one_per_image(toy_generator, images, tmp_path, monkeypatch):
    import latentkit.projection.project as project_module

    seen = []
    original = project_module.project

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(project_module, "project", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        files = expand_inputs([images])
        project_files(toy_generator, files[:1], tmp_path / "one", settings=FAST, progress=False)
        project_files(toy_generator, files[:2], tmp_path / "two", settings=FAST, batch_size=1, progress=False)
        project_files(toy_generator, files[:1], tmp_path / "rank", settings=FAST, progress=False, shard=(0, 1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    # one image in one process: both threads; two images (even one batch at a time): one thread each,
    # so their bits do not depend on the batch or rank they fall in
    assert seen == [2, 1, 1, 2], seen


def test_rerun_skips_by_manifest_and_refuses_other_settings(toy_generator, images, tmp_path):
    out = tmp_path / "out"
    files = expand_inputs([images])
    project_files(toy_generator, files[:2], out, settings=FAST, progress=False)
    again = project_files(toy_generator, files, out, settings=FAST, progress=False)
    assert [r.skipped for r in again] == [True, True, False]
    other = ProjectionSettings(num_steps=4, perceptual=None, mse_weight=1.0, w_avg_samples=64)
    with pytest.raises(InputError, match=r"other settings: num_steps=3 \(now 4\).*restart"):
        project_files(toy_generator, files, out, settings=other, progress=False)
    redone = project_files(toy_generator, files, out, settings=other, restart=True, progress=False)
    assert not any(r.skipped for r in redone)
    assert json.loads((out / "a" / "losses.json").read_text())["settings"]["num_steps"] == 4
    assert len(read_manifest(out)) == 3  # the last line per image wins


def test_a_folder_without_manifest_line_is_redone(toy_generator, images, tmp_path):
    """Done means: in the manifest with this fingerprint, not merely a folder that exists."""
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "losses.json").write_text("{}")
    records = project_files(toy_generator, [images / "a.png"], out, settings=FAST, progress=False)
    assert not records[0].skipped and "settings" in json.loads((out / "a" / "losses.json").read_text())


def test_interrupted_batch_resumes_at_its_step(toy_generator, images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    files = expand_inputs([images])
    reference = project_files(toy_generator, files, tmp_path / "ref", settings=FAST, progress=False)
    import latentkit.projection.project as api

    real = api.project

    def stop_at_step_1(*args, **kw):
        def stop(step, ws):
            if step == 1:
                raise KeyboardInterrupt

        return real(*args, **dict(kw, callback=stop))

    monkeypatch.setattr(api, "project", stop_at_step_1)
    with pytest.raises(ProjectionInterrupted, match="interrupted at step 2 of 3"):
        project_files(toy_generator, files, out, settings=FAST, progress=False)
    assert len(list(out.glob(".checkpoint-*.pt"))) == 1 and not (out / LOCK).exists()
    monkeypatch.setattr(api, "project", real)
    resumed = project_files(toy_generator, files, out, settings=FAST, progress=False)
    for a, b in zip(resumed, reference):
        assert torch.equal(load_latents(os.path.join(a.folder, "projected_w.npz")), load_latents(os.path.join(b.folder, "projected_w.npz")))


def test_lock_refuses_a_live_holder_and_clears_a_stale_one(toy_generator, images, tmp_path):
    import socket

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(InputError, match=f"pid {holder.pid}.*is writing to"):
            project_files(toy_generator, [images / "a.png"], out, settings=FAST, progress=False)
    finally:
        holder.kill()
        holder.wait()
    records = project_files(toy_generator, [images / "a.png"], out, settings=FAST, progress=False)  # stale: taken over
    assert not records[0].skipped and not (out / LOCK).exists()


def test_inputs(images, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# faces\nin/b.png\n\nin/a.png\n")
    assert expand_inputs([listing]) == [images / "b.png", images / "a.png"]
    assert expand_inputs([str(images / "*.png")]) == [images / n for n in ("a.png", "b.png", "c.png")]
    assert folder_names([images / "a.png", tmp_path / "a.png", images / "b.png"]) == ["a", "a-2", "b"]
    with pytest.raises(InputError, match="image file not found"):
        expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(InputError, match="matches no images"):
        expand_inputs([str(tmp_path / "*.jpg")])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.png as an image"):
        check_images([tmp_path / "bad.png"])
    with pytest.raises(InputError, match="no images to project"):
        project_files(None, [], tmp_path / "o")
