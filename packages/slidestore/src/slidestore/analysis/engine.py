"""``run``: plan a model's tiles on a slide, run them on Dask, reduce, record provenance.

Tiles go to the cluster in a bounded window (``distributed.as_completed``), not as one
graph of every tile, so the scheduler and this process hold a few batches of tasks
whatever the slide's size; each task gets a small spec of the slide and opens it on the
worker. Outputs are kept by plan index so ``reduce`` sees them in a fixed order and the
same run gives the same result however the tiles were scheduled.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import zarr
from distributed import Client, Future, as_completed

import slidestore
from slidestore.analysis.batching import Batcher
from slidestore.analysis.dask_client import default_client, engine_description
from slidestore.analysis.errors import AnalysisError, TileFailed
from slidestore.analysis.locality import workers_for_nodes
from slidestore.analysis.model import Model, Reduced, SlideContext, TileOutput
from slidestore.analysis.planning import (
    TileJob,
    check_region,
    choose_read,
    plan_tiles,
    planning_mask,
)
from slidestore.analysis.progress import RunProgress, start_progress
from slidestore.analysis.provenance import file_sha256
from slidestore.analysis.registry import decode_params, input_spec, resolve_model
from slidestore.analysis.result import AnalysisResult
from slidestore.analysis.sources import LocalSpec, RemoteSpec, SourceSpec, spec_for
from slidestore.analysis.tasks import TileError, TileJobs, run_tiles

__all__ = ["run"]

WINDOW_PER_THREAD = 4
"""Tasks in flight per worker thread: enough to keep workers busy between round trips."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _locality(client: Client, spec: SourceSpec) -> dict[str, Any]:
    """Restrict a blob's tasks to workers on nodes with a replica, when there are any."""
    if not isinstance(spec, RemoteSpec) or not spec.node_ids:
        return {}
    workers = workers_for_nodes(client.scheduler_info()["workers"], spec.node_ids)
    return {"workers": workers, "allow_other_workers": False} if workers else {}


def _execute(
    client: Client,
    model: Model[Any],
    params: msgspec.Struct,
    spec: SourceSpec,
    read: Any,
    jobs: list[TileJob],
    overlap: int,
    bar: RunProgress | None,
) -> tuple[list[TileOutput], dict[str, Any]]:
    workers = client.scheduler_info()["workers"]
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    window = max(4, WINDOW_PER_THREAD * threads)
    batcher = Batcher(jobs, threads)
    restrict = _locality(client, spec)
    run_id = uuid.uuid4().hex[:8]
    outputs: list[TileOutput | None] = [None] * len(jobs)
    local_bytes = remote_bytes = 0
    cpu_seconds = 0.0

    def failed(job: TileJob, cause: str) -> TileFailed:
        x, y = round(job.ox * read.downsample), round(job.oy * read.downsample)
        return TileFailed(job.index, x, y, cause)

    def submit(chunk: tuple[TileJob, ...]) -> Future[Any]:
        return client.submit(
            run_tiles,
            model,
            params,
            spec,
            read,
            TileJobs(chunk),
            overlap,
            key=f"slidestore-{model.name}-{run_id}-{chunk[0].index}",
            pure=False,
            **restrict,
        )

    queue = as_completed(loop=client.loop)  # type: ignore[no-untyped-call]
    for _ in range(window):
        chunk = batcher.next()
        if chunk is None:
            break
        queue.add(submit(chunk))  # type: ignore[no-untyped-call]
    try:
        for future in queue:
            try:
                results = future.result().results
            except Exception as exc:  # the task itself died (KilledWorker after retries)
                first = int(str(future.key).rsplit("-", 1)[1])
                raise failed(jobs[first], f"{type(exc).__name__}: {exc}") from exc
            future.release()
            for done in results:
                if isinstance(done, TileError):
                    raise failed(jobs[done.index], done.cause)
                outputs[done.index] = done.output
                cpu_seconds += done.cpu_seconds
                batcher.record(1, done.seconds)
                if done.local:
                    local_bytes += done.nbytes
                else:
                    remote_bytes += done.nbytes
            if bar is not None:
                bar.update(len(results))
            following = batcher.next()
            if following is not None:
                queue.add(submit(following))  # type: ignore[no-untyped-call]
    except BaseException:
        # Never leave tasks of an abandoned run on the cluster.
        client.cancel(list(queue.futures))  # type: ignore[no-untyped-call]
        raise
    missing = [i for i, out in enumerate(outputs) if out is None]
    if missing:  # cannot happen unless Dask lost a result: never pass a partial result on
        raise AnalysisError(f"{len(missing)} tiles have no result (first: {missing[0]})")
    counts = {"local": local_bytes, "remote": remote_bytes, "tile_cpu_seconds": cpu_seconds}
    return [out for out in outputs if out is not None], counts


