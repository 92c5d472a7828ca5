"""Hostile checkpoints through the CLI: one line starting with 'Error:', exit 1, no traceback, no 'Aborted!'."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from latentkit.cli import main

PAYLOADS = {
    "ext.pkl": b"\x80\x02\x83\x00\x0f(Vtouch x\ntR.",
    "object-array.pkl": b"\x80\x02cnumpy\nndarray\n(K\x02\x85VO\nC\x10" + b"A" * 16 + b"tR.",
    "poison.pkl": b"\x80\x02cdnnlib.util\nEasyDict\n(}(V__init__\nNdtb.",
    "memo.pkl": b"\x80\x02Nr\x00\x00\x00\x10.",
    "deep.pkl": b"\x80\x02" + b"]" * 50_000 + b"a" * 49_999 + b".",
    "empty.pkl": b"",
    "zip.pt": b"PK\x03\x04" + b"\x00" * 60,
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_info_on_hostile_files_is_one_error_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(PAYLOADS[name])
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output  # only an info log line may precede it
    assert "Traceback" not in result.output and "Aborted" not in result.output


@pytest.mark.parametrize("args", [
    ["generate", "--trunc", "inf"], ["generate", "--trunc", "nan"], ["generate", "--guidance", "-inf"],
    ["compress", "--trunc", "nan"], ["video", "--psi", "inf"], ["video", "--fps", "nan"], ["video", "--fps", "0"],
    ["edit", "w.npz", "--fps", "inf"], ["project", "x.png", "--prior-weight", "inf"], ["project", "x.png", "--stop-tol", "nan"],
    ["tune", ".", "--learning-rate", "inf"], ["train-encoder", "--out", "e.safetensors", "--learning-rate", "nan"],
])
def test_non_finite_numbers_are_refused_before_any_work(args):
    """click's float takes 'inf' and 'nan' (and FloatRange's bounds let nan through): every float option of
    the CLI is a finite number, refused in one usage line (exit 2) before a network loads."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and ("finite" in errors[0] or "range" in errors[0]), result.output
    assert "Traceback" not in result.output
