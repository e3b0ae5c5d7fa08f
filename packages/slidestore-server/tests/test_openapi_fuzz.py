"""Schemathesis against a real node process: the hand-written OpenAPI document must hold.

The node serves ``/openapi.json``; we load it, nudge generation towards blobs that exist
(a real slide and one whose pixels fail to decode) and towards IIIF/zarr values the
server accepts, then let schemathesis generate valid and invalid requests for every
operation. Every response must be a documented status (no 5xx; bad input is a 4xx with
a ``{"error", "detail"}`` body) and match the documented content types and schemas.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config._checks import NegativeDataRejectionConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from slidestore import tokens
from slidestore.blobs import BlobStore
from slidestore.tokens import Operation, mint
from slidestore_server.node import openapi
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()
AUTH = {"Authorization": f"Bearer {mint(SECRET, ops={Operation.ADMIN}, ttl=3600)}"}


def _fixed_params(path: str, slide: str, unreadable: str) -> list[dict[str, Any]]:
    """Path parameters pinned to values that exist (a JSON-schema ``anyOf`` with an enum is
    simplified away by the generator, so seeded ids are offered as fixed parameters)."""
    if "{blob_id}" not in path:
        return []
    pinned: list[dict[str, Any]] = [{"blob_id": slide}, {"blob_id": unreadable}]
    if path.startswith("/iiif/") and "{region}" in path:
        pinned += [
            {"blob_id": slide, "region": r, "size": z, "rotation": t, "quality": q, "format": f}
            for r, z, t, q, f in [
                ("full", "256,", "0", "default", "jpg"),
                ("square", "max", "90", "gray", "png"),
                ("0,0,512,512", "pct:25", "!180", "color", "webp"),
                ("pct:10,10,20,20", "^max", "0", "bitonal", "jpg"),
                ("99999,0,10,10", "10,10", "0", "default", "jpg"),
            ]
        ]
    elif path.startswith("/slides/") and "{level}" in path:
        pinned += [
            {"blob_id": slide, "level": lv, "col": c, "row": r}
            for lv, c, r in [(0, 0, 0), (8, 0, 0), (12, 1, 1), (12, 0, 0), (12, 3, 2), (12, 99, 0)]
        ]
    elif path.startswith("/zarr/"):
        pinned += [
            {"blob_id": slide, "key": k}
            for k in ["zarr.json", "0/zarr.json", "0/c/0/0/0", "1/c/0/0/0", "0/c/9/9/9"]
        ]
    elif path.endswith("/{name}"):
        pinned += [{"blob_id": slide, "name": n} for n in ("label", "macro")]
    return pinned


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
    process, _ = node
    document = httpx.get(process.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=process.url, request_timeout=30)
    # tus answers a missing or wrong Tus-Resumable with 412 (the protocol says so), and a
    # malformed Range is a 416: both are rejections of invalid input.
    schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=[400, 401, 403, 404, 405, 406, 409, 412, 415, 416, 422, 428, 429]
    )
    return schema


# schemathesis' own ``from_fixture``/``parametrize`` trips over pytest 9 (``_nodeid``), so
# operations are parametrized here from the in-process document and each one is driven
# with hypothesis over schemathesis' strategies, in both generation modes.
# Negative cases need something to break (a parameter or the bearer header): open operations
# without parameters get positive ones only.
CASES = [
    (method.upper(), path, mode)
    for path, item in openapi.document()["paths"].items()
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or operation.get("parameters")
    or operation.get("security") != []  # the bearer header can be broken too
]


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES]
)
def test_openapi_conformance(
    api_schema: Any,
    node: tuple[NodeProcess, list[str]],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if method == "GET" and mode is GenerationMode.POSITIVE:
        # Never DELETE the seeded blobs: the other operations need them.
        slide, unreadable = node[1]
        pinned = [
            operation.as_strategy(generation_mode=mode, path_parameters=params)
            for params in _fixed_params(path, slide, unreadable)
        ]
        if pinned:
            strategy = st.one_of(strategy, st.one_of(pinned), st.one_of(pinned))

    @given(case=strategy)
    @settings(
        max_examples=40 if mode is GenerationMode.POSITIVE else 15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        # The admin token goes on every request, except when schemathesis deliberately
        # broke a header (it may be the Authorization header itself).
        broken_headers = case.meta is not None and case.meta.is_negative_at(
            ParameterLocation.HEADER
        )
        auth = {} if broken_headers and "Authorization" in (case.headers or {}) else AUTH
        response = case.call(headers=auth)
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
        # positive_data_acceptance is left out: IIIF region/size/rotation/quality and zarr
        # keys are declared as free strings and validated by the server (400/404).
        case.validate_response(response, headers=auth, excluded_checks=[positive_data_acceptance])

    check()


def test_seeded_slide_is_served(node: tuple[NodeProcess, list[str]]) -> None:
    """Sanity: the blob the fuzzer is steered towards really is a readable slide."""
    process, (slide_id, _) = node
    response = httpx.get(
        f"{process.url}/iiif/3/{slide_id}/full/256,/0/default.jpg",
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