def _arrays_group(
    reduced: Reduced, scale: float, origin: tuple[int, int], path: str | None
) -> zarr.Group:
    store: Any = zarr.storage.MemoryStore() if path is None else zarr.storage.LocalStore(path)
    group = zarr.open_group(store=store, mode="w", zarr_format=3)
    for name, array in sorted(reduced.arrays.items()):
        values = np.asarray(array)
        target = group.create_array(name, shape=values.shape, dtype=values.dtype)
        target[...] = values
        # One cell per planned tile unless the model says otherwise: cell (row, col)
        # covers level-0 pixels from translate + (col, row) * scale, `scale` wide.
        own = reduced.array_transforms.get(name)
        transform: dict[str, list[float]] = (
            {"scale": [own[0], own[1]], "translate": [own[2], own[3]]}
            if own is not None
            else {"scale": [scale, scale], "translate": [float(v) for v in origin]}
        )
        target.attrs["level0_transform"] = transform
    return group


def _slide_sha256(spec: SourceSpec) -> str | None:
    if isinstance(spec, RemoteSpec):
        return spec.blob_id  # blob ids are the sha256 of the slide file
    try:
        return file_sha256(spec.path)
    except OSError:
        return None


def run(
    model: str | Model[Any],
    slide: Any,
    params: Any = None,
    *,
    region: tuple[int, int, int, int] | None = None,
    client: Client | None = None,
    progress: bool | Callable[[int, int], None] = True,
    arrays_path: str | None = None,
) -> AnalysisResult:
    """Run ``model`` (a registered name or a model object) on ``slide`` (a local
        :class:`slidestore.Slide`, a path, or a client ``RemoteSlide``).

        ``region``: level-0 ``(x, y, width, height)`` to restrict the run to. ``client``: a
        ``distributed.Client`` (default: ``SLIDESTORE_DASK_SCHEDULER`` or an embedded local
        cluster). ``progress``: a tqdm bar, or a callback ``(tiles done, tiles planned)``
    called as tiles finish (what it raises stops the run, its Dask futures cancelled). ``arrays_path``: write the result's arrays to this zarr directory instead
        of memory. Raises ``UnknownModel``, ``BadParams``, ``SlideUnsuitable``, ``TileFailed``.
    """
    started = _now()
    resolved = resolve_model(model)
    decoded = decode_params(resolved, params)
    spec = spec_for(slide)
    source = spec.open() if isinstance(spec, LocalSpec) else _client_side_source(spec)
    area = check_region(source, region)
    inputs = input_spec(resolved, decoded)
    read = choose_read(source, inputs, area[2] * area[3])
    mask = None
    tissue_fraction = None
    if inputs.tissue_only and not inputs.whole_image:
        mask = planning_mask(spec.identity, source)
        tissue_fraction = float(mask[0].mean())
    jobs = plan_tiles(read, inputs, area, mask)
    dask = client if client is not None else default_client()
    # A big local file takes seconds to hash: do it while the workers run the tiles.
    hashing = ThreadPoolExecutor(1, thread_name_prefix="slidestore-hash")
    sha256 = hashing.submit(_slide_sha256, spec)
    hashing.shutdown(wait=False)
    scheduler = str(dask.scheduler.address) if dask.scheduler is not None else ""
    bar = start_progress(progress, len(jobs), resolved.name, scheduler, dask.dashboard_link)
    try:
        outputs, counts = _execute(dask, resolved, decoded, spec, read, jobs, inputs.overlap, bar)
    except BaseException as exc:
        if bar is not None:
            bar.close(exc)
        raise
    if bar is not None:
        bar.close()
    slide_ctx = SlideContext(
        width=source.width,
        height=source.height,
        mpp=source.mpp,
        read_downsample=read.downsample,
        tile_size=inputs.tile_size,
        plan=tuple((round(j.ox * read.downsample), round(j.oy * read.downsample)) for j in jobs),
        tissue_fraction=tissue_fraction,
    )
    reduced = resolved.reduce(outputs, slide_ctx, decoded)
    features = {"type": "FeatureCollection", "features": reduced.features}
    measurements = pa.Table.from_pylist(reduced.rows)
    origin = (
        round(area[0] // read.downsample * read.downsample),
        round(area[1] // read.downsample * read.downsample),
    )
    arrays = _arrays_group(reduced, inputs.tile_size * read.downsample, origin, arrays_path)
    provenance = {
        "model": {"name": resolved.name, "version": resolved.version},
        "params": msgspec.to_builtins(decoded),
        "slide": {
            "sha256": sha256.result(),
            "source": spec.path if isinstance(spec, LocalSpec) else f"blob:{spec.blob_id}",
            "width": source.width,
            "height": source.height,
            "mpp": source.mpp,
        },
        "region": list(area) if region is not None else None,
        "read": {"level": read.level, "downsample": read.downsample, "mpp": read.mpp},
        "slidestore_version": slidestore.__version__,
        "engine": engine_description(dask),
        "started": started,
        "finished": _now(),
        "tiles": {"planned": len(jobs), "done": len(outputs)},
        "bytes": {"local": counts["local"], "remote": counts["remote"]},
        "tile_cpu_seconds": round(counts["tile_cpu_seconds"], 3),
        "tissue_fraction": tissue_fraction,
    }
    return AnalysisResult(
        features=features,
        measurements=measurements,
        summary=reduced.summary,
        arrays=arrays,
        provenance=provenance,
    )


def _client_side_source(spec: SourceSpec) -> Any:
    # The caller plans from the pyramid over HTTP even on a storage node: planning
    # reads one small level, and the caller need not run where the blob is.
    from slidestore.analysis.sources import RemoteSource

    assert isinstance(spec, RemoteSpec)
    return RemoteSource(spec)
