"""What a Dask worker runs: open the source (once per process), read one tile, run the model.

A model's exception is returned, not raised, so the caller can name the tile (its index
and level-0 position) in a ``TileFailed``; a lost worker is Dask's business (it reruns
the task elsewhere).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import msgspec

from slidestore.analysis.model import Model, TileContext, TileOutput
from slidestore.analysis.planning import Read, TileJob, read_tile
from slidestore.analysis.sources import SourceSpec, open_source

__all__ = ["TileBatch", "TileDone", "TileError", "TileJobs", "run_tile", "run_tiles"]


@dataclass(frozen=True)
class TileDone:
    index: int
    output: TileOutput
    nbytes: int
    """Decoded pixel bytes the tile read (with overlap)."""
    local: bool
    """Read from a file on the worker's host (else over HTTP)."""
    cpu_seconds: float
    """CPU time of the task's thread for reading and processing the tile."""
    seconds: float
    """Wall time of reading and processing the tile (sizes later tasks)."""


@dataclass(frozen=True)
class TileError:
    index: int
    cause: str
    detail: str


@dataclass(frozen=True)
class TileJobs:
    """A task's tiles as one opaque argument: Dask walks a tuple argument element by
    element looking for dependencies (on the scheduler, for every task), which for
    hundreds of tiles cost more than sending them."""

    jobs: tuple[TileJob, ...]


@dataclass(frozen=True)
class TileBatch:
    """A task's results as one object: Dask serializes the elements of a returned list
    one by one (a pickle and a frame per tile, thousands per run for small tiles, all
    unpickled by the caller); one object is one pickle."""

    results: tuple[TileDone | TileError, ...]


def context_for(read: Read, job: TileJob, left: int, top: int) -> TileContext:
    return TileContext(
        x=round(job.ox * read.downsample),
        y=round(job.oy * read.downsample),
        width=job.width,
        height=job.height,
        overlap_left=left,
        overlap_top=top,
        downsample=read.downsample,
        mpp=read.mpp,
        index=job.index,
    )


def run_tiles(
    model: Model[Any],
    params: msgspec.Struct,
    spec: SourceSpec,
    read: Read,
    jobs: TileJobs,
    overlap: int,
) -> TileBatch:
    """A task: a few consecutive tiles (amortizes Dask's per-task cost); stops at an error."""
    results: list[TileDone | TileError] = []
    for job in jobs.jobs:
        results.append(run_tile(model, params, spec, read, job, overlap))
        if isinstance(results[-1], TileError):
            break
    return TileBatch(tuple(results))


def run_tile(
    model: Model[Any],
    params: msgspec.Struct,
    spec: SourceSpec,
    read: Read,
    job: TileJob,
    overlap: int,
) -> TileDone | TileError:
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        source = open_source(spec)
        pixels, left, top = read_tile(source, read, job, overlap)
        output = model.process_tile(pixels, context_for(read, job, left, top), params)
        if not isinstance(output, TileOutput):
            raise TypeError(f"process_tile returned {type(output).__name__}, not a TileOutput")
    except Exception as exc:  # named in TileFailed by the caller, with the tile
        return TileError(job.index, f"{type(exc).__name__}: {exc}", traceback.format_exc())
    return TileDone(
        job.index,
        output,
        int(pixels.nbytes),
        source.local,
        time.thread_time() - cpu,
        time.perf_counter() - wall,
    )
