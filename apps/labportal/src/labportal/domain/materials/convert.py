from __future__ import annotations

from labportal.domain.accounts.convert import user_ref
from labportal.domain.materials.models import Material
from labportal.domain.materials.schemas import (
    MaterialDetailOut,
    MaterialOut,
    ReplicaOut,
    slide_facts,
)
from labportal.domain.materials.services import status_of
from slidestore.cluster.wire import BlobView


def _fields(material: Material, view: BlobView | None) -> dict[str, object]:
    return {
        "id": material.id,
        "case_id": material.case_id,
        "name": material.name,
        "size": material.size,
        "blob_id": material.blob_id,
        "status": status_of(material, view),
        "replicas": sum(1 for r in view.replicas if r.state == "alive") if view else 0,
        "target_replicas": view.target if view else 0,
        "error": material.error,
        "created_by": user_ref(material.created_by),
        "created_at": material.created_at,
        "fields": material.fields or {},
        "fields_version": material.fields_version,
        "scanner": material.scanner,
        "objective_power": material.objective_power,
        "mpp": material.mpp,
        "scanned_at": material.scanned_at,
    }


def material_out(material: Material, view: BlobView | None) -> MaterialOut:
    return MaterialOut(**_fields(material, view))  # type: ignore[arg-type]


def material_detail(
    material: Material, view: BlobView | None, labels_allowed: bool
) -> MaterialDetailOut:
    return MaterialDetailOut(
        **_fields(material, view),  # type: ignore[arg-type]
        slide=slide_facts(material.slide),
        replica_nodes=[
            ReplicaOut(node_id=r.node_id, url=r.url, state=str(r.state))
            for r in (view.replicas if view else ())
        ],
        labels_allowed=labels_allowed,
    )
