"""The ``latentkit`` command: a thin layer over the Python API.

Each command lives in a module of this package and is imported only when it runs, so
``latentkit --help`` does not import torch. A :class:`~latentkit.errors.LatentkitError` becomes a
one-line error and exit status 1; a usage error (a bad option or argument) is one line and exit status 2
(click's convention); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings

import click

from latentkit.errors import LatentkitError

__all__ = ["main"]

# command name -> "module:attribute"
COMMANDS = {
    "info": "latentkit.cli.generator:info",
    "generate": "latentkit.cli.generator:generate",
    "fit-prior": "latentkit.cli.prior:fit_prior",
    "compress": "latentkit.cli.prior:compress",
    "project": "latentkit.cli.project:project",
    "align": "latentkit.cli.project:align",
    "train-encoder": "latentkit.cli.encoder:train_encoder",
    "tune": "latentkit.cli.tune:tune",
    "identity": "latentkit.cli.evaluate:identity",
    "evaluate": "latentkit.cli.evaluate:evaluate",
    "interpolate": "latentkit.cli.evaluate:interpolate",
    "ppl": "latentkit.cli.evaluate:ppl",
    "tradeoff": "latentkit.cli.evaluate:tradeoff",
    "edit": "latentkit.cli.edit:edit",
    "directions": "latentkit.cli.edit:directions",
    "video": "latentkit.cli.app:video",
    "serve": "latentkit.cli.app:serve",
}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the stream of the first call
    (so repeated in-process invocations, e.g. click's CliRunner, each see their own log lines)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {' '.join(str(message).split())}", err=True)


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line (click's usage block trimmed), exit status 2 as click's convention."""

    def show(self, file=None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", err=True)


class _LazyGroup(click.Group):
    """A group that imports each command's module on first use and turns toolkit errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            if isinstance(err, _OneLineUsageError):
                raise
            raise _OneLineUsageError(err.format_message(), err.ctx) from err
        except LatentkitError as err:
            # one line, but nothing dropped: an offline error names the URL, the sha256 and the path
            message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
            error = click.ClickException(message or type(err).__name__)
            if isinstance(err, KeyboardInterrupt):  # an interrupted job that saved its state: 128 + SIGINT
                error.exit_code = 130
            raise error from err


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(package_name="latentkit")
def main(verbose: int, quiet: bool) -> None:
    """latentkit: project images into StyleGAN latent spaces, keep latents well-behaved
    (Gaussianized-W prior), compress instead of truncate, and measure the results."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    if not quiet:  # the library's warnings.warn, as one line without Python's file/line/source decoration
        warnings.showwarning = _one_line_warning
    root = logging.getLogger("latentkit")
    root.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
