"""run.py's chromium set-up for the browser test: the decision, and the real check here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bootstrap():
    spec = importlib.util.spec_from_file_location("run_bootstrap", ROOT / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


run = _bootstrap()
A = run.ChromiumAction


@pytest.mark.parametrize(
    ("present", "root", "sudo", "action"),
    [
        (True, True, True, A.NOTHING),
        (True, False, False, A.NOTHING),
        (False, True, False, A.INSTALL_AS_ROOT),
        (False, True, True, A.INSTALL_AS_ROOT),
        (False, False, True, A.INSTALL_WITH_SUDO),
        (False, False, False, A.STOP),
    ],
)
def test_chromium_decision(present: bool, root: bool, sudo: bool, action: object) -> None:
    assert run.chromium_action(present=present, root=root, passwordless_sudo=sudo) is action


def test_present_chromium_is_left_alone(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.write_bytes(b"")
    before = browser.stat().st_mtime_ns
    assert run.ensure_chromium(browser) is None
    assert browser.stat().st_mtime_ns == before


def test_this_machine_has_chromium_and_nothing_reinstalls_it() -> None:
    before = run.CHROMIUM.stat().st_mtime_ns
    assert run.ensure_chromium() is None
    assert run.CHROMIUM.stat().st_mtime_ns == before


def test_the_stop_line_names_the_package() -> None:
    assert "apt-get install -y chromium" in run.CHROMIUM_HINT
    assert "\n" not in run.CHROMIUM_HINT
