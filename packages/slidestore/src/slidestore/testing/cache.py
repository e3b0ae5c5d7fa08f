"""``cached_svs``: generate a synthetic slide once, reuse it across runs and processes.

Files are keyed by every parameter that changes their bytes (and by the sample slide),
written to a temporary name and renamed into place, so a reader never sees a partial
file. A lock file per key keeps concurrent pytest workers from generating the same
large slide twice at once (the second one waits, then finds it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypedDict, Unpack

from slidestore.synthetic.svs import Progress, SvsSpec, write_spec
from slidestore.testing.paths import sample_slide_path, slide_cache_dir

log = logging.getLogger(__name__)

GENERATOR_VERSION: Final = 1
"""Bump whenever ``write_svs`` output changes for the same parameters."""


class SvsOptions(TypedDict, total=False):
    """Keyword arguments of :func:`slidestore.testing.write_svs`."""

    tile_size: int
    quality: int
    mpp: float
    objective_power: int
    levels: int | None
    seed: int
    bigtiff: bool | None
    label: bool
    macro: bool
    islands: int | None
    sample: str | os.PathLike[str] | None
    scanned_at: datetime | None
    workers: int | None
    progress: Progress | None


def spec_from_options(width: int, height: int, options: SvsOptions) -> SvsSpec:
    """The :class:`SvsSpec` ``write_svs(path, width, height, **options)`` would write."""
    fields: dict[str, Any] = {
        key: value
        for key, value in options.items()
        if key not in ("workers", "progress") and value is not None
    }
    if "sample" in fields:
        fields["sample"] = Path(fields["sample"])
    return SvsSpec(width=width, height=height, **fields)


def cache_key(spec: SvsSpec) -> str:
    sample = (spec.sample or sample_slide_path()).resolve()
    material = {
        "generator": GENERATOR_VERSION,
        "width": spec.width,
        "height": spec.height,
        "tile_size": spec.tile_size,
        "quality": spec.quality,
        "mpp": repr(spec.mpp),
        "objective_power": spec.objective_power,
        "levels": spec.levels,
        "seed": spec.seed,
        "bigtiff": spec.bigtiff,
        "label": spec.label,
        "macro": spec.macro,
        "islands": spec.islands,
        "sample": [str(sample), sample.stat().st_size],
        "scanned_at": spec.scanned_at.isoformat(),
    }
    text = json.dumps(material, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an advisory lock on ``lock_path`` (POSIX; elsewhere rename alone protects)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_svs(width: int, height: int, **options: Unpack[SvsOptions]) -> Path:
    """A slide as ``write_svs(path, width, height, **options)`` writes it, from the cache.

    The cache is ``$SLIDESTORE_CACHE_DIR`` (default ``<repo>/.cache/slides``). Generated
    on first use; later calls (in any process) return the existing file at once.
    """
    spec = spec_from_options(width, height, options)
    directory = slide_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = f"synthetic-{width}x{height}-seed{spec.seed}-{cache_key(spec)}.svs"
    target = directory / name
    if target.is_file():
        return target
    with _exclusive(directory / f".{name}.lock"):
        if target.is_file():
            return target
        log.info("generating synthetic slide %s (%dx%d px)", target, width, height)
        started = time.monotonic()
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".partial")
        os.close(fd)
        try:
            write_spec(
                temporary,
                spec,
                workers=options.get("workers"),
                progress=options.get("progress"),
            )
            os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is shared
            os.replace(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)
        log.info("generated %s in %.1f s", target.name, time.monotonic() - started)
    return target
