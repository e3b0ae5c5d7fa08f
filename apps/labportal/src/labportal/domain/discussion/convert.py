from __future__ import annotations

import msgspec

from labportal.domain.accounts.convert import user_ref
from labportal.domain.discussion.models import Comment
from labportal.domain.discussion.schemas import CommentOut, Region


def comment_out(comment: Comment) -> CommentOut:
    return CommentOut(
        id=comment.id,
        case_id=comment.case_id,
        parent_id=comment.parent_id,
        author=user_ref(comment.author),
        body=comment.body,
        resolved=comment.resolved,
        resolved_by=user_ref(comment.resolved_by),
        resolved_at=comment.resolved_at,
        created_at=comment.created_at,
        updated_at=comment.updated_at,
        material_id=comment.material_id,
        region=msgspec.convert(comment.region, Region) if comment.region else None,
    )
