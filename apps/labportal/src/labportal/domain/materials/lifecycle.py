"""A slide's life after it is read: the team's idle period on its blobs, restoring an
archived slide, and the space the archive saves the team.

The cluster decides when a blob is archived (nobody read it for its idle period); the
portal sets that period per team, on every blob the team's materials use, through the SDK.
A blob several teams share gets the period of whichever team set it last.
"""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.cluster import Cluster
from labportal.domain.accounts.models import User
from labportal.domain.cases.models import Case
from labportal.domain.materials.convert import material_out
from labportal.domain.materials.models import Material
from labportal.domain.materials.schemas import MaterialOut
from labportal.domain.materials.services import MaterialService
from labportal.domain.teams.models import Team
from labportal.errors import Conflict
from slidestore.cluster.wire import BlobStatus


class ArchiveSummary(msgspec.Struct):
    """The team page's line: its slides in the archive and what that saves."""

    archived: int = 0
    restoring: int = 0
    saved_bytes: int = 0
    """The copies the cluster no longer keeps of them, minus their archived objects."""
    archive_after_days: float | None = None


async def _team_blobs(session: AsyncSession, team_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(Material.blob_id)
        .join(Case, Case.id == Material.case_id)
        .where(Case.team_id == team_id, Material.blob_id.is_not(None))
        .distinct()
    )
    return [blob_id for blob_id in rows if blob_id]


async def apply_team_lifecycle(session: AsyncSession, cluster: Cluster, team: Team) -> int:
    """Give every blob of the team its idle period; how many blobs."""
    blob_ids = await _team_blobs(session, team.id)
    for blob_id in blob_ids:
        await cluster.set_lifecycle(blob_id, team.archive_after_days)
    return len(blob_ids)


async def archive_summary(session: AsyncSession, cluster: Cluster, team: Team) -> ArchiveSummary:
    summary = ArchiveSummary(archive_after_days=team.archive_after_days)
    if not cluster.configured:
        return summary
    for blob_id in await _team_blobs(session, team.id):
        view = await cluster.blob(blob_id)
        if view is None:
            continue
        if view.status == BlobStatus.ARCHIVED:
            summary.archived += 1
            summary.saved_bytes += view.size * view.target - (view.archive_bytes or view.size)
        elif view.status == BlobStatus.RESTORING:
            summary.restoring += 1
    return summary


async def restore_material(
    materials: MaterialService, cluster: Cluster, material_id: uuid.UUID, user: User
) -> MaterialOut:
    """A member brings an archived slide back (the cluster pulls R copies from the
    archive); the answer's ``replicas`` / ``target_replicas`` is the progress."""
    access = await materials.access(material_id, user, "member")
    blob_id = access.material.blob_id
    view = await cluster.blob(blob_id) if blob_id else None
    if blob_id is None or view is None or view.status != BlobStatus.ARCHIVED:
        if view is not None and view.status == BlobStatus.RESTORING:
            return material_out(access.material, view)
        raise Conflict("this slide is not in the archive", code="not_archived")
    return material_out(access.material, await cluster.restore(blob_id))


def archived_thumbnail(cluster: Cluster, material: Material, status: str, user: User) -> str | None:
    if material.blob_id is None or status not in ("archived", "restoring"):
        return None
    return cluster.archived_thumbnail_url(material.blob_id, str(user.id))
