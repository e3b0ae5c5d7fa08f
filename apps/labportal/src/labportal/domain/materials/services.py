"""Materials: create (placement and a possession challenge), complete (the blob exists,
has the declared size and the client proved it holds the file), fail, read with the
cluster's view, delete (the portal's claim on the blob goes when no other material uses
it), viewer tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from msgspec import UNSET
from sqlalchemy import delete, func, select, update

from labportal.cluster import Cluster, ready_replicas
from labportal.db.base import utcnow
from labportal.domain.accounts.models import User
from labportal.domain.cases.models import Case
from labportal.domain.cases.services import CaseService, ensure_unlocked
from labportal.domain.fields.models import FieldValue
from labportal.domain.fields.services import FieldFilter, FieldService
from labportal.domain.materials.models import Material
from labportal.domain.materials.possession import Challenge, digest, matches, new_challenge
from labportal.domain.materials.schemas import MaterialCreateIn, MaterialUpdateIn
from labportal.domain.materials.search import SlideFilters, remember_facts
from labportal.domain.teams.models import Membership, Team
from labportal.domain.teams.roles import at_least
from labportal.domain.teams.services import TeamService
from labportal.errors import Conflict, Forbidden, NotFound, Problem, Unprocessable
from slidestore.cluster.wire import BlobStatus, BlobView, Placement


class NoChallenge(Conflict):
    code = "no_challenge"


class QuotaExceeded(Problem):
    status, code = 507, "quota_exceeded"


@dataclass
class Search:
    """A material list's filters: the team's fields and the scanner metadata."""

    fields: list[FieldFilter] = field(default_factory=list)
    slide: SlideFilters = field(default_factory=SlideFilters)


class MaterialRepository(SQLAlchemyAsyncRepository[Material]):
    model_type = Material


@dataclass
class Access:
    material: Material
    case: Case
    member: Membership

    @property
    def can_write(self) -> bool:
        return at_least(self.member.role, "member")


def status_of(material: Material, view: BlobView | None) -> str:
    if material.blob_id is None:
        return "failed" if material.error else "uploading"
    if view is not None and view.status == BlobStatus.ARCHIVED:
        return "archived"  # retention or disuse moved it to the archive; a member restores it
    if view is not None and view.status == BlobStatus.RESTORING:
        return "restoring"  # coming back from the archive: replicas / target is the progress
    if view is not None and view.status == BlobStatus.LOST:
        return "lost"  # every copy failed its checksums: only an archive can bring it back
    if view is None or view.status in (BlobStatus.DELETED, BlobStatus.UNAVAILABLE):
        return "unavailable"
    return "ready" if ready_replicas(view) >= view.target else "replicating"


class MaterialService(SQLAlchemyAsyncRepositoryService[Material, MaterialRepository]):
    repository_type = MaterialRepository

    @property
    def cases(self) -> CaseService:
        return CaseService(session=self.repository.session)

    async def access(self, material_id: uuid.UUID, user: User, minimum: str = "viewer") -> Access:
        """A material of a team you are not in does not exist for you (404)."""
        material = await self.repository.get_one_or_none(id=material_id)
        if material is None:
            raise NotFound("no such material")
        try:
            case, member = await self.cases.get_case(material.case_id, user)
        except NotFound:
            raise NotFound("no such material") from None
        if not at_least(member.role, minimum):
            raise Forbidden(f"this needs the {minimum} role in the team; you are {member.role}")
        return Access(material, case, member)

    async def labels_allowed(self, access: Access) -> bool:
        team = await self.repository.session.get_one(Team, access.case.team_id)
        return at_least(access.member.role, team.label_min_role or "admin")

    async def list_for_case(
        self, case_id: uuid.UUID, user: User, search: Search | None = None
    ) -> list[Material]:
        case, _ = await self.cases.get_case(case_id, user)
        where = [Material.case_id == case_id, *await self._search(case.team_id, search)]
        rows = await self.repository.session.scalars(
            select(Material).where(*where).order_by(Material.created_at, Material.id)
        )
        return list(rows.unique())

    async def list_for_team(
        self, team_id: uuid.UUID, user: User, search: Search, limit: int, offset: int
    ) -> tuple[list[Material], int]:
        """Every material of the team's cases that matches, newest first."""
        await TeamService(session=self.repository.session).membership(team_id, user)
        where = [Case.team_id == team_id, *await self._search(team_id, search)]
        db = self.repository.session
        base = select(Material).join(Case, Case.id == Material.case_id).where(*where)
        total = await db.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = await db.scalars(
            base.order_by(Material.created_at.desc(), Material.id).limit(limit).offset(offset)
        )
        return list(rows.unique()), total

    async def _search(self, team_id: uuid.UUID, search: Search | None) -> list[Any]:
        if search is None:
            return []
        fields = FieldService(self.repository.session)
        return [
            *search.slide.conditions(),
            *await fields.conditions(team_id, "material", Material.id, search.fields),
        ]

    async def update(self, material_id: uuid.UUID, user: User, data: MaterialUpdateIn) -> Material:
        """Rename, or change the team-defined fields (member; not under a signed-out case)."""
        access = await self.access(material_id, user, "member")
        ensure_unlocked(access.case, "changed")
        material = access.material
        changes: dict[str, Any] = {}
        if data.name is not UNSET and data.name != material.name:
            changes["name"] = {"from": material.name, "to": data.name}
            material.name = data.name
        if data.fields is not UNSET:
            fields = FieldService(self.repository.session)
            team_id = access.case.team_id
            values, version = await fields.check(team_id, "material", data.fields, material.fields)
            if values != material.fields or version != material.fields_version:
                changes["fields"] = {"from": material.fields, "to": values}
                material.fields, material.fields_version = values, version
                await fields.index(team_id, "material", material.id, values)
        if changes:
            material.updated_at = utcnow()
            await self.cases.record(
                access.case, user, "material_updated", {"material_id": str(material.id), **changes}
            )
            await self.repository.session.flush()
        return material

    async def stored_in_cases(self, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Material]]:
        """The stored slides of cases the caller already listed (a list page's thumbnails)."""
        found: dict[uuid.UUID, list[Material]] = {case_id: [] for case_id in case_ids}
        if not case_ids:
            return found
        rows = await self.repository.session.scalars(
            select(Material)
            .where(Material.case_id.in_(case_ids), Material.blob_id.is_not(None))
            .order_by(Material.created_at, Material.id)
        )
        for material in rows.unique():
            found[material.case_id].append(material)
        return found

    async def objectives(self, team_id: uuid.UUID) -> list[float]:
        """The objective powers the team's slides have (a search form's choices)."""
        rows = await self.repository.session.scalars(
            select(Material.objective_power)
            .join(Case, Case.id == Material.case_id)
            .where(Case.team_id == team_id, Material.objective_power.is_not(None))
            .distinct()
            .order_by(Material.objective_power)
        )
        return [float(v) for v in rows]

    async def team_usage(self, team_id: uuid.UUID) -> int:
        """Bytes of the team's materials, uploads in progress included, failed ones not."""
        used = await self.repository.session.scalar(
            select(func.coalesce(func.sum(Material.size), 0))
            .join(Case, Case.id == Material.case_id)
            .where(
                Case.team_id == team_id, (Material.blob_id.is_not(None)) | (Material.error == "")
            )
        )
        return int(used or 0)

    async def create(
        self,
        case_id: uuid.UUID,
        user: User,
        data: MaterialCreateIn,
        cluster: Cluster,
        quota_bytes: int = 0,
    ) -> tuple[Material, Placement]:
        case, _ = await self.cases.writable(case_id, user)
        if case.status == "signed_out":
            raise Conflict("a signed-out case cannot get new materials", code="locked")
        if quota_bytes:
            used = await self.team_usage(case.team_id)
            if used + data.size > quota_bytes:
                raise QuotaExceeded(
                    f"the team holds {used} of its {quota_bytes} bytes; "
                    f"this slide needs {data.size} more"
                )
        fields = FieldService(self.repository.session)
        values, version = await fields.check(case.team_id, "material", data.fields)
        placement = await cluster.place(data.size, data.sha256)
        # Even when the cluster has this content: a sha256 is no proof of holding the file.
        material = Material(
            case_id=case_id,
            name=data.name,
            size=data.size,
            sha256=data.sha256,
            blob_id=None,
            challenge=msgspec.to_builtins(new_challenge(data.size)),
            created_by_id=user.id,
            fields=values,
            fields_version=version,
        )
        material.created_by = user
        material = await self.repository.add(material)
        await fields.index(case.team_id, "material", material.id, values)
        await self.cases.record(
            case, user, "material_added", {"material_id": str(material.id), "name": data.name}
        )
        return material, placement

    async def complete(
        self, material_id: uuid.UUID, user: User, blob_id: str, proof: str, cluster: Cluster
    ) -> tuple[Material, BlobView]:
        """Link the material to ``blob_id`` once the client proved it holds the content.

        The one attempt the challenge allows is spent (and committed, whatever the answer)
        before the answer is checked, so nobody gets a second guess.
        """
        access = await self.access(material_id, user, "member")
        material = access.material
        if material.sha256 and material.sha256 != blob_id:
            raise Unprocessable(
                "the uploaded content does not match the declared sha256", code="sha256_mismatch"
            )
        if material.blob_id is not None:
            raise Conflict("this material's upload already completed", code="already_complete")
        view = await cluster.arrived(blob_id)
        if view is None or not view.replicas:
            raise Unprocessable(
                "the cluster holds no such blob: finish the upload first", code="not_uploaded"
            )
        if view.size != material.size:
            raise Unprocessable(
                f"the blob has {view.size} bytes, the material declared {material.size}",
                code="size_mismatch",
            )
        if material.challenge is None:
            raise NoChallenge("this material has no open challenge: attach the slide again")
        # Read before spending: a replica that does not answer (503) costs no attempt.
        ranges = msgspec.convert(material.challenge, Challenge).ranges
        chunks = await cluster.read_ranges(view, ranges)
        challenge = await self._spend_challenge(material)
        if not matches(digest(challenge, chunks), proof):
            material.error = "the proof of possession did not match the stored content"
            await self.repository.session.commit()
            raise Unprocessable(
                "the proof of possession does not match this blob: attach the slide again",
                code="proof_failed",
            )
        material.blob_id, material.error = blob_id, ""
        await self.repository.session.flush()
        team = await self.repository.session.get_one(Team, access.case.team_id)
        if team.archive_after_days is not None:  # the team's idle period (lifecycle.py)
            await cluster.set_lifecycle(blob_id, team.archive_after_days)
        return material, view

    async def _spend_challenge(self, material: Material) -> Challenge:
        """The material's open challenge, closed in the database by this one request."""
        raw = material.challenge
        spent = await self.repository.session.execute(
            update(Material)
            .where(Material.id == material.id, Material.challenge.is_not(None))
            .values(challenge=None)
            .execution_options(synchronize_session=False)
        )
        await self.repository.session.commit()
        if raw is None or not spent.rowcount:  # type: ignore[attr-defined]
            raise NoChallenge("this material has no open challenge: attach the slide again")
        material.challenge = None
        return msgspec.convert(raw, Challenge)

    async def fail(self, material_id: uuid.UUID, user: User, reason: str) -> Material:
        access = await self.access(material_id, user, "member")
        if access.material.blob_id is not None:
            raise Conflict("this material's upload already completed", code="already_complete")
        access.material.error = reason
        await self.repository.session.flush()
        return access.material

    async def remember_slide(self, material: Material, cluster: Cluster, view: BlobView) -> None:
        if material.slide is None and view.replicas:
            info = await cluster.slide_info(view)
            if info is not None:
                material.slide = info
                remember_facts(material, info)
                await self.repository.session.flush()

    async def _release(self, blob_id: str | None, cluster: Cluster, *excluding: uuid.UUID) -> None:
        """Delete the blob from the cluster when no material (but ``excluding``) uses it."""
        if not blob_id:
            return
        others = await self.repository.session.scalar(
            select(func.count())
            .select_from(Material)
            .where(
                (Material.blob_id == blob_id) | (Material.sha256 == blob_id),
                Material.id.not_in(excluding),
            )
        )
        if not others:
            await cluster.delete(blob_id)

    async def delete_case(self, case_id: uuid.UUID, user: User, cluster: Cluster) -> None:
        """Delete a case (admin) with its materials; their blobs go as in :meth:`delete`."""
        case, _ = await self.cases.get_case(case_id, user)
        rows = list(
            await self.repository.session.scalars(
                select(Material).where(Material.case_id == case.id)
            )
        )
        await self.cases.delete_case(case_id, user)  # checks the admin role
        ids = [m.id for m in rows]
        await self.repository.session.execute(
            delete(FieldValue).where(FieldValue.record_id.in_([case.id, *ids]))
        )
        for blob_id in dict.fromkeys(m.blob_id or m.sha256 for m in rows):
            await self._release(blob_id, cluster, *ids)

    async def delete_team(self, team_id: uuid.UUID, user: User, cluster: Cluster) -> None:
        """Delete a team (owner) with its cases and materials; their blobs go as in
        :meth:`delete_case`, each once. The cluster refusing or being down raises, so the
        request fails and the transaction (the team's deletion) is rolled back."""
        teams = TeamService(session=self.repository.session)
        await teams.require(team_id, user, "owner")
        rows = list(
            await self.repository.session.scalars(
                select(Material)
                .join(Case, Case.id == Material.case_id)
                .where(Case.team_id == team_id)
            )
        )
        ids = [m.id for m in rows]
        blob_ids = list(dict.fromkeys(m.blob_id or m.sha256 for m in rows))
        await teams.delete_team(team_id, user)  # cascades to its cases and materials
        for blob_id in blob_ids:
            await self._release(blob_id, cluster, *ids)

    async def delete(self, material_id: uuid.UUID, user: User, cluster: Cluster) -> None:
        access = await self.access(material_id, user, "member")
        ensure_unlocked(access.case, "deleted")  # before the blob can leave the cluster
        material = access.material
        await self._release(material.blob_id or material.sha256, cluster, material.id)
        await self.cases.record(
            access.case,
            user,
            "material_deleted",
            {"material_id": str(material.id), "name": material.name},
        )
        await self.repository.session.execute(
            delete(FieldValue).where(FieldValue.record_id == material.id)
        )
        await self.repository.delete(material.id)
