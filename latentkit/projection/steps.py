"""Driving an optimisation step by step, resumably: the checkpoint files and the loop that projection and
pivotal tuning share.

:func:`write_checkpoint` / :func:`read_checkpoint` keep a run's state (tensors and plain data) in one
``torch.save`` file, written atomically and read back with ``weights_only=True``; a checkpoint of another run
is refused, naming what differs when both runs were described (:func:`~latentkit.projection.fingerprint.
describe_difference`). :func:`run_steps` runs the steps with a progress bar, checkpoints every few steps and on
Ctrl-C (then :class:`ProjectionInterrupted`), and stops early when its ``stop`` rule says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from latentkit.errors import InputError, LatentkitError
from latentkit.projection.fingerprint import describe_difference

__all__ = ["ProjectionInterrupted", "SteppedState", "read_checkpoint", "run_steps", "write_checkpoint"]


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` a checkpoint dict (tensors and plain data) to ``path`` atomically."""
    from latentkit.files import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path, *, version: int, fingerprint: str, kind: str,
                    described: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`write_checkpoint`; it must have ``version`` and ``fingerprint``.

    Args:
        described: this run's description (:func:`~latentkit.projection.fingerprint.run_fingerprint`'s); with
            one stored in the checkpoint (key ``'described'``, JSON), a refusal names the settings that differ.

    Raises:
        InputError: an unreadable file, not a ``kind`` checkpoint of this version, or one of another run.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]  # torch's texts span lines
        raise InputError(f"cannot read checkpoint {path}: {reason}; delete it to start afresh") from err
    if not isinstance(state, dict) or type(state.get("version")) is not int or state["version"] != version:
        raise InputError(f"{path} is not a latentkit {kind} checkpoint (version {version}); delete it")
    if not isinstance(state.get("fingerprint"), str) or state["fingerprint"] != fingerprint:
        try:
            saved = json.loads(state.get("described") or "{}")
        except (TypeError, ValueError):
            saved = {}
        what = describe_difference(saved, described) if isinstance(saved, dict) and saved and described else ""
        what = f"other settings: {what}" if what else "other targets, labels, settings or generator"
        raise InputError(
            f"checkpoint {path} holds an unfinished run with {what}; run it with those settings to resume it, "
            "or start over with --restart (restart=True), or delete the checkpoint"
        )
    return state


class ProjectionInterrupted(LatentkitError, KeyboardInterrupt):
    """A run stopped by Ctrl-C: ``step`` of ``num_steps`` were done, saved in ``checkpoint`` if given."""

    def __init__(self, step: int, num_steps: int, checkpoint: Path | None) -> None:
        self.step, self.num_steps, self.checkpoint = step, num_steps, checkpoint
        saved = f"; the state is saved in {checkpoint}: run the same again to resume" if checkpoint else ""
        super().__init__(f"interrupted at step {step} of {num_steps}{saved}")


class SteppedState(Protocol):
    """An optimisation driven by :func:`run_steps` (:class:`~latentkit.projection.state.ProjectionState`, the
    tuning state)."""

    def step(self, step: int) -> torch.Tensor: ...

    def save(self, path: Path, fingerprint: str, step: int, described: dict[str, Any] | None = None) -> None: ...


def run_steps(
    state: SteppedState,
    *,
    start: int,
    num_steps: int,
    checkpoint: Path | None,
    run_id: str,
    checkpoint_every: int,
    progress: bool,
    desc: str,
    after_step: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    described: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Run steps ``start .. num_steps - 1`` with a tqdm bar, checkpoints every ``checkpoint_every`` steps and
    at the end, and a checkpoint on Ctrl-C (then :class:`ProjectionInterrupted`).

    Args:
        stop: asked before each step; True ends the run there (a convergence rule).
        described: the run's description, stored in each checkpoint so a rerun can name what differs.

    Returns:
        (steps done, why it ended: ``'num_steps'`` or ``'converged'``).
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=not progress, leave=False)
    done = start
    reason = "num_steps"
    try:
        for step in range(start, num_steps):
            if stop is not None and stop():
                reason = "converged"
                break
            loss = state.step(step)
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.mean()):.4f}")
            if after_step is not None:
                after_step(step)
            if checkpoint is not None and (done % checkpoint_every == 0 or done == num_steps):
                state.save(checkpoint, run_id, done, described)
    except KeyboardInterrupt:
        if checkpoint is not None and done > start:
            state.save(checkpoint, run_id, done, described)
        raise ProjectionInterrupted(done, num_steps, checkpoint) from None
    finally:
        bar.close()
    return done, reason
