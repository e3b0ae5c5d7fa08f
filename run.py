#!/usr/bin/env python3
"""Bootstrap and run slidestore's routine commands with nothing but Python >= 3.12 and pip.

    python3.12 run.py demo     # the whole system: coordinator, 3 nodes, portal with a demo account
    python3.12 run.py test     # the whole test suite
    python3.12 run.py nox -s lint types benchmarks   # any other nox session

The first run creates ``.tools/`` (a private venv holding uv and nox); nox then builds
each session's environment from ``uv.lock``.
"""

from __future__ import annotations

import enum
import os
import shutil
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


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_HINT = (
    "the portal's browser test needs Debian's chromium at /usr/bin/chromium: "
    "run `sudo apt-get install -y chromium` (as root: `apt-get install -y chromium`), then again"
)


class ChromiumAction(enum.Enum):
    NOTHING = "nothing"
    INSTALL_AS_ROOT = "install as root"
    INSTALL_WITH_SUDO = "install with sudo"
    STOP = "stop"


def chromium_action(*, present: bool, root: bool, passwordless_sudo: bool) -> ChromiumAction:
    """What the test command does about the browser test's chromium."""
    if present:
        return ChromiumAction.NOTHING
    if root:
        return ChromiumAction.INSTALL_AS_ROOT
    if passwordless_sudo:
        return ChromiumAction.INSTALL_WITH_SUDO
    return ChromiumAction.STOP


def _passwordless_sudo() -> bool:
    if shutil.which("sudo") is None:
        return False
    probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def ensure_chromium(path: Path = CHROMIUM) -> str | None:
    """Install Debian's chromium when it is missing and this user can (root or passwordless
    sudo); else the one line saying what to install (the tests must not start then)."""
    present = path.exists()
    root = not present and hasattr(os, "geteuid") and os.geteuid() == 0
    sudo = not present and not root and _passwordless_sudo()
    action = chromium_action(present=present, root=root, passwordless_sudo=sudo)
    if action is ChromiumAction.NOTHING:
        return None
    if action is ChromiumAction.STOP:
        return CHROMIUM_HINT
    prefix = ["sudo", "-n"] if action is ChromiumAction.INSTALL_WITH_SUDO else []
    install = [*prefix, "apt-get", "install", "-y", "chromium"]
    print(f"installing Debian's chromium for the browser test: {' '.join(install)}")
    # A stale package index makes the install fail; refresh it once and retry.
    if subprocess.run(install, check=False).returncode != 0:
        subprocess.run([*prefix, "apt-get", "update"], check=False)
        subprocess.run(install, check=False)
    return None if path.exists() else f"installing chromium failed; {CHROMIUM_HINT}"


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
