from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from labportal.domain import validation
from labportal.domain.accounts.schemas import UserRef

Sha256 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
MaterialStatus = Literal[
    "uploading", "failed", "replicating", "ready", "archived", "restoring", "unavailable"
]

MAX_SIZE = 1 << 40  # 1 TiB
Fields = Annotated[dict[str, Any], Meta(max_length=50)]


class MaterialCreateIn(msgspec.Struct):
    name: Annotated[str, Meta(min_length=1, max_length=255)]
    size: Annotated[int, Meta(ge=1, le=MAX_SIZE)]
    sha256: Sha256 | None = None
    """The file's sha256 (hex), when the browser computed it: the same content is stored once."""
    fields: Fields = msgspec.field(default_factory=dict)
    """Values of the team-defined material fields."""

    def __post_init__(self) -> None:
        self.name = validation.line(self.name, "name")


class MaterialUpdateIn(msgspec.Struct):
    name: Annotated[str, Meta(min_length=1, max_length=255)] | UnsetType = UNSET
    fields: Fields | UnsetType = UNSET
    """The fields given change (``null`` removes one); the others keep their values."""

    def __post_init__(self) -> None:
        if self.name is not UNSET:
            self.name = validation.line(self.name, "name")


class MaterialCompleteIn(msgspec.Struct):
    blob_id: Sha256
    """The ``Slidestore-Blob-Id`` the node answered the last PATCH with (or the declared
    sha256, when the cluster had the content already)."""
    proof: Sha256
    """The answer to the material's challenge: sha256 of the nonce's bytes followed by the
    file's bytes at each challenge range, in order (hex)."""


class MaterialFailedIn(msgspec.Struct):
    reason: Annotated[str, Meta(min_length=1, max_length=2000)]

    def __post_init__(self) -> None:
        self.reason = validation.text(self.reason, "reason")


class ReplicaOut(msgspec.Struct):
    node_id: str
    url: str
    state: str


class MaterialOut(msgspec.Struct):
    id: uuid.UUID
    case_id: uuid.UUID
    name: str
    size: int
    blob_id: str | None
    status: MaterialStatus
    """uploading → replicating → ready (→ archived), computed from the cluster on every read."""
    replicas: int
    target_replicas: int
    error: str
    created_by: UserRef | None
    created_at: datetime.datetime
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    fields_version: int | None = None
    scanner: str | None = None
    objective_power: float | None = None
    mpp: float | None = None
    scanned_at: str | None = None
    """The scanner metadata the lists filter on (known once the slide was read)."""


class SlideFacts(msgspec.Struct):
    """The node's normalized metadata, the parts a pathologist looks at."""

    vendor: str | None = None
    scanner: str | None = None
    width: int | None = None
    height: int | None = None
    mpp_x: float | None = None
    mpp_y: float | None = None
    magnification: float | None = None
    levels: int | None = None
    associated_images: list[str] = msgspec.field(default_factory=list)


class MaterialDetailOut(MaterialOut):
    slide: SlideFacts | None = None
    replica_nodes: list[ReplicaOut] = msgspec.field(default_factory=list)
    labels_allowed: bool = False
    archived_thumbnail: str | None = None
    """While archived or restoring: the thumbnail kept in the archive."""


class MaterialPage(msgspec.Struct):
    items: list[MaterialOut]
    total: int
    limit: int
    offset: int


class ChallengeOut(msgspec.Struct):
    nonce: str
    """16 bytes, hex."""
    ranges: list[tuple[int, int]]
    """``[offset, length]`` byte ranges of the file."""


class UploadOut(msgspec.Struct):
    material: MaterialOut
    exists: bool
    """The cluster already holds this content: nothing to upload, only the proof to send."""
    upload_url: str | None
    """The primary node's tus collection; send the token as ``Authorization: Bearer``."""
    token: str | None
    """One upload of this size (and sha256, when declared), nothing else."""
    challenge: ChallengeOut
    """Answer it from the file in ``/complete`` (``proof``): a material is linked to a blob
    only by someone holding the file, never by its sha256 alone."""


class ViewOut(msgspec.Struct):
    """What a viewer needs: the replicas' DeepZoom URLs and a short-lived read token."""

    blob_id: str
    token: str
    """Read only, on this blob only; pass as ``?token=``."""
    expires_in: int
    dzi_urls: list[str]
    """One per replica, readable ones first: on failures, switch to the next."""
    mpp: float | None
    width: int | None
    height: int | None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Label/macro picture URLs (token included) when the team lets your role see them."""
    thumbnail: str | None = None
    magnification: float | None = None
    """The scanner's objective power (e.g. 20.0), when the slide records it."""


def slide_facts(info: dict[str, Any] | None) -> SlideFacts | None:
    if not info:
        return None
    meta = info.get("metadata") or {}
    scanner = " ".join(str(v) for v in (meta.get("scanner_model"), meta.get("scanner_id")) if v)
    return SlideFacts(
        vendor=meta.get("vendor"),
        scanner=scanner or None,
        width=meta.get("width"),
        height=meta.get("height"),
        mpp_x=meta.get("mpp_x"),
        mpp_y=meta.get("mpp_y"),
        magnification=meta.get("objective_power"),
        levels=len(meta.get("levels") or ()) or None,
        associated_images=[a.get("name", "") for a in meta.get("associated_images") or ()],
    )
