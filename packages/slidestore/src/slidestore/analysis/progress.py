"""How a run shows its progress: Dask's own progress widget and a dashboard link in a
Jupyter kernel, a tqdm bar and the link on stderr in a terminal, nothing when asked not to.

The widget is ``distributed.diagnostics.progressbar.ProgressWidget`` (what
``distributed.progress`` shows in a notebook). ``distributed.progress(futures)`` itself
cannot follow a run: it watches a set of keys fixed when it starts, and the engine submits
tasks in a window as earlier ones finish (their sizes follow measured tile times), so
the widget is driven by the engine, counting tiles done of tiles planned.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

from distributed.utils import is_kernel

__all__ = ["NotebookProgress", "RunProgress", "TerminalProgress", "start_progress"]


class RunProgress(Protocol):
    def update(self, tiles: int) -> None:
        """``tiles`` more tiles are done."""
        ...

    def close(self, error: BaseException | None = None) -> None: ...


class NotebookProgress:
    """Dask's progress widget (ipywidgets) above a link to the Dask dashboard."""

    def __init__(self, total: int, label: str, scheduler: str, dashboard: str | None) -> None:
        from distributed.diagnostics import progressbar
        from IPython import display as ipython_display
        from ipywidgets import HTML, VBox

        dask_widgets: Any = progressbar  # untyped
        show: Any = ipython_display.display

        self.total, self.done = total, 0
        # No keys: the widget is drawn from here, not from a scheduler subscription.
        self.widget: Any = dask_widgets.ProgressWidget([], scheduler=scheduler, complete=True)
        self.title = HTML(f"<b>slidestore.analysis</b>: {label}, {total} tiles")
        parts: list[Any] = [self.title, self.widget.widget]
        self.link: Any = None
        if dashboard:
            self.link = HTML(f'<a href="{dashboard}" target="_blank">Dask dashboard</a>')
            parts.append(self.link)
        self.box = VBox(parts)
        self.widget._draw_bar(remaining=total, all=total)
        show(self.box)

    def update(self, tiles: int) -> None:
        self.done += tiles
        self.widget._draw_bar(remaining=self.total - self.done, all=self.total)

    def close(self, error: BaseException | None = None) -> None:
        remaining = self.total - self.done
        if error is not None:
            self.widget._draw_stop(remaining=remaining, status="error", exception=error)
        else:
            self.widget._draw_stop(remaining=remaining, status="finished")


class TerminalProgress:
    """A tqdm bar on stderr, after a line with the dashboard link."""

    def __init__(self, total: int, label: str, dashboard: str | None) -> None:
        from tqdm import tqdm

        if dashboard:
            print(f"slidestore.analysis: Dask dashboard at {dashboard}", file=sys.stderr)
        self.bar = tqdm(total=total, desc=label, unit="tile", file=sys.stderr)

    def update(self, tiles: int) -> None:
        self.bar.update(tiles)

    def close(self, error: BaseException | None = None) -> None:
        self.bar.close()


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class CallbackProgress:
    """A caller's ``report(done, planned)`` as the run's progress; an exception it raises
    (a cancelled task) stops the run, which cancels its futures."""

    def __init__(self, report: Callable[[int, int], None], total: int) -> None:
        self.report, self.total, self.done = report, total, 0
        report(0, total)

    def update(self, tiles: int) -> None:
        self.done += tiles
        self.report(self.done, self.total)

    def close(self, error: BaseException | None = None) -> None:
        pass


def start_progress(
    enabled: bool | Callable[[int, int], None],
    total: int,
    label: str,
    scheduler: str,
    dashboard: str | None,
) -> RunProgress | None:
    """The progress display for a run of ``total`` tiles (None when not ``enabled``; a
    callable gets ``(tiles done, tiles planned)`` instead of a display)."""
    if callable(enabled):
        return CallbackProgress(enabled, total)
    if not enabled:
        return None
    if is_kernel() and _widgets_available():  # type: ignore[no-untyped-call]
        return NotebookProgress(total, label, scheduler, dashboard)
    return TerminalProgress(total, label, dashboard)
