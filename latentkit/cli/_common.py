"""Options and helpers shared by the commands (no math here)."""

from __future__ import annotations

import click

__all__ = ["device_option", "duration", "network_options", "pick_network", "resolve_device", "resolve_network", "say"]


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


def network_options(func):
    """``[SOURCE]`` and ``--network SOURCE``: one network, spelled either way (NVIDIA's tools use --network)."""
    func = click.option("--network", "network", default=None,
                        help="Generator file or registry name (default network if omitted).")(func)
    return click.argument("source", required=False, metavar="[SOURCE]")(func)


def pick_network(source: str | None, network: str | None) -> str:
    """The network named by the positional SOURCE or ``--network`` (the default, announced, when neither)."""
    if source is not None and network is not None and source != network:
        raise click.UsageError(f"two networks given: SOURCE {source!r} and --network {network!r}; give one")
    return resolve_network(network if network is not None else source)


def duration(seconds: float) -> str:
    """A duration for the estimate lines: '40 s', '12 min' or '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
