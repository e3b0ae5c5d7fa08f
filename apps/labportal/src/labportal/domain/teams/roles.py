"""Team roles, weakest first: viewers read, members work on cases, admins manage people,
the one owner can also hand out admin, transfer ownership and delete the team."""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "member", "admin", "owner"]
AssignableRole = Literal["viewer", "member", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "member", "admin", "owner")
RANK = {role: rank for rank, role in enumerate(ROLES)}


def at_least(role: str, minimum: str) -> bool:
    return RANK[role] >= RANK[minimum]


def may_assign(actor: str, role: str) -> bool:
    """Admins hand out member/viewer; the owner also admin. Nobody assigns owner directly."""
    return role != "owner" and (actor == "owner" or RANK[role] < RANK[actor])


def may_manage(actor: str, target: str) -> bool:
    """Change the role of / remove someone: only people ranked strictly below you."""
    return at_least(actor, "admin") and RANK[target] < RANK[actor]
