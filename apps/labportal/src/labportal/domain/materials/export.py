"""Getting data out: the original file (``download``) and a region of the slide (export).

Who may have the raw file is who may see the label: the file holds the label and macro
pictures, so the ``download`` capability goes exactly where ``labels`` does (the team's
``label_min_role``). The portal hands such a user a redirect to a replica's
``/blobs/{id}`` with a ``download`` token for that one blob that lives a minute; nothing
passes through the portal.

A region export is a read: anyone who may view the slide may export what the viewer shows,
at a chosen pyramid level, as PNG or TIFF, up to :data:`MAX_EXPORT_SIDE` pixels a side
(bigger asks are a 400 before anything renders). The node renders it (IIIF, PNG, within its
render budget); TIFF is re-encoded here from that bounded PNG.
"""

from __future__ import annotations

import io
import math
import re
import uuid
from dataclasses import dataclass
from typing import Final

from labportal.cluster import Cluster
from labportal.domain.accounts.models import User
from labportal.domain.materials.services import MaterialService
from labportal.errors import Conflict, Forbidden, Problem
from slidestore import tokens
from slidestore.cluster.wire import BlobView
from slidestore.tokens import Operation

DOWNLOAD_TTL: Final = 60
MAX_EXPORT_SIDE: Final = 4096
MAX_LEVEL: Final = 20
FORMATS: Final = {"png": "image/png", "tiff": "image/tiff"}


class ExportTooLarge(Problem):
    status, code = 400, "region_too_large"


class BadExport(Problem):
    status, code = 400, "invalid_region"


@dataclass(frozen=True, slots=True)
class Region:
    x: int
    y: int
    width: int
    height: int
    level: int
    """The output is the region downsampled by ``2**level``."""
    format: str

    @classmethod
    def required(
        cls,
        *,
        x: int | None,
        y: int | None,
        width: int | None,
        height: int | None,
        level: int,
        format: str,
    ) -> Region:
        if x is None or y is None or width is None or height is None:
            raise BadExport("x, y, width and height are required (level-0 pixels)")
        return cls(x=x, y=y, width=width, height=height, level=level, format=format)

    @property
    def output_size(self) -> tuple[int, int]:
        scale = 2**self.level
        return math.ceil(self.width / scale), math.ceil(self.height / scale)

    def check(self, slide_size: tuple[int, int] | None) -> None:
        if self.format not in FORMATS:
            raise BadExport(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if not 0 <= self.level <= MAX_LEVEL:
            raise BadExport(f"level must be 0..{MAX_LEVEL}")
        if self.x < 0 or self.y < 0 or self.width < 1 or self.height < 1:
            raise BadExport("x, y must be >= 0 and width, height >= 1 (level-0 pixels)")
        if slide_size is not None:
            width, height = slide_size
            if self.x >= width or self.y >= height:
                raise BadExport(f"the region starts outside the slide ({width}x{height})")
        out_w, out_h = self.output_size
        if max(out_w, out_h) > MAX_EXPORT_SIDE:
            raise ExportTooLarge(
                f"the export would be {out_w}x{out_h} pixels; at most {MAX_EXPORT_SIDE} a "
                "side: choose a smaller region or a coarser level",
                max_side=MAX_EXPORT_SIDE,
            )


def _stored(view: BlobView | None) -> BlobView:
    if view is None or not view.replicas:
        raise Conflict("this slide is not stored yet (or has no replica)", code="not_ready")
    return view


def _replicas(view: BlobView | None) -> list[str]:
    ordered = sorted(_stored(view).replicas, key=lambda r: r.state != "alive")
    return [r.url.rstrip("/") for r in ordered]


async def download_url(
    materials: MaterialService, cluster: Cluster, material_id: uuid.UUID, user: User
) -> str:
    access = await materials.access(material_id, user)
    if not await materials.labels_allowed(access):
        raise Forbidden(
            "downloading the original file needs the role that may see labels in this team",
            code="download_not_allowed",
        )
    blob_id = access.material.blob_id
    view = await cluster.blob(blob_id) if blob_id else None
    base = _replicas(view)[0]
    token = tokens.mint(
        cluster.secret,
        ops={Operation.DOWNLOAD},
        blob=blob_id,
        ttl=DOWNLOAD_TTL,
        subject=str(user.id),
    )
    return f"{base}/blobs/{blob_id}?token={token}"


async def export_region(
    materials: MaterialService,
    cluster: Cluster,
    material_id: uuid.UUID,
    user: User,
    region: Region,
) -> tuple[bytes, str, str]:
    """(image bytes, media type, file name)."""
    access = await materials.access(material_id, user)
    slide = access.material.slide or {}
    meta = slide.get("metadata") or {}
    size = (meta["width"], meta["height"]) if meta.get("width") and meta.get("height") else None
    region.check(size)
    blob_id = access.material.blob_id
    view = await cluster.blob(blob_id) if blob_id else None
    out_w, out_h = region.output_size
    png = await cluster.region_image(
        _stored(view),
        (region.x, region.y, region.width, region.height),
        (out_w, out_h),
    )
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", access.material.name.rsplit(".", 1)[0])[:100]
    stem = f"{name}-x{region.x}-y{region.y}-l{region.level}"
    if region.format == "png":
        return png, FORMATS["png"], f"{stem}.png"
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.save(out, format="TIFF", compression="tiff_deflate")
    return out.getvalue(), FORMATS["tiff"], f"{stem}.tiff"
