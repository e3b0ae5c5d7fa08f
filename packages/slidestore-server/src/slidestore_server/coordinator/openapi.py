"""The coordinator's OpenAPI 3.1 document: paths written out here, message schemas
generated from the msgspec structs of ``slidestore.cluster.wire`` so they cannot drift."""

from __future__ import annotations

from typing import Any

import msgspec

from slidestore.cluster import wire
from slidestore_server.errors import describe

_REF = "#/components/schemas/{name}"
_STRUCTS = (
    wire.Register,
    wire.RegisterAck,
    wire.Heartbeat,
    wire.HeartbeatAck,
    wire.NodeView,
    wire.PlacementRequest,
    wire.Placement,
    wire.BlobView,
    wire.Retention,
    wire.Lifecycle,
    wire.ErrorBody,
)
BLOB = {
    "name": "blob_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
NODE = {"name": "node_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


def _ok(name: str | None, *errors: int, status: int = 200) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "OK"}
    if name is not None:
        answer["content"] = {"application/json": {"schema": _ref(name)}}
    out: dict[str, Any] = {str(status): answer}
    for code in errors:
        out[str(code)] = {
            "description": describe(code),
            "content": {"application/json": {"schema": _ref("ErrorBody")}},
        }
    return out


def _op(responses: dict[str, Any], params: list[Any] | None = None, **extra: Any) -> Any:
    return {"parameters": params or [], "responses": responses, **extra}


def document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_STRUCTS, ref_template=_REF)
    nodes_list = {"description": "OK", "content": {"application/json": {"schema": {
        "type": "array", "items": _ref("NodeView")}}}}  # fmt: skip
    query = [
        {"name": "replicas", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 0}},
    ]
    drain = [{"name": "draining", "in": "query", "schema": {"type": "boolean"}}]
    free = {"security": []}
    return {
        "openapi": "3.1.0",
        "info": {"title": "slidestore coordinator", "version": "0.1.0"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components,
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": _op({"200": {"description": "alive"}}, **free)},
            "/readyz": {
                "get": _op(
                    {"200": {"description": "ready"}, "503": {"description": "no database"}},
                    **free,
                )
            },
            "/metrics": {"get": _op(_ok(None, 401, 403))},
            "/v1/status": {"get": _op(_ok(None, 401, 403))},
            "/v1/nodes/register": {
                "post": _op(_ok("RegisterAck", 400, 401, 403), requestBody=_body("Register"))
            },
            "/v1/nodes/{node_id}/heartbeat": {
                "post": _op(
                    _ok("HeartbeatAck", 400, 401, 403, 404),
                    [NODE],
                    requestBody=_body("Heartbeat"),
                )
            },
            "/v1/nodes": {"get": _op({"200": nodes_list, **_ok(None, 401, 403)})},
            "/v1/nodes/{node_id}/drain": {
                "post": _op(_ok("NodeView", 400, 401, 403, 404), [NODE, *drain])
            },
            "/v1/placements": {
                "post": _op(
                    _ok("Placement", 400, 401, 403, 507), requestBody=_body("PlacementRequest")
                )
            },
            "/v1/blobs/{blob_id}": {
                "get": _op(_ok("BlobView", 400, 401, 403, 404), [BLOB]),
                "delete": _op(_ok(None, 400, 401, 403, 404, status=204), [BLOB]),
            },
            "/v1/blobs/{blob_id}/wait": {
                "get": _op(_ok("BlobView", 400, 401, 403, 408), [BLOB, *query])
            },
            "/v1/blobs/{blob_id}/retention": {
                "put": _op(
                    _ok("BlobView", 400, 401, 403, 404), [BLOB], requestBody=_body("Retention")
                )
            },
            "/v1/blobs/{blob_id}/restore": {
                "post": _op(
                    _ok("BlobView", 400, 401, 403, 404, 409),
                    [BLOB],
                    requestBody=_body("Retention", required=False),
                )
            },
            "/v1/blobs/{blob_id}/archive": {
                "post": _op(_ok("BlobView", 400, 401, 403, 404, 409, status=202), [BLOB])
            },
            "/v1/blobs/{blob_id}/lifecycle": {
                "put": _op(
                    _ok("BlobView", 400, 401, 403, 404), [BLOB], requestBody=_body("Lifecycle")
                )
            },
            "/v1/blobs/{blob_id}/thumbnail": {
                "get": {
                    "parameters": [BLOB],
                    "responses": {
                        "200": {
                            "description": "the archived slide's thumbnail",
                            "content": {"image/jpeg": {}},
                        },
                        **{k: v for k, v in _ok(None, 400, 401, 403, 404).items() if k != "200"},
                    },
                }
            },
        },
    }
