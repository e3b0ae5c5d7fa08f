"""Fixtures and the end-of-session ratio table for the tile benchmarks.

Each benchmark records its median (seconds) under a name in a session dict; at the end of
the session :func:`pytest_terminal_summary` prints every comparison as
``baseline median / ours median`` with its goal and PASS/FAIL.

The suites only run when ``benchmarks`` (or a file in it) is named on the command line,
so a bare ``pytest`` from the repository root does not spend minutes benchmarking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import openslide
import pytest
from openslide.deepzoom import DeepZoomGenerator

from slidestore.reading import Slide, open_slide
from slidestore.testing import cached_svs

SLIDE_SIZE: Final = (60000, 50000)
"""The large generated slide: levels 60000x50000, /4, /16, /64, /256; 240 px JPEG tiles."""

TILE_SIZE: Final = 240
"""The slide's native tile size (the DeepZoom default for this slide)."""

HERE: Final = Path(__file__).resolve().parent

MEDIANS: Final = pytest.StashKey[dict[str, float]]()


@dataclass(frozen=True)
class Comparison:
    label: str
    ours: str
    baseline: str
    goal: float | None = None
    """Minimum speed-up (baseline / ours); ``None`` for informational rows."""


COMPARISONS: Final = (
    Comparison(
        "passthrough JPEG vs DZG get_tile+JPEG encode",
        "passthrough",
        "dzg_deepest_jpeg",
        50.0,
    ),
    Comparison("passthrough JPEG vs DZG get_tile alone", "passthrough", "dzg_deepest"),
    Comparison(
        "checked passthrough (node: chunk CRCs) vs DZG get_tile+JPEG encode",
        "checked_passthrough",
        "dzg_deepest_jpeg",
        50.0,
    ),
    Comparison(
        "checked passthrough vs unchecked passthrough", "checked_passthrough", "passthrough"
    ),
    Comparison(
        "transcoded PNG (decode+encode) vs DZG get_tile+PNG",
        "transcoded_png",
        "dzg_deepest_png",
    ),
    Comparison(
        "derived 2x tile, cold vs DZG (no OpenSlide cache)+JPEG",
        "derived_cold",
        "dzg_derived_jpeg_nocache",
    ),
    Comparison(
        "derived 2x tile, cold vs DZG (warm OpenSlide)+JPEG",
        "derived_cold",
        "dzg_derived_jpeg",
    ),
    Comparison(
        "derived 2x tile, warm vs DZG get_tile+JPEG", "derived_warm", "dzg_derived_jpeg", 3.0
    ),
    Comparison(
        "derived 2x tile, cold: unchecked source vs checked (node)",
        "checked_derived_cold",
        "derived_cold",
    ),
    Comparison("open: plain vs checked structure (node)", "checked_open", "open"),
    Comparison("zarr chunk read, cold vs DZG get_tile", "zarr_cold", "dzg_deepest"),
    Comparison("zarr chunk read, warm vs DZG get_tile", "zarr_warm", "dzg_deepest"),
)


# -- collection ------------------------------------------------------------------------


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect the benchmarks only when they were asked for by path."""
    for arg in config.args:
        target = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if target == HERE or HERE in target.parents:
            return None
    return collection_path.resolve().is_relative_to(HERE) or None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[MEDIANS] = {}


# -- recording -------------------------------------------------------------------------


class Benchmark(Protocol):
    """The part of pytest-benchmark's ``benchmark`` fixture used here."""

    @property
    def stats(self) -> object: ...


Record = Callable[[str, Benchmark], None]


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """``record(name, benchmark)`` after a run stores its median for the ratio table."""
    medians = request.config.stash[MEDIANS]

    def store(name: str, benchmark: Benchmark) -> None:
        metadata = benchmark.stats  # None when benchmarks are disabled
        stats = getattr(metadata, "stats", None)
        median = getattr(stats, "median", None)
        if isinstance(median, float):
            medians[name] = median

    return store


# -- the slide -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slide_path() -> Path:
    return cached_svs(*SLIDE_SIZE)


@pytest.fixture(scope="session")
def slide(slide_path: Path) -> Iterator[Slide]:
    with open_slide(slide_path) as opened:
        yield opened


@pytest.fixture(scope="session")
def osr(slide_path: Path) -> Iterator[openslide.OpenSlide]:
    """OpenSlide with its default tile cache (warm after the first request)."""
    handle = openslide.OpenSlide(slide_path)
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def osr_nocache(slide_path: Path) -> Iterator[openslide.OpenSlide]:
    """OpenSlide with no tile cache: every request decodes its JPEG tiles."""
    handle = openslide.OpenSlide(slide_path)
    handle.set_cache(openslide.OpenSlideCache(0))
    yield handle
    handle.close()


@pytest.fixture(scope="session")
def dzg(osr: openslide.OpenSlide) -> DeepZoomGenerator:
    return DeepZoomGenerator(osr, tile_size=TILE_SIZE, overlap=0, limit_bounds=False)


@pytest.fixture(scope="session")
def dzg_nocache(osr_nocache: openslide.OpenSlide) -> DeepZoomGenerator:
    return DeepZoomGenerator(osr_nocache, tile_size=TILE_SIZE, overlap=0, limit_bounds=False)


# -- the ratio table -------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    medians = config.stash.get(MEDIANS, {})
    if not medians:
        return
    write = terminalreporter.write_line
    terminalreporter.section("slidestore vs OpenSlide DeepZoomGenerator (median ratios)")
    write(f"{'comparison':<56} {'ours':>10} {'baseline':>10} {'ratio':>9} {'goal':>6}  result")
    for c in COMPARISONS:
        ours, base = medians.get(c.ours), medians.get(c.baseline)
        if ours is None or base is None:
            write(f"{c.label:<56} {'(not run)':>10}")
            continue
        ratio = base / ours
        goal = f">={c.goal:g}x" if c.goal is not None else "-"
        result = "-" if c.goal is None else ("PASS" if ratio >= c.goal else "FAIL")
        write(f"{c.label:<56} {_ms(ours):>10} {_ms(base):>10} {ratio:>8.1f}x {goal:>6}  {result}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}ms"
