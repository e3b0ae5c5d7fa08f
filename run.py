#!/usr/bin/env python3
"""Bootstrap and run slidestore's routine commands with nothing but Python >= 3.12 and pip.

    python3.12 run.py demo     # the whole system: coordinator, 3 nodes, portal with a demo account
    python3.12 run.py test     # the whole test suite
    python3.12 run.py nox -s lint types benchmarks   # any other nox session

The first run creates ``.tools/`` (a private venv holding uv and nox); nox then builds
each session's environment from ``uv.lock``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
BIN = TOOLS / ("Scripts" if os.name == "nt" else "bin")
REQUIREMENTS = ["uv>=0.9,<1", "nox>=2025.2"]


def ensure_tools() -> None:
    marker = TOOLS / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True
    )
    marker.write_text(wanted)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 12):  # noqa: UP036  (run.py may be started by an older Python)
        print("slidestore needs Python >= 3.12 (run this script with python3.12)", file=sys.stderr)
        return 2
    command, *rest = argv or ["help"]
    if command not in {"demo", "test", "nox"}:
        print(__doc__)
        return 0 if command == "help" else 2
    ensure_tools()
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SLIDESTORE_PYTHON"] = sys.executable
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    nox = [str(BIN / "nox"), "--noxfile", str(ROOT / "noxfile.py")]
    if command == "demo":
        args = [*nox, "-s", "demo", "--", *rest]
    elif command == "test":
        args = [*nox, "-s", "tests", "--", *rest]
    else:
        args = [*nox, *rest]
    return subprocess.run(args, env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
