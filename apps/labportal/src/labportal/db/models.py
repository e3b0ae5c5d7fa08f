"""Every mapped model, imported so that ``Base.metadata`` is complete (alembic, tests)."""

from labportal.db.base import Base
from labportal.domain.accounts.models import ApiToken, User, UserSession
from labportal.domain.annotations.models import Annotation
from labportal.domain.cases.models import Case, CaseEvent, CaseTag
from labportal.domain.discussion.models import Comment
from labportal.domain.materials.models import Material
from labportal.domain.tasks.models import AnalysisTask, RegisteredModel, TaskFeature, TaskResult
from labportal.domain.teams.models import Invitation, Membership, Team

__all__ = [
    "AnalysisTask",
    "Annotation",
    "ApiToken",
    "Base",
    "Case",
    "CaseEvent",
    "CaseTag",
    "Comment",
    "Invitation",
    "Material",
    "Membership",
    "RegisteredModel",
    "TaskFeature",
    "TaskResult",
    "Team",
    "User",
    "UserSession",
]
