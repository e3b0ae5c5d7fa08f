from __future__ import annotations

from labportal.domain.accounts.convert import user_ref
from labportal.domain.cases import workflow
from labportal.domain.cases.models import Case, CaseEvent
from labportal.domain.cases.schemas import CaseEventOut, CaseOut


def case_out(case: Case) -> CaseOut:
    return CaseOut(
        id=case.id,
        team_id=case.team_id,
        title=case.title,
        description=case.description,
        tags=case.tags,
        status=case.status,  # type: ignore[arg-type]
        allowed_transitions=list(workflow.allowed(case.status)),
        assignee=user_ref(case.assignee),
        created_by=user_ref(case.created_by),
        created_at=case.created_at,
        updated_at=case.updated_at,
        fields=case.fields or {},
        fields_version=case.fields_version,
    )


def event_out(event: CaseEvent) -> CaseEventOut:
    return CaseEventOut(
        id=event.id,
        action=event.action,
        actor=user_ref(event.actor),
        changes=event.changes,
        created_at=event.created_at,
    )
