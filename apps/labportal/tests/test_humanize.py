"""Words for people: sizes, relative times, workflow verbs and history sentences."""

from __future__ import annotations

import datetime

import pytest

from labportal.domain.cases import workflow
from labportal.web.humanize import ago, event_sentence, filesize, verb, when

NOW = datetime.datetime(2026, 12, 3, 16, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (999, "999 bytes"),
        (1000, "1.0 KB"),
        (1_938_955, "1.9 MB"),
        (123_456_789, "123 MB"),
        (1 << 40, "1.1 TB"),
    ],
)
def test_sizes_in_decimal_units(size: int, text: str) -> None:
    assert filesize(size) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (datetime.timedelta(seconds=10), "just now"),
        (datetime.timedelta(minutes=5), "5 minutes ago"),
        (datetime.timedelta(minutes=1), "1 minute ago"),
        (datetime.timedelta(hours=3), "3 hours ago"),
        (datetime.timedelta(days=1), "yesterday"),
        (datetime.timedelta(days=4), "4 days ago"),
        (-datetime.timedelta(days=6), "in 6 days"),
        (datetime.timedelta(days=400), "29 Oct 2025"),
    ],
)
def test_relative_times(delta: datetime.timedelta, text: str) -> None:
    assert ago(NOW - delta, now=NOW) == text


def test_the_exact_time_is_on_hover() -> None:
    naive = datetime.datetime(2026, 1, 2, 3, 4, 5)  # SQLite hands back naive UTC
    html = str(when(naive))
    assert (
        'title="2026-01-02 03:04:05 UTC"' in html and 'datetime="2026-01-02T03:04:05+00:00"' in html
    )


def test_every_transition_has_words() -> None:
    words = {(a, b): verb(a, b) for a in workflow.STATUSES for b in workflow.allowed(a)}
    assert words[("open", "in_review")] == "Send for review"
    assert words[("in_review", "signed_out")] == "Sign out"
    assert not [w for w in words.values() if "_" in w or w.startswith("Move to")], words


@pytest.mark.parametrize(
    ("action", "changes", "text"),
    [
        (
            "status_changed",
            {"status": {"from": "open", "to": "in_review"}},
            "Demo User changed status from open to in review",
        ),
        (
            "status_changed",
            {"status": {"from": "in_review", "to": "signed_out"}, "note": "ok"},
            "Demo User changed status from in review to signed out (“ok”)",
        ),
        (
            "created",
            {"title": "Biopsy", "status": "open", "tags": ["demo"]},
            "Demo User opened the case “Biopsy”",
        ),
        (
            "updated",
            {
                "title": {"from": "A", "to": "B"},
                "assignee": {"from": None, "to": {"id": "x", "display_name": "Bob"}},
            },
            "Demo User changed the title from “A” to “B” and assigned the case to Bob",
        ),
        (
            "updated",
            {"tags": {"from": [], "to": ["x", "y"]}},
            "Demo User changed tags from none to x, y",
        ),
        ("material_added", {"name": "a.svs"}, "Demo User attached the slide “a.svs”"),
        ("thread_resolved", {"comment_id": "1"}, "Demo User resolved a thread"),
        ("something_new", {}, "Demo User something new"),
    ],
)
def test_history_as_sentences(action: str, changes: dict[str, object], text: str) -> None:
    assert event_sentence(action, changes, "Demo User") == text
