"""The CPU memory policy: applied once on glibc, skipped when the environment opts out."""

from __future__ import annotations

import platform
import sys

import pytest

from latentkit import cpu_memory


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_applied", None)
    return cpu_memory


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_opting_out_leaves_malloc_alone(fresh, monkeypatch, value):
    monkeypatch.setenv(cpu_memory.RETAIN_ENV, value)
    assert fresh.retain_freed_memory() is False
    monkeypatch.setenv(cpu_memory.RETAIN_ENV, "1")
    assert fresh.retain_freed_memory() is False  # the first call decided


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applied_on_glibc(fresh, monkeypatch):
    monkeypatch.delenv(cpu_memory.RETAIN_ENV, raising=False)
    assert fresh.retain_freed_memory() is True
    assert fresh.retain_freed_memory() is True


def test_other_platforms_do_nothing(fresh, monkeypatch):
    monkeypatch.delenv(cpu_memory.RETAIN_ENV, raising=False)
    monkeypatch.setattr(cpu_memory.sys, "platform", "darwin")
    assert fresh.retain_freed_memory() is False


def test_loading_a_generator_applies_it(fresh, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("latentkit.load.retain_freed_memory", lambda: calls.append(1) or True)
    import latentkit

    with pytest.raises(latentkit.errors.InputError):
        latentkit.load_generator(tmp_path / "missing.pkl")
    assert calls == [1]
