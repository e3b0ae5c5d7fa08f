"""Every routine command: ``python3.12 run.py nox -s <session>`` (or plain ``nox``)."""

from __future__ import annotations

import os
import random
import sys

import nox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bootstrap  # run.py beside this file: the chromium set-up

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

PYTHON = os.environ.get("SLIDESTORE_PYTHON", "3.12")
DATA = os.path.join(os.path.dirname(__file__), "..", "shared", "data")


def sync(session: nox.Session, *groups: str) -> None:
    """Install the locked workspace into the session's virtualenv."""
    args = ["uv", "sync", "--locked", "--all-packages", "--inexact"]
    for group in groups:
        args += ["--group", group]
    session.run_install(
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        silent=True,
    )


FRONTEND = os.path.join(os.path.dirname(__file__), "apps", "labportal", "frontend")


def frontend(session: nox.Session) -> None:
    """The portal's browser libraries (OpenSeadragon, tus-js-client) from package-lock.json:
    ``npm ci`` when node_modules is missing or older than the lockfile."""
    lock = os.path.join(FRONTEND, "package-lock.json")
    modules = os.path.join(FRONTEND, "node_modules")
    if os.path.isdir(modules) and os.path.getmtime(modules) >= os.path.getmtime(lock):
        return
    session.run("npm", "ci", "--no-audit", "--no-fund", "--prefix", FRONTEND, external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole default test suite (library, server, portal, cross-package)."""
    # The portal's browser test drives Debian's chromium: install it or stop before anything.
    if (problem := bootstrap.ensure_chromium()) is not None:
        session.error(problem)
    sync(session, "dev")
    frontend(session)
    # Two xdist workers, a test file per worker at a time: most of the suite waits on real
    # servers, timeouts and databases, so two at once take ~10 min where one took ~15-21.
    # Files stay whole so a file's timing-sensitive tests never race each other, and the
    # cross-package cluster tests (the longest files) are handed out first. Ports come from
    # a block per worker (``slidestore.testing.ports``). ``-- -n 0`` runs serially.
    session.run(
        "pytest",
        "-n",
        "2",
        "--dist",
        "loadfile",
        "-m",
        "not long",
        "tests",
        "packages/slidestore-server/tests",
        "packages/slidestore/tests",
        "apps/labportal/tests",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def long(session: nox.Session) -> None:
    """The PostgreSQL runs of the longest cluster fault tests (``LONG`` in the root
    conftest.py), which the default suite leaves out to stay near 15 minutes."""
    sync(session, "dev")
    session.run(
        "pytest", "-m", "long", "tests", "packages/slidestore-server/tests", *session.posargs
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    sync(session, "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    """mypy, strict on the slidestore library."""
    sync(session, "dev")
    session.run("mypy", "packages/slidestore/src/slidestore")


@nox.session(python=PYTHON)
def benchmarks(session: nox.Session) -> None:
    """pytest-benchmark suites on a large generated slide; prints ratios to baselines."""
    sync(session, "dev")
    session.run(
        "pytest",
        "benchmarks",
        "-p",
        "no:randomly",
        "--benchmark-only",
        "--benchmark-columns=min,median,mean,ops",
        "-s",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Start the whole system on one machine: a coordinator, 3 nodes and the portal, with a
    demo account whose case holds the sample slide (``-- --check`` verifies and stops;
    ``-- --data-dir D --port P``). The single-node tile demo: ``slidestore-server demo``."""
    sync(session, "dev")
    frontend(session)
    session.run("python", "-m", "labportal.demo", *session.posargs)


@nox.session(python=PYTHON)
def screenshots(session: nox.Session) -> None:
    """PNGs of the portal's case page and viewer in docs/screenshots/ (for reviewers and the
    README): the browser test takes them on its way, against a real cluster and chromium."""
    if (problem := bootstrap.ensure_chromium()) is not None:
        session.error(problem)
    sync(session, "dev")
    frontend(session)
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docs", "screenshots")
    session.run(
        "pytest",
        "apps/labportal/tests/test_browser.py",
        "-k",
        "test_portal_in_a_browser",
        "-p",
        "no:randomly",
        *session.posargs,
        env={"LABPORTAL_SCREENSHOTS": folder},
    )
    session.log(f"screenshots in {folder}: case.png, viewer.png")


@nox.session(python=PYTHON)
def durability(session: nox.Session) -> None:
    """Uploads at full scale: a 5 GiB slide through a real node with its peak RSS checked
    (< 200 MB), plus the restart and kill -9 tests. Prints throughput and RSS."""
    sync(session, "dev")
    session.run(
        "pytest",
        "packages/slidestore-server/tests/test_uploads_http.py",
        "-k",
        "memory or restart or kill_9",
        "-s",
        *session.posargs,
        env={"SLIDESTORE_BIG_UPLOAD_BYTES": str(5 << 30)},
    )


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """wrk load test: node vs the DeepZoom baseline and the HTTP ceiling; tus upload speed."""
    sync(session, "dev")
    session.run("python", "benchmarks/load/run_load.py", *session.posargs)


@nox.session(python=PYTHON)
def upload_parts(session: nox.Session) -> None:
    """A 5 GiB upload over an emulated long link (25 ms each way, 4 MiB window per
    connection): one tus stream vs 4 partial uploads joined by the node, ratio printed."""
    sync(session, "dev")
    session.run("python", "benchmarks/load/upload_parts.py", *session.posargs)


@nox.session(python=PYTHON)
def load_folder(session: nox.Session) -> None:
    """wrk tiles/s: ``slidestore-server serve DIR`` vs a node on the same slide."""
    sync(session, "dev")
    session.run("python", "benchmarks/load/folder_vs_node.py", *session.posargs)


@nox.session(python=PYTHON)
def faults(session: nox.Session) -> None:
    """The randomized cluster fault run, long: ``nox -s faults -- [SECONDS] [SEED]``
    (default 600 s, a random seed; the seed is printed), then SECONDS/60 rounds of
    deletes, downtime and coordinator database loss. Both databases."""
    sync(session, "dev")
    seconds = session.posargs[0] if session.posargs else "600"
    seed = session.posargs[1] if len(session.posargs) > 1 else str(random.randrange(1 << 32))
    session.run(
        "pytest",
        "tests/test_cluster_faults.py",
        "-k",
        "randomized",
        "-s",
        "-p",
        "no:randomly",
        "-o",
        f"timeout={int(float(seconds)) + 600}",
        *session.posargs[2:],
        env={"SLIDESTORE_FAULTS_SECONDS": seconds, "SLIDESTORE_FAULTS_SEED": seed},
    )
    # Rounds of deletes, downtime and a lost coordinator database (a round is ~30 s).
    rounds = str(max(1, int(float(seconds)) // 60))
    session.run(
        "pytest",
        "tests/test_cluster_rebuild.py",
        "-k",
        "rounds",
        "-s",
        "-p",
        "no:randomly",
        "-o",
        f"timeout={int(rounds) * 120 + 300}",
        *session.posargs[2:],
        env={"SLIDESTORE_REBUILD_ROUNDS": rounds, "SLIDESTORE_FAULTS_SEED": seed},
    )


@nox.session(python=PYTHON)
def cluster_bench(session: nox.Session) -> None:
    """Cluster repair figures: detection, first repair byte, restore-R throughput vs an
    fsync'd copy, tile p99 during repair, placement p99 (see benchmarks/cluster/)."""
    sync(session, "dev")
    session.run("python", "benchmarks/cluster/run_cluster_bench.py", *session.posargs)


@nox.session(python=PYTHON)
def analysis_bench(session: nox.Session) -> None:
    """Analysis engine figures in one run: level-0 decode through the engine vs the decoder
    limit and openslide, 2 workers vs 1, locality on 3 nodes, a per-tile model over the
    60000x50000 slide (tiles/s, peak RSS per worker). See benchmarks/analysis/."""
    sync(session, "dev")
    session.run("python", "benchmarks/analysis/run_analysis_bench.py", *session.posargs)


@nox.session(python=PYTHON)
def tasks_bench(session: nox.Session) -> None:
    """The portal's task API against real processes: POST tissue -> succeeded (goal < 3 s)
    beside the library's own run, and 100 tasks at once (all succeed, none twice, p99 of
    GET /api/tasks/{id}). See benchmarks/tasks/."""
    sync(session, "dev")
    session.run("python", "benchmarks/tasks/run_tasks_bench.py", *session.posargs)


@nox.session(python=PYTHON)
def analysis_cluster(session: nox.Session) -> None:
    """The analysis tests across real processes (~2 min): a dask scheduler and workers on
    three storage nodes (locality, HTTP fallback), and kill -9 of a worker mid-run."""
    sync(session, "dev")
    session.run(
        "pytest",
        "tests/test_analysis_cluster.py",
        "-p",
        "no:randomly",
        *session.posargs,
        env={"SLIDESTORE_ANALYSIS_CLUSTER": "1"},
    )
