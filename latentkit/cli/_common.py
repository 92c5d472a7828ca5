"""Options and helpers shared by the commands (no math here)."""

from __future__ import annotations

import math

import click

__all__ = ["FiniteFloat", "check_outdir", "device_option", "duration", "load_network", "network_option", "network_options", "pick_network", "prior_or_cached",
           "resolve_device", "resolve_network", "say"]


class FiniteFloat(click.FloatRange):
    """A float option that is a finite number (click's ``float`` takes ``inf`` and ``nan``), optionally in
    a range as :class:`click.FloatRange` (whose bounds let ``nan`` through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


NETWORK_HELP = "Generator file or registry name (default network if omitted)."


def say(message: str) -> None:
    """Tell the user something on stderr (stdout carries only results)."""
    click.echo(message, err=True)


def device_option(func):
    """``--device auto|cpu|cuda`` (auto: cuda when available)."""
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help="Where to compute.",
    )(func)


def resolve_device(name: str):
    """``'auto'`` -> cuda if available else cpu; returns a ``torch.device``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from latentkit.errors import InputError

        raise InputError("--device cuda was asked for, but torch finds no CUDA device; use --device cpu")
    return torch.device(name)


def resolve_network(network: str | None, *, how: str = "--network") -> str:
    """``network`` as given, or the default network (announced on stderr, naming ``how`` to choose another)."""
    if network is not None:
        return network
    from latentkit.load import default_network

    network = default_network()
    say(f"no network given: using the default {network!r} (choose one with {how})")
    return network


def network_option(func=None, *, help: str = NETWORK_HELP):
    """``--network SOURCE`` (NVIDIA's name), the one declaration every command uses; ``help`` for the few
    commands where it means something more (``@network_option(help=...)``)."""
    def decorate(f):
        return click.option("--network", "network", default=None, help=help)(f)

    return decorate if func is None else decorate(func)


def network_options(func):
    """``[SOURCE]`` and ``--network SOURCE``: one network, spelled either way (NVIDIA's tools use --network)."""
    return click.argument("source", required=False, metavar="[SOURCE]")(network_option(func))


def load_network(network: str | None, device):
    """Load ``network`` (the default network, announced, when None) onto ``device``."""
    from latentkit.load import load_generator

    return load_generator(resolve_network(network), device=device)


def prior_or_cached(prior_path: str | None, G, *, n_samples: int, classes=None, announce: bool = True):
    """``--prior PATH`` checked against ``G``, else the cached prior of ``G`` (per class with ``classes``)."""
    from latentkit.latent.prior_cache import cached_prior, load_prior_for

    if prior_path is not None:
        return load_prior_for(G, prior_path)
    if announce:
        say("no --prior given: using the cached prior of this network (fitted on first use)")
    return cached_prior(G, n_samples=n_samples, classes=classes)


def pick_network(source: str | None, network: str | None) -> str:
    """The network named by the positional SOURCE or ``--network`` (the default, announced, when neither)."""
    if source is not None and network is not None and source != network:
        raise click.UsageError(f"two networks given: SOURCE {source!r} and --network {network!r}; give one")
    return resolve_network(network if network is not None else source)


def check_outdir(path, option: str = "--outdir") -> None:
    """Make sure the output folder ``path`` can be created and written, before anything slow is loaded.

    Creates it (with its parents) and writes and removes a probe file in it.

    Raises:
        InputError: one line naming ``option``, the folder and the operating system's reason.
    """
    import os
    import tempfile
    from pathlib import Path

    from latentkit.errors import InputError

    folder = Path(path)
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError("it exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".latentkit-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise InputError(f"{option} {str(path)!r} cannot be written: {reason}; choose a writable folder") from None
def duration(seconds: float) -> str:
    """A duration for the estimate lines: '40 s', '12 min' or '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
