"""The README's rule for every command: a usage error is one line and exit 2; a toolkit error is one line
starting 'Error:' and exit 1; never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from latentkit.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_usage_errors_are_one_line_exit_2(command):
    result = CliRunner().invoke(main, [command, "--no-such-option"], prog_name="latentkit")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: No such option") and f"latentkit {command} --help" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["compress", "--tau", "-1"],
        ["ppl", "--space", "v"],
        ["generate", "--trunc", "abc"],
        ["project"],
        ["nosuchcommand"],
        ["interpolate", "missing-a.npz", "missing-b.npz"],  # click's Path(exists=True): a usage error
    ],
)
def test_bad_values_are_usage_errors(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["project", "missing.png"], "image file not found: missing.png"),
        (["info", "missing.pkl"], "checkpoint file not found"),
    ],
)
def test_toolkit_errors_are_one_line_exit_1(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output
