"""Every routine command: ``python3.12 run.py nox -s <session>`` (or plain ``nox``)."""

from __future__ import annotations

import os

import nox

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


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole default test suite (library, server, portal, cross-package)."""
    sync(session, "dev")
    session.run(
        "pytest",
        "packages/slidestore/tests",
        "packages/slidestore-server/tests",
        "apps/labportal/tests",
        "tests",
        *session.posargs,
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
    """Start the demo: a DeepZoom viewer on the sample slide."""
    sync(session, "dev")
    session.run("python", "-m", "slidestore_server.demo", *session.posargs)


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
