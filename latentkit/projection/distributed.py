"""Batch projection shared by the ranks of a torchrun job: who holds the folder, who does which image.

The protocol (``shard = (rank, world_size)``; one process is ``(0, 1)`` and does the same with no messages):

1. Rank 0 takes the folder's lock (the one a single-process run takes, so a single run and a job, or two
   jobs, never write one folder at once) and merges per-rank manifests a dead job left behind. Every rank
   learns whether that worked; if not, every rank raises the same error.
2. Every rank reads the manifest and decides, identically, which images remain; a refusal (images done
   with other settings) is raised on every rank (:func:`agree`).
3. Rank R projects the files ``i`` with ``i % world_size == R`` (:func:`my_share`) that remain, in batches,
   and appends one line per finished image to ``manifest.rank<R>.jsonl``. Sharding the file list (not
   the remainder) keeps each rank's batches where they were, so a rank that dies loses only its
   unfinished batch: a rerun with the same number of ranks and batch size skips what the per-rank files
   hold and resumes that batch's checkpoint at its step (other counts redo it from step 0). A prefix
   done by an earlier run is spread evenly over the ranks.
4. At the end the ranks exchange their records, and rank 0 merges the per-rank files into
   ``manifest.jsonl`` in input order before releasing the lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from latentkit.distributed import all_gather_objects, check_shard
from latentkit.errors import InputError, LatentkitError
from latentkit.projection.outdir import MANIFEST, folder_lock, merge_manifests, rank_manifest

__all__ = ["agree", "gather_records", "manifest_name", "my_share", "shared_folder"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def manifest_name(shard: tuple[int, int] | None) -> str:
    """The manifest file this rank appends to: ``manifest.jsonl`` for one process, else the per-rank one."""
    rank, world = check_shard(shard)
    return MANIFEST if world == 1 else rank_manifest(rank)


def my_share(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """Items ``i`` with ``i % world_size == rank``, in order: a deterministic, balanced split (sizes differ by <= 1)."""
    rank, world = check_shard(shard)
    return list(items[rank::world])


def agree(error: LatentkitError | None, shard: tuple[int, int] | None) -> None:
    """A barrier at which any rank's error stops every rank: re-raise this rank's own, else the first other's.

    Raises:
        LatentkitError: this rank's ``error``; InputError naming the rank whose error stopped the job.
    """
    _, world = check_shard(shard)
    messages = all_gather_objects(None if error is None else str(error), world)
    if error is not None:
        raise error
    for other, message in enumerate(messages):
        if message is not None:
            raise InputError(f"rank {other} of the job stopped: {message}")


@contextlib.contextmanager
def shared_folder(outdir: Path, shard: tuple[int, int] | None, order: Sequence[str] = ()) -> Iterator[None]:
    """Hold ``outdir`` for the job (steps 1 and 4 above); ``order``: the input paths, for the merged manifest.

    On an exception inside the block no rank waits for the others (they may be gone): rank 0 releases
    the lock and the per-rank manifests stay for the next run to merge.

    Raises:
        InputError: another run holds the folder (on every rank).
    """
    rank, world = check_shard(shard)
    with contextlib.ExitStack() as stack:
        failure = None
        if rank == 0:
            try:
                stack.enter_context(folder_lock(outdir))
                merge_manifests(outdir, list(order))  # what a job that died left behind
            except InputError as err:
                failure = err
        agree(failure, shard)
        yield
        if world > 1:
            all_gather_objects(None, world)  # everyone's lines are on disk
            if rank == 0:
                merge_manifests(outdir, list(order))


def gather_records(records: dict[str, Any], shard: tuple[int, int] | None) -> dict[str, Any]:
    """``records`` (``{input: record}``, the skipped ones the same on every rank) with every rank's new ones.

    Only the records a rank made travel (small dataclasses, one per image it projected).
    """
    _, world = check_shard(shard)
    if world == 1:
        return records
    merged = dict(records)
    for part in all_gather_objects({k: r for k, r in records.items() if not getattr(r, "skipped", False)}, world):
        merged.update(part)
    return merged
