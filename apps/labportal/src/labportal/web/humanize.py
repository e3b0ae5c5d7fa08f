"""Words for people: sizes, times, statuses, workflow verbs and a case's history as sentences.

Registered as Jinja filters and globals in ``labportal.app``; nothing here touches the
database or the cluster.
"""

from __future__ import annotations

import datetime
from typing import Any

from markupsafe import Markup, escape

STATUS_WORDS = {
    "open": "open",
    "in_review": "in review",
    "signed_out": "signed out",
    # materials
    "uploading": "uploading",
    "replicating": "replicating",
    "ready": "ready",
    "archived": "archived",
    "unavailable": "unavailable",
    "lost": "lost",
    "failed": "failed",
}

VERBS = {  # (from, to) -> the button's words
    ("open", "in_review"): "Send for review",
    ("in_review", "open"): "Send back",
    ("in_review", "signed_out"): "Sign out",
    ("signed_out", "open"): "Reopen",
}

UNITS = ("bytes", "KB", "MB", "GB", "TB", "PB")


def filesize(size: int | None) -> str:
    """Decimal units, as disks and browsers count: 1938955 -> '1.9 MB'."""
    if size is None:
        return ""
    value, unit = float(size), 0
    while value >= 1000 and unit < len(UNITS) - 1:
        value, unit = value / 1000, unit + 1
    if unit == 0:
        return "1 byte" if size == 1 else f"{size} bytes"
    return f"{value:.1f} {UNITS[unit]}" if value < 100 else f"{value:.0f} {UNITS[unit]}"


def status_word(status: str | None) -> str:
    return STATUS_WORDS.get(status or "", (status or "").replace("_", " "))


def verb(current: str, target: str) -> str:
    return VERBS.get((current, target), f"Move to {status_word(target)}")


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def ago(moment: datetime.datetime, now: datetime.datetime | None = None) -> str:
    """'just now', '5 minutes ago', 'yesterday', '3 days ago', 'in 2 hours', then the date."""
    now = now or datetime.datetime.now(datetime.UTC)
    seconds = (_aware(now) - _aware(moment)).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    for limit, size, name in (
        (3600, 60, "minute"),
        (86400, 3600, "hour"),
        (86400 * 30, 86400, "day"),
    ):
        if seconds < limit:
            n = max(1, round(seconds / size))
            if name == "day" and n == 1:
                return "tomorrow" if future else "yesterday"
            amount = f"{n} {name}{'s' if n != 1 else ''}"
            return f"in {amount}" if future else f"{amount} ago"
    return _aware(moment).strftime("%-d %b %Y")


def exact(moment: datetime.datetime) -> str:
    return _aware(moment).astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(moment: datetime.datetime | None) -> Markup:
    """A ``<time>``: relative words, the exact time on hover (and for machines)."""
    if moment is None:
        return Markup("")
    iso = _aware(moment).isoformat()
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso, exact(moment), ago(moment)
    )


def _who(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("display_name") or "someone")
    return "nobody" if value is None else str(value)


def _quoted(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    text = str(value or "")
    return f"“{text[:80]}{'…' if len(text) > 80 else ''}”" if text else "nothing"


def _change(field: str, change: Any) -> str:
    if not isinstance(change, dict) or "to" not in change:
        return f"changed {field}"
    old, new = change.get("from"), change["to"]
    if field == "status":
        return f"changed status from {status_word(old)} to {status_word(new)}"
    if field == "assignee":
        return f"assigned the case to {_who(new)}" if new else "unassigned the case"
    if field == "tags":
        return f"changed tags from {_quoted(old)} to {_quoted(new)}"
    if field == "description":
        return "edited the description"
    return f"changed the {field} from {_quoted(old)} to {_quoted(new)}"


def event_sentence(action: str, changes: dict[str, Any], actor: str) -> str:
    """One history line, e.g. 'Demo User changed status from open to in review'."""
    changes = changes or {}
    if action == "created":
        text = f"{actor} opened the case {_quoted(changes.get('title'))}"
        if changes.get("assignee"):
            text += f", assigned to {_who(changes['assignee'])}"
        return text
    if action in ("updated", "status_changed"):
        parts = [_change(k, v) for k, v in changes.items() if k != "note"]
        text = f"{actor} {' and '.join(parts) or 'edited the case'}"
        if changes.get("note"):
            text += f" ({_quoted(changes['note'])})"
        return text
    simple = {
        "material_added": "attached the slide {name}",
        "material_deleted": "removed the slide {name}",
        "comment_added": "commented",
        "thread_resolved": "resolved a thread",
        "thread_reopened": "reopened a thread",
    }
    if action in simple:
        return f"{actor} " + simple[action].format(name=_quoted(changes.get("name")))
    return f"{actor} {action.replace('_', ' ')}"


def sentence(event: Any) -> Markup:
    """The sentence for a ``CaseEvent`` (escaped for the page)."""
    actor = event.actor.display_name if event.actor else "Someone"
    return escape(event_sentence(event.action, event.changes, actor))


FILTERS = {"filesize": filesize, "status_word": status_word, "when": when, "sentence": sentence}
GLOBALS = {"verb": verb}
