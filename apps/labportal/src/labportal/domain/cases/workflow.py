"""The case status workflow: open → in_review → signed_out, sent back or reopened to open.

Members move cases between open and in review; signing out (and reopening a signed-out
case) is for team admins and the owner. A signed-out case is read-only until reopened.
"""

from __future__ import annotations

from typing import Literal

Status = Literal["open", "in_review", "signed_out"]
STATUSES: tuple[Status, ...] = ("open", "in_review", "signed_out")
TRANSITIONS: dict[str, tuple[Status, ...]] = {
    "open": ("in_review",),
    "in_review": ("open", "signed_out"),
    "signed_out": ("open",),
}
ADMIN_TRANSITIONS = {("in_review", "signed_out"), ("signed_out", "open")}


LOCKED: frozenset[str] = frozenset({"signed_out"})
"""Statuses in which nothing under the case changes; the only way out is a transition."""


def allowed(current: str) -> tuple[Status, ...]:
    return TRANSITIONS[current]


def needs_admin(current: str, target: str) -> bool:
    return (current, target) in ADMIN_TRANSITIONS
