"""The viewer's ticket: a read token scoped to one blob and the replicas to use it on."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from labportal.cluster import Cluster
from labportal.domain.accounts.models import User
from labportal.domain.materials.schemas import ViewOut, slide_facts
from labportal.domain.materials.services import Access, MaterialService
from labportal.errors import Conflict, Unprocessable

THUMBNAIL_SIZES = range(64, 1025)
"""What ``thumbnail_url`` accepts (the node bounds it too): a list's 128 px to the page's 512."""


async def _stored(
    materials: MaterialService, cluster: Cluster, material_id: uuid.UUID, user: User
) -> tuple[Access, str, list[str]]:
    """The material (if the user may view it), its blob and its replicas' bases, readable first."""
    access = await materials.access(material_id, user)
    blob_id = access.material.blob_id
    view = await cluster.blob(blob_id) if blob_id else None
    if blob_id is None or view is None or not view.replicas:
        raise Conflict("this slide is not stored yet (or has no replica)", code="not_ready")
    await materials.remember_slide(access.material, cluster, view)
    bases = [r.url.rstrip("/") for r in sorted(view.replicas, key=lambda r: r.state != "alive")]
    return access, blob_id, bases


async def thumbnail_url(
    materials: MaterialService, cluster: Cluster, material_id: uuid.UUID, user: User, size: int
) -> str:
    """The node's thumbnail with the viewer's token: read-only, this blob, short-lived."""
    if size not in THUMBNAIL_SIZES:
        raise Unprocessable(
            f"size must be {THUMBNAIL_SIZES.start}..{THUMBNAIL_SIZES.stop - 1} pixels"
        )
    _, blob_id, bases = await _stored(materials, cluster, material_id, user)
    token = quote(cluster.view_token(blob_id, str(user.id)))
    return f"{bases[0]}/slides/{blob_id}/thumbnail?size={size}&token={token}"


async def view_for(
    materials: MaterialService, cluster: Cluster, material_id: uuid.UUID, user: User
) -> ViewOut:
    access, blob_id, bases = await _stored(materials, cluster, material_id, user)
    facts = slide_facts(access.material.slide)
    subject = str(user.id)
    token = cluster.view_token(blob_id, subject)
    q = quote(token)
    labels: dict[str, str] = {}
    if await materials.labels_allowed(access):
        label_token = quote(cluster.view_token(blob_id, subject, labels=True))
        for name in facts.associated_images if facts else []:
            if name in ("label", "macro"):
                labels[name] = f"{bases[0]}/slides/{blob_id}/{name}?token={label_token}"
    return ViewOut(
        blob_id=blob_id,
        token=token,
        expires_in=cluster.view_ttl,
        dzi_urls=[f"{b}/slides/{blob_id}.dzi" for b in bases],
        mpp=facts.mpp_x if facts else None,
        width=facts.width if facts else None,
        height=facts.height if facts else None,
        labels=labels,
        thumbnail=f"{bases[0]}/slides/{blob_id}/thumbnail?size=512&token={q}",
        magnification=facts.magnification if facts else None,
    )
