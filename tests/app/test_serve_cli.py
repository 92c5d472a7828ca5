"""``latentkit serve`` as a user starts it: a tiny network file, answering on 127.0.0.1 only; and
``latentkit video``'s acceptance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REFERENCE_NETS, invoke_cli
from loopback import free_port, listening_addresses, loopback_only, wait_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
NET = REFERENCE_NETS / "sg2ada_uncond_map8_res32.pkl"


@pytest.fixture(scope="module")
def small_prior(tmp_path_factory) -> Path:
    """A prior of NET from 2000 samples (the cached default fits 100 000: slow for a test)."""
    from latentkit.latent.prior import GaussianPrior
    from latentkit.load import load_generator

    path = tmp_path_factory.mktemp("prior") / "prior.npz"
    GaussianPrior.from_generator(load_generator(NET), 2000, progress=False).save(path)
    return path


def _serve(tmp_path, prior, *args) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), LATENTKIT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "latentkit", "serve", "--network", str(NET), "--port", str(port),
                             "--device", "cpu", "--prior", str(prior), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, port


def test_serve_answers_on_loopback_only(tmp_path, loopback_only, small_prior):  # noqa: F811
    proc, port = _serve(tmp_path, small_prior)
    try:
        page = wait_for(f"http://127.0.0.1:{port}/", proc=proc)
        assert b'type="range"' in page
        assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, no other interface
        import urllib.error
        import urllib.request

        for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert err.value.code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        out, errors = proc.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/" in errors and "warning" not in errors


def test_other_host_warns(small_prior, monkeypatch):
    import latentkit.app.server as server

    started = []
    monkeypatch.setattr(server, "serve", lambda app, host, port: started.append((host, port)))
    result = invoke_cli(["serve", "--network", NET, "--prior", small_prior, "--port", "7999"])
    assert result.exit_code == 0 and started == [("127.0.0.1", 7999)] and "warning" not in result.output
    result = invoke_cli(["serve", "--network", NET, "--prior", small_prior, "--host", "0.0.0.0"])
    assert result.exit_code == 0 and started[-1] == ("0.0.0.0", 7860)
    assert result.output.startswith("warning: --host 0.0.0.0 makes the explorer reachable"), result.output


def test_video_acceptance(tmp_path):
    """``latentkit video --network NET --seeds 0-3 --out loop.mp4``: frames at the network's resolution."""
    import imageio.v3 as iio

    out = tmp_path / "loop.mp4"
    result = invoke_cli(["video", "--network", NET, "--seeds", "0-3", "--w-frames", "3", "--out", out, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    frames = iio.imread(out)
    assert frames.shape == (12, 32, 32, 3)
    gif = tmp_path / "grid.gif"
    result = invoke_cli(["video", "--network", NET, "--seeds", "0-3", "--grid", "2x1", "--w-frames", "2", "--size", "16",
                         "--out", gif])
    assert result.exit_code == 0, result.output
    assert iio.imread(gif).shape[:3] == (4, 8, 16)  # 2 keyframes x 2 frames; 64x32 grid downscaled to 16 px


def test_video_errors(tmp_path):
    result = invoke_cli(["video", "--network", NET, "--out", tmp_path / "a.mp4"])
    assert result.exit_code == 2 and "--seeds" in result.output
    result = invoke_cli(["video", "--network", NET, "--seeds", "0-2", "--grid", "2x2", "--out", tmp_path / "a.mp4"])
    assert result.exit_code == 1 and "do not fill a 2x2 grid" in result.output
    result = invoke_cli(["video", "--network", NET, "--seeds", "0", "--out", tmp_path / "a.txt"])
    assert result.exit_code == 1 and "must end in one of" in result.output


def test_video_path_and_edit_sweep(tmp_path, small_prior):
    import imageio.v3 as iio

    from latentkit.io import save_latents
    from latentkit.load import load_generator
    from latentkit.app.videos import seed_latents

    G = load_generator(NET)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_latents(a, seed_latents(G, [0]))
    save_latents(b, seed_latents(G, [1, 2]))
    path = tmp_path / "path.gif"
    result = invoke_cli(["video", "--network", NET, "--latents", a, "--latents", b, "--frames", 3, "--space", "v",
                         "--prior", small_prior, "--out", path])
    assert result.exit_code == 0, result.output
    assert iio.imread(path).shape[0] == 2 * 3 + 1  # three latents: two legs of 3 frames and the last latent
    sweep = tmp_path / "sweep.gif"
    result = invoke_cli(["video", "--network", NET, "--seeds", "5", "--component", 0, "--frames", 6,
                         "--prior", small_prior, "--out", sweep])
    assert result.exit_code == 0, result.output
    frames = iio.imread(sweep)
    from latentkit.latent.edit import ramp_amounts

    assert frames.shape[0] == len(ramp_amounts([-3, 3], 6)) == json.loads(result.stdout)["frames"]
    assert not (frames[0] == frames[2]).all()  # -3 sd and +3 sd
