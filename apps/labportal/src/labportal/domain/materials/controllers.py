"""/api/cases/{case_id}/materials and /api/materials/{material_id}: slides of a case."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect
from litestar.status_codes import HTTP_200_OK, HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncSession

from labportal.cluster import Cluster
from labportal.domain.cases.services import ensure_unlocked
from labportal.domain.fields.services import FieldFilter, provide_field_filters
from labportal.domain.materials.convert import material_detail, material_out
from labportal.domain.materials.export import Region, download_url, export_region
from labportal.domain.materials.lifecycle import archived_thumbnail, restore_material
from labportal.domain.materials.models import Material
from labportal.domain.materials.schemas import (
    ChallengeOut,
    MaterialCompleteIn,
    MaterialCreateIn,
    MaterialDetailOut,
    MaterialFailedIn,
    MaterialOut,
    MaterialPage,
    MaterialUpdateIn,
    UploadOut,
    ViewOut,
)
from labportal.domain.materials.search import SlideFilters, provide_slide_filters
from labportal.domain.materials.services import MaterialService, Search
from labportal.domain.materials.viewing import thumbnail_url, view_for
from labportal.security.principal import Principal
from labportal.settings import Settings
from slidestore.cluster.wire import BlobView

READ, WRITE = {"scope": "cases:read"}, {"scope": "cases:write"}


def provide_materials(db_session: NamedDependency[AsyncSession]) -> MaterialService:
    return MaterialService(session=db_session)


def provide_cluster(state: State) -> Cluster:
    return state.cluster  # type: ignore[no-any-return]


SEARCH = {
    "field_filters": Provide(provide_field_filters, sync_to_thread=False),
    "slide_filters": Provide(provide_slide_filters, sync_to_thread=False),
}
FIELD_FILTERS_DOC = (
    "Filters by the team's own fields: `field.<name>=<value>` (equal), `field.<name>.min=` / "
    "`field.<name>.max=` (ranges of int, number and date fields); and by the scanner metadata "
    "the cluster normalised at ingest (scanner, objective, mpp range, scan date range)."
)
DEPENDENCIES = {
    "materials": Provide(provide_materials, sync_to_thread=False),
    "cluster": Provide(provide_cluster, sync_to_thread=False),
}


def _to_replica(url: str) -> Redirect:
    """A redirect to a replica's URL with a token in it: never cached."""
    return Redirect(url, status_code=HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"})


async def _view(cluster: Cluster, material: Material) -> BlobView | None:
    return await cluster.blob(material.blob_id) if material.blob_id else None


async def _unlocked(
    materials: MaterialService, material_id: uuid.UUID, principal: Principal
) -> None:
    """Finishing an upload begun before sign-out would still change the signed case."""
    access = await materials.access(material_id, principal.user, "member")
    ensure_unlocked(access.case, "changed")


class CaseMaterialsController(Controller):
    path = "/api/cases/{case_id:uuid}/materials"
    tags = ["materials"]
    dependencies = DEPENDENCIES

    @get(
        "/",
        opt=READ,
        summary="A case's slides with their storage status, filtered",
        description=FIELD_FILTERS_DOC,
        dependencies=SEARCH,
    )
    async def list_materials(
        self,
        case_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
        field_filters: NamedDependency[list[FieldFilter]],
        slide_filters: NamedDependency[SlideFilters],
    ) -> list[MaterialOut]:
        search = Search(field_filters, slide_filters)
        rows = await materials.list_for_case(case_id, principal.user, search)
        return [material_out(m, await _view(cluster, m)) for m in rows]

    @post(
        "/",
        opt=WRITE,
        summary="Start attaching a slide (member): where to upload it, with a write-only token",
    )
    async def create_material(
        self,
        case_id: FromPath[uuid.UUID],
        data: JSONBody[MaterialCreateIn],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
        settings: NamedDependency[Settings],
    ) -> UploadOut:
        material, placement = await materials.create(
            case_id, principal.user, data, cluster, settings.team_quota_bytes
        )
        exists = placement.exists
        view = await _view(cluster, material) if exists else None
        return UploadOut(
            material=material_out(material, view),
            exists=exists,
            upload_url=None if exists else placement.upload_url,
            token=None if exists else placement.token,
            challenge=msgspec.convert(material.challenge, ChallengeOut),
        )


class TeamMaterialsController(Controller):
    path = "/api/teams/{team_id:uuid}/materials"
    tags = ["materials"]
    dependencies = DEPENDENCIES

    @get(
        "/",
        opt=READ,
        summary="Search a team's slides by their fields and scanner metadata (newest first)",
        description=FIELD_FILTERS_DOC,
        dependencies=SEARCH,
    )
    async def search(
        self,
        team_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
        field_filters: NamedDependency[list[FieldFilter]],
        slide_filters: NamedDependency[SlideFilters],
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> MaterialPage:
        search = Search(field_filters, slide_filters)
        rows, total = await materials.list_for_team(team_id, principal.user, search, limit, offset)
        items = [material_out(m, await _view(cluster, m)) for m in rows]
        return MaterialPage(items=items, total=total, limit=limit, offset=offset)


class MaterialController(Controller):
    path = "/api/materials/{material_id:uuid}"
    tags = ["materials"]
    dependencies = DEPENDENCIES

    @get("/", opt=READ, summary="One slide: metadata, replica health, what you may see")
    async def get_material(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> MaterialDetailOut:
        access = await materials.access(material_id, principal.user)
        view = await _view(cluster, access.material)
        if view is not None:
            await materials.remember_slide(access.material, cluster, view)
        detail = material_detail(access.material, view, await materials.labels_allowed(access))
        detail.archived_thumbnail = archived_thumbnail(
            cluster, access.material, detail.status, principal.user
        )
        return detail

    @post(
        "/restore",
        opt=WRITE,
        status_code=HTTP_200_OK,
        summary="Bring an archived slide back (member); poll the slide for the progress",
    )
    async def restore(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> MaterialOut:
        return await restore_material(materials, cluster, material_id, principal.user)

    @patch("/", opt=WRITE, summary="Rename a slide or change its fields (member)")
    async def update_material(
        self,
        material_id: FromPath[uuid.UUID],
        data: JSONBody[MaterialUpdateIn],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> MaterialOut:
        material = await materials.update(material_id, principal.user, data)
        return material_out(material, await _view(cluster, material))

    @post(
        "/complete",
        opt=WRITE,
        status_code=HTTP_200_OK,
        summary="The upload finished (or the content was there): proof of possession, then linked",
    )
    async def complete(
        self,
        material_id: FromPath[uuid.UUID],
        data: JSONBody[MaterialCompleteIn],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> MaterialOut:
        await _unlocked(materials, material_id, principal)
        material, view = await materials.complete(
            material_id, principal.user, data.blob_id, data.proof, cluster
        )
        await materials.remember_slide(material, cluster, view)
        return material_out(material, view)

    @post(
        "/failed",
        opt=WRITE,
        status_code=HTTP_200_OK,
        summary="The upload failed: keep the node's reason to show",
    )
    async def failed(
        self,
        material_id: FromPath[uuid.UUID],
        data: JSONBody[MaterialFailedIn],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
    ) -> MaterialOut:
        await _unlocked(materials, material_id, principal)
        return material_out(await materials.fail(material_id, principal.user, data.reason), None)

    @delete("/", opt=WRITE, summary="Detach a slide (member); unused blobs leave the cluster")
    async def delete_material(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> None:
        await materials.delete(material_id, principal.user, cluster)

    @post(
        "/view",
        opt=READ,
        status_code=HTTP_200_OK,
        summary="A short-lived read token and the replicas' DeepZoom URLs for the viewer",
    )
    async def view(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> ViewOut:
        return await view_for(materials, cluster, material_id, principal.user)

    @get(
        "/thumbnail",
        opt=READ,
        summary="The slide's thumbnail: a redirect to a replica with the viewer's read token "
        "(this blob only, short-lived); size in pixels, 64..1024",
    )
    async def thumbnail(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
        size: FromQuery[int] = 256,
    ) -> Redirect:
        return _to_replica(
            await thumbnail_url(materials, cluster, material_id, principal.user, size)
        )

    @get(
        "/download",
        opt=READ,
        summary="The original file: a redirect to a replica with a one-minute download token "
        "(roles that may see labels)",
    )
    async def download(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
    ) -> Redirect:
        return _to_replica(await download_url(materials, cluster, material_id, principal.user))

    @get(
        "/export",
        opt=READ,
        summary="A region as PNG or TIFF at a pyramid level (anyone who may view; bounded size)",
    )
    async def export(
        self,
        material_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        materials: NamedDependency[MaterialService],
        cluster: NamedDependency[Cluster],
        # Optional here and required below: a caller without credentials hears 401, not
        # which parameters a route takes.
        x: FromQuery[int | None] = None,
        y: FromQuery[int | None] = None,
        width: FromQuery[int | None] = None,
        height: FromQuery[int | None] = None,
        level: FromQuery[int] = 0,
        format: FromQuery[str] = "png",
    ) -> Response[bytes]:
        region = Region.required(x=x, y=y, width=width, height=height, level=level, format=format)
        body, media_type, filename = await export_region(
            materials, cluster, material_id, principal.user, region
        )
        return Response(
            body,
            media_type=media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "private, no-store",
            },
        )
