"""The README's Python code runs as written: registry names are mapped to a small reference net and LPIPS
to its random-weight test network (no downloads in tests); everything else is the README's own text."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import latentkit

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "tests" / "data" / "reference-nets" / "sg2ada_uncond_map8_res32.pkl"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_python_code():
    assert _python_blocks()


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    import latentkit.projection.lpips as lpips

    real_load, real_lpips = latentkit.load_generator, lpips.lpips_vgg
    loaded = []

    def load_generator(source, **kwargs):
        loaded.append(source)
        return real_load(NET if source in latentkit.hub.REGISTRY else source, **kwargs)

    monkeypatch.setattr(latentkit, "load_generator", load_generator)
    monkeypatch.setattr(lpips, "lpips_vgg", lambda weights="auto", **kw: real_lpips("random", **kw))
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "face.png", tmp_path / "examples" / "face.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_python_blocks()[index], f"README.md python block {index}", "exec"), namespace)
    assert loaded and all(name in latentkit.hub.REGISTRY or Path(name).exists() for name in loaded)
    from latentkit.load import OFFLINE_NETWORK  # the README's code runs as written offline: no other download

    assert all(name == OFFLINE_NETWORK for name in loaded if name in latentkit.hub.REGISTRY), loaded
    if "result" in namespace:
        result = namespace["result"]
        assert result.ws.shape[1:] == (namespace["G"].num_ws, namespace["G"].w_dim)
