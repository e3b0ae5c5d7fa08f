"""The node's OpenAPI 3.1 document, written out rather than inferred.

Handlers are plain Starlette functions, so the schema is declared here next to nothing
else; ``tests/test_openapi_fuzz.py`` runs schemathesis against it to keep it honest.
"""

from __future__ import annotations

from typing import Any

from slidestore_server.errors import describe

BLOB_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
ERROR = {"$ref": "#/components/schemas/Error"}
HEAD_ERRORS = ("400", "401", "403", "404", "410", "412")


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or ERROR}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    """Error answers, each described from the status table (``errors.describe``)."""
    return {str(s): _json(describe(s)) for s in statuses}


def _image(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
        },
    }


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


BLOB = _path_param("blob_id", BLOB_ID)
# Sources are plain strings on purpose: the node checks them (400), and a generated URL
# naming a real host would only measure the fuzzer's network.
REPLICATE = {
    "type": "object",
    "required": ["blob_id", "size"],
    "properties": {
        "blob_id": BLOB_ID,
        "size": {"type": "integer", "minimum": 0},
        "source_url": {"type": ["string", "null"]},
        "archive_url": {"type": ["string", "null"]},
        "bytes_per_second": {"type": ["number", "null"], "minimum": 1024},
    },
}
REPLICATED = {
    "type": "object",
    "required": ["blob_id", "size", "copied_bytes", "seconds"],
    "properties": {
        "blob_id": BLOB_ID,
        "size": {"type": "integer"},
        "copied_bytes": {"type": "integer"},
        "seconds": {"type": "number"},
    },
}
READ_ERRORS = _errors(400, 401, 403, 404, 422)
FORMAT = {"type": "string", "enum": ["jpeg", "jpg", "png", "webp"]}
IIIF_IMAGE = [
    _path_param(name, {"type": "string"})
    for name in ("region", "size", "rotation", "quality", "format")
]
TUS_RESUMABLE = {
    "name": "Tus-Resumable",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "enum": ["1.0.0"]},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "slidestore storage node", "version": "0.1.0"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {
                    "security": [],
                    "responses": {
                        "200": _json(
                            "alive",
                            {
                                "type": "object",
                                "required": ["status", "node_id"],
                                "properties": {
                                    "status": {"type": "string"},
                                    "node_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                                },
                            },
                        )
                    },
                }
            },
            "/readyz": {
                "get": {
                    "security": [],
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "responses": {"200": {"description": "Prometheus text"}, **_errors(401, 403)}
                }
            },
            "/blobs/{blob_id}": {
                "get": {
                    "parameters": [BLOB],
                    "responses": {
                        "200": {"description": "the blob"},
                        "206": {"description": "a byte range"},
                        "304": {"description": "not modified"},
                        **_errors(400, 401, 403, 404, 416),
                    },
                },
                "delete": {
                    "parameters": [BLOB],
                    "responses": {"204": {"description": "deleted"}, **_errors(400, 401, 403, 404)},
                },
            },
            "/blobs/{blob_id}/tiles": {
                "get": {
                    "parameters": [BLOB],
                    "responses": {
                        "200": {
                            "description": "where its JPEG tiles lie (msgpack TileMap; none "
                            "for a blob that is not a TIFF with JPEG tiles)",
                            "content": {"application/vnd.msgpack": {}},
                        },
                        **_errors(400, 401, 403, 404),
                    },
                }
            },
            "/replicas": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": REPLICATE}},
                    },
                    "responses": {
                        "200": _json("a good copy was already here", REPLICATED),
                        "201": _json("copied and verified", REPLICATED),
                        **_errors(400, 401, 403, 502, 507),
                    },
                }
            },
            "/admin/scrub": {
                "post": {
                    "responses": {
                        "200": _json(
                            "one scrub pass done; the ids it quarantined",
                            {
                                "type": "object",
                                "required": ["quarantined"],
                                "properties": {
                                    "quarantined": {"type": "array", "items": BLOB_ID},
                                    "seconds": {"type": "number"},
                                },
                            },
                        ),
                        **_errors(401, 403),
                    }
                }
            },
            "/slides/{blob_id}/info": {
                "get": {
                    "parameters": [BLOB],
                    "responses": {
                        "200": _json("normalized metadata", {"type": "object"}),
                        **READ_ERRORS,
                    },
                }
            },
            "/slides/{blob_id}/renditions": {
                "get": {
                    "parameters": [BLOB],
                    "responses": {
                        "200": _json(
                            "prerendering state of the slide's Deep Zoom tiles",
                            {"type": "object"},
                        ),
                        **READ_ERRORS,
                    },
                }
            },
            "/slides/{blob_id}/thumbnail": {
                "get": {
                    "parameters": [
                        BLOB,
                        _query("size", {"type": "integer", "minimum": 1, "maximum": 2048}),
                        _query("format", FORMAT),
                    ],
                    "responses": {"200": _image("thumbnail"), **READ_ERRORS},
                }
            },
            "/slides/{blob_id}/{name}": {
                "get": {
                    "parameters": [
                        BLOB,
                        _path_param("name", {"type": "string", "enum": ["label", "macro"]}),
                        _query("format", FORMAT),
                    ],
                    "responses": {"200": _image("associated image"), **READ_ERRORS},
                }
            },
            "/slides/{blob_id}.dzi": {
                "get": {
                    "parameters": [BLOB],
                    "responses": {
                        "200": {"description": "DZI XML", "content": {"application/xml": {}}},
                        **READ_ERRORS,
                    },
                }
            },
            "/slides/{blob_id}_files/{level}/{col}_{row}.{format}": {
                "get": {
                    "parameters": [
                        BLOB,
                        _path_param("level", {"type": "integer", "minimum": 0}),
                        _path_param("col", {"type": "integer", "minimum": 0}),
                        _path_param("row", {"type": "integer", "minimum": 0}),
                        _path_param("format", FORMAT),
                    ],
                    "responses": {"200": _image("DeepZoom tile"), **READ_ERRORS},
                }
            },
            "/iiif/3/{blob_id}/info.json": {
                "get": {
                    "parameters": [BLOB],
                    "responses": {
                        "200": _json("IIIF image information", {"type": "object"}),
                        **READ_ERRORS,
                    },
                }
            },
            "/iiif/3/{blob_id}/{region}/{size}/{rotation}/{quality}.{format}": {
                "get": {
                    "parameters": [BLOB, *IIIF_IMAGE],
                    "responses": {
                        "200": _image("IIIF image"),
                        **READ_ERRORS,
                        **_errors(503),
                    },
                }
            },
            "/iiif/3/t/{token}/{blob_id}/info.json": {
                "get": {
                    # The capability is in the path (stock IIIF viewers follow only `id`).
                    "security": [],
                    "parameters": [_path_param("token", {"type": "string"}), BLOB],
                    "responses": {
                        "200": _json("IIIF image information", {"type": "object"}),
                        **READ_ERRORS,
                    },
                }
            },
            "/iiif/3/t/{token}/{blob_id}/{region}/{size}/{rotation}/{quality}.{format}": {
                "get": {
                    "security": [],
                    "parameters": [_path_param("token", {"type": "string"}), BLOB, *IIIF_IMAGE],
                    "responses": {
                        "200": _image("IIIF image"),
                        **READ_ERRORS,
                        **_errors(503),
                    },
                }
            },
            "/zarr/{blob_id}": {
                "get": {
                    "parameters": [
                        BLOB,
                        {
                            "name": "list",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": ["dir", "prefix"]},
                        },
                        {"name": "prefix", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            "the names below `prefix` (dir) or the keys starting with it",
                            {
                                "type": "object",
                                "properties": {
                                    "keys": {"type": "array", "items": {"type": "string"}}
                                },
                                "required": ["keys"],
                            },
                        ),
                        **READ_ERRORS,
                    },
                }
            },
            "/zarr/{blob_id}/{key}": {
                "get": {
                    "parameters": [BLOB, _path_param("key", {"type": "string"})],
                    "responses": {
                        "200": {"description": "zarr v3 key (zarr.json or chunk bytes)"},
                        **READ_ERRORS,
                    },
                }
            },
            "/uploads": {
                "options": {
                    "security": [],
                    "responses": {"204": {"description": "tus capabilities"}},
                },
                "post": {
                    "parameters": [
                        {
                            "name": "Upload-Length",
                            "in": "header",
                            # Required, except on a final upload (Upload-Concat: final;...).
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                        {
                            "name": "Upload-Concat",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        TUS_RESUMABLE,
                        {
                            "name": "Upload-Metadata",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "201": {"description": "created"},
                        # 422: an empty upload (Upload-Length: 0) completes at once and
                        # must open as a slide.
                        **_errors(400, 401, 403, 412, 413, 422, 429, 507),
                    },
                },
            },
            "/uploads/{upload_id}": {
                "head": {
                    "parameters": [_path_param("upload_id", {"type": "string"}), TUS_RESUMABLE],
                    "responses": {
                        # HEAD responses carry no body, so no content is declared.
                        "200": {"description": "offset"},
                        **{s: {"description": describe(int(s))} for s in HEAD_ERRORS},
                    },
                },
                "delete": {
                    "parameters": [
                        _path_param("upload_id", {"type": "string"}),
                        TUS_RESUMABLE,
                    ],
                    "responses": {
                        "204": {"description": "terminated"},
                        **_errors(400, 401, 403, 404, 410, 412),
                    },
                },
            },
        },
    }
