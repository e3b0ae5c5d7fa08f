"""Schemathesis against a real node process: the hand-written OpenAPI document must hold.

The node serves ``/openapi.json``; we load it, nudge generation towards blobs that exist
(a real slide and one whose pixels fail to decode) and towards IIIF/zarr values the
server accepts, then let schemathesis generate valid and invalid requests for every
operation. Every response must be a documented status (no 5xx; bad input is a 4xx with
a ``{"error", "detail"}`` body) and match the documented content types and schemas.
"""

from __future__ import annotations

import copy
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from slidestore.blobs import BlobStore
from slidestore.tokens import Operation, mint
from slidestore_server.node import openapi
from slidestore_server.testing import NodeProcess

SECRET = "openapi-fuzz-secret"

# Values the server accepts, offered next to whatever schemathesis invents.
_HINTS: dict[str, list[str]] = {
    "region": ["full", "square", "0,0,256,256", "pct:10,10,20,20"],
    "size": ["max", "256,", ",256", "pct:5", "^max"],
    "rotation": ["0", "90", "!180"],
    "quality": ["default", "color", "gray"],
    "key": ["zarr.json", "0/zarr.json", "0/c/0/0/0", "1/c/0/0/0"],
}


def _offer(schema: dict[str, Any], values: list[Any]) -> dict[str, Any]:
    return {"anyOf": [{"enum": values}, schema]}


def _patched(document: dict[str, Any], blob_ids: list[str]) -> dict[str, Any]:
    """Let GET operations hit the seeded blobs (never DELETE: it would remove them)."""
    document = copy.deepcopy(document)
    for path, item in document["paths"].items():
        op = item.get("get")
        if op is None:
            continue
        for param in op.get("parameters", []):
            if param["in"] != "path":
                continue
            if param["name"] == "blob_id":
                param["schema"] = _offer(param["schema"], blob_ids)
            elif path.startswith("/iiif/") and param["name"] in _HINTS:
                param["schema"] = _offer(param["schema"], _HINTS[param["name"]])
            elif path.startswith("/iiif/") and param["name"] == "format":
                param["schema"] = _offer(param["schema"], ["jpg", "png", "webp"])
            elif path.startswith("/zarr/") and param["name"] == "key":
                param["schema"] = _offer(param["schema"], _HINTS["key"])
            elif param["name"] in ("level", "col", "row"):
                param["schema"] = {**param["schema"], "maximum": 20}
    return document


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, sample_slide_path: Path, unreadable_svs_path: Path
) -> Iterator[tuple[NodeProcess, list[str]]]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    store = BlobStore(data_dir / "blobs", reserve_bytes=0)
    blob_ids = [store.put_file(sample_slide_path), store.put_file(unreadable_svs_path)]
    process = NodeProcess(data_dir, settings={"secret": SECRET, "reserve_bytes": 0}).start()
    try:
        yield process, blob_ids
    finally:
        process.kill(signal.SIGKILL)


@pytest.fixture(scope="module")
def api_schema(node: tuple[NodeProcess, list[str]]) -> Any:
    process, blob_ids = node
    document = httpx.get(process.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(_patched(document, blob_ids))
    token = mint(SECRET, ops={Operation.ADMIN}, ttl=3600)
    schema.config.update(
        base_url=process.url,
        headers={"Authorization": f"Bearer {token}"},
        request_timeout=30,
    )
    return schema


# schemathesis' own ``from_fixture``/``parametrize`` trips over pytest 9 (``_nodeid``), so
# operations are parametrized here from the in-process document and each one is driven
# with hypothesis over schemathesis' strategies, in both generation modes.
OPERATIONS = [
    (method.upper(), path)
    for path, item in openapi.document()["paths"].items()
    for method in item
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_openapi_conformance(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    try:
        strategy = operation.as_strategy(generation_mode=mode)
    except Exception as exc:  # e.g. nothing negative to generate for a parameterless GET
        pytest.skip(f"no {mode} cases: {exc}")

    @given(case=strategy)
    @settings(
        max_examples=25 if mode is GenerationMode.POSITIVE else 15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        response = case.call()
        where = f"{case.method} {case.formatted_path} q={case.query} h={case.headers}"
        if case.path == "/readyz":
            # 503 is documented, but this node has no coordinator and room to spare.
            assert response.status_code == 200, f"{where}: {response.text}"
        assert response.status_code < 500, (
            f"{where} -> {response.status_code}: {response.text[:500]}"
        )
        if 400 <= response.status_code < 500 and case.method != "HEAD":
            body = response.json()
            assert {"error", "detail"} <= set(body), f"{where}: {body}"
        case.validate_response(response)

    check()


def test_seeded_slide_is_served(node: tuple[NodeProcess, list[str]]) -> None:
    """Sanity: the blob the fuzzer is steered towards really is a readable slide."""
    process, (slide_id, _) = node
    token = mint(SECRET, ops={Operation.ADMIN}, ttl=3600)
    response = httpx.get(
        f"{process.url}/iiif/3/{slide_id}/full/256,/0/default.jpg",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
