"""Every mapped model, imported so that ``Base.metadata`` is complete (alembic, tests)."""

from labportal.db.base import Base
from labportal.domain.accounts.models import ApiToken, User, UserSession
from labportal.domain.cases.models import Case, CaseEvent, CaseTag
from labportal.domain.discussion.models import Comment
from labportal.domain.teams.models import Invitation, Membership, Team

__all__ = [
    "ApiToken",
    "Base",
    "Case",
    "CaseEvent",
    "CaseTag",
    "Comment",
    "Invitation",
    "Membership",
    "Team",
    "User",
    "UserSession",
]
