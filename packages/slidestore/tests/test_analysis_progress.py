"""What a run shows while it runs: Dask's progress widget and the dashboard link in a
Jupyter kernel, a tqdm bar and the link in a terminal, nothing with ``progress=False``.

The Jupyter kernel is faked for the detection only (``get_ipython()`` returning a shell
with a kernel, as ``distributed.utils.is_kernel`` checks); the widgets are Dask's and
ipywidgets' own, captured where ``IPython.display.display`` would send them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import IPython
import IPython.display
import pytest
from ipywidgets import HTML

from slidestore import analysis
from slidestore.analysis.errors import TileFailed
from slidestore.analysis.progress import NotebookProgress, TerminalProgress, start_progress
from slidestore.analysis.testing import STATS
from slidestore.testing import sample_slide_path

pytestmark = pytest.mark.timeout(180)


class FakeKernelShell:
    kernel = object()


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """In a Jupyter kernel: returns what gets displayed."""
    shown: list[Any] = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeKernelShell())
    monkeypatch.setattr(IPython.display, "display", lambda obj, **_: shown.append(obj))
    return shown


@pytest.fixture(scope="module")
def small() -> Path:
    return sample_slide_path()


def test_the_display_follows_where_the_run_is(kernel: list[Any]) -> None:
    shown = start_progress(True, 10, "m", "tcp://127.0.0.1:8786", "http://127.0.0.1:8787/status")
    assert isinstance(shown, NotebookProgress) and kernel == [shown.box]
    assert start_progress(False, 10, "m", "tcp://127.0.0.1:8786", None) is None


def test_outside_a_kernel_a_text_bar(capfd: pytest.CaptureFixture[str]) -> None:
    shown = start_progress(True, 4, "m", "tcp://127.0.0.1:8786", "http://127.0.0.1:8787/status")
    assert isinstance(shown, TerminalProgress)
    shown.update(4)
    shown.close()
    err = capfd.readouterr().err
    assert "Dask dashboard at http://127.0.0.1:8787/status" in err
    assert "4/4" in err


def _dask_widget(box: Any) -> tuple[Any, Any, Any]:
    """(elapsed/status HTML, bar text HTML, FloatProgress) of Dask's ProgressWidget."""
    elapsed, row = box.children[1].children
    text, bar = row.children
    return elapsed, text, bar


def test_in_a_kernel_dask_progress_and_the_dashboard_link(
    kernel: list[Any], small: Path, analysis_client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = analysis.run(STATS, str(small), client=analysis_client, progress=True)
    tiles = result.provenance["tiles"]["done"]
    [box] = kernel
    title, _, link = box.children
    assert f"{tiles} tiles" in title.value
    assert isinstance(link, HTML) and analysis_client.dashboard_link in link.value
    elapsed, text, bar = _dask_widget(box)
    assert bar.value == 1.0 and bar.bar_style == "success"
    assert f"{tiles} / {tiles}" in text.value and "Finished" in elapsed.value
    assert "tile-stats" not in capfd.readouterr().err  # no text bar besides the widget


def test_in_a_kernel_a_failed_run_turns_the_bar_red(
    kernel: list[Any], small: Path, analysis_client: Any
) -> None:
    with pytest.raises(TileFailed):
        analysis.run(STATS, str(small), {"fail_on": 3}, client=analysis_client, progress=True)
    elapsed, _, bar = _dask_widget(kernel[0])
    assert bar.bar_style == "danger" and "Exception" in elapsed.value
    assert bar.value < 1.0


def test_in_a_terminal_a_tqdm_bar_and_the_link(
    small: Path, analysis_client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = analysis.run(STATS, str(small), client=analysis_client, progress=True)
    tiles = result.provenance["tiles"]["done"]
    captured = capfd.readouterr()
    assert f"Dask dashboard at {analysis_client.dashboard_link}" in captured.err
    assert "tile-stats: 100%" in captured.err and f"{tiles}/{tiles}" in captured.err


def test_progress_false_shows_nothing(
    small: Path, analysis_client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    analysis.run(STATS, str(small), client=analysis_client, progress=False)
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "dashboard" not in captured.err and "tile-stats" not in captured.err
