"""Field checks shared by the schemas: clear messages instead of regexes."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def line(value: str, name: str) -> str:
    """A single-line name or title: trimmed, not blank, no control characters."""
    value = value.strip()
    if not value:
        raise ValueError(f"{name} must not be blank")
    if _CONTROL.search(value):
        raise ValueError(f"{name} must not contain control characters")
    return value


def text(value: str, name: str) -> str:
    """Free text: newlines and tabs allowed, other control characters (NUL...) not."""
    if _CONTROL.search(value.replace("\n", "").replace("\r", "").replace("\t", "")):
        raise ValueError(f"{name} must not contain control characters")
    return value


def email(value: str, name: str = "email") -> str:
    value = value.strip().lower()
    if _CONTROL.search(value) or not _EMAIL.match(value):
        raise ValueError(f"{name} must be an e-mail address like name@example.org")
    return value


def password(value: str, name: str = "password") -> str:
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters")
    if len(value) < 10:
        raise ValueError(f"{name} must be at least 10 characters long")
    return value


def tags(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for raw in values:
        tag = line(raw, "tag").lower()
        if len(tag) > 50:
            raise ValueError("a tag must be at most 50 characters long")
        seen[tag] = None
    return list(seen)
