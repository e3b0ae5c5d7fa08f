"""One owner for error codes: every class a server answers with declares its code and
status, the servers read the status from it, the SDK maps the code back to it (over real
HTTP on loopback), and the OpenAPI texts are generated from the same table."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slidestore import errors
from slidestore.client.http import Transport, error_from
from slidestore.cluster import errors as cluster_errors
from slidestore.error_codes import by_code, codes_by_status, error_classes
from slidestore.protocols.iiif.errors import IIIFRequestError, IIIFSizeTooLarge
from slidestore_server import errors as server_errors
from slidestore_server.coordinator import openapi as coordinator_openapi
from slidestore_server.node import openapi as node_openapi
from slidestore_server.testing import free_port

CLASSES = {klass.__name__: klass for klass in error_classes()}


@pytest.fixture(scope="module")
def raising_server() -> Iterator[str]:
    """A server with the servers' error handlers whose ``/raise/{name}`` raises that class."""

    async def raise_it(request: Request) -> Response:
        klass = CLASSES[request.path_params["name"]]
        raise klass.from_wire(f"the server's words about {klass.code}")

    app = Starlette(
        routes=[Route("/raise/{name}", raise_it)],
        exception_handlers=server_errors.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_table_covers_the_coordinators_codes() -> None:
    codes = by_code()
    coordinator_codes = (
        "no_placement",
        "node_unknown",
        "wait_timeout",
        "too_many_waits",
        "not_archived",
        "no_archive",
        "database_unavailable",
    )
    for code in coordinator_codes:
        assert code in codes, code
    # The coordinator's errors are the library's (the shared server module imports no
    # coordinator module for them).
    from slidestore_server.coordinator import errors as coordinator_errors

    assert coordinator_errors.WaitTimeout is cluster_errors.WaitTimeout
    assert "coordinator" not in " ".join(
        line for line in Path(server_errors.__file__).read_text().splitlines() if "import" in line
    )


def test_statuses_come_from_the_classes() -> None:
    assert cluster_errors.NoPlacement.status == 507
    assert "507" in (cluster_errors.NoPlacement.__doc__ or "")
    assert server_errors.status_for(cluster_errors.NoPlacement("full")) == 507
    assert server_errors.status_for(errors.GrantUsed("spent")) == 403
    assert server_errors.status_for(ValueError("not ours")) == 500
    refused = IIIFRequestError("size", "upscaling without ^")
    assert refused.http_status == errors.InvalidRequest.status == 400
    for klass, status in server_errors.STATUS.items():
        assert status == getattr(klass, "status", None), klass


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_code_round_trips_to_its_class(raising_server: str, name: str) -> None:
    klass = CLASSES[name]
    answer = httpx.get(f"{raising_server}/raise/{name}")
    assert answer.status_code == klass.status
    assert answer.json()["error"] == klass.code
    expected = by_code()[klass.code]
    # Classes that share a code with a parent come back as that parent.
    assert issubclass(klass, expected)
    mapped = error_from(answer.status_code, answer.content, context="GET /raise")
    assert type(mapped) is expected
    assert f"the server's words about {klass.code}" in str(mapped)
    if answer.status_code < 500 or answer.status_code == 507:
        # Through the transport every coordinator call uses, too.
        async def call() -> None:
            transport = Transport(raising_server, retries=0)
            try:
                await transport.coordinator("GET", f"/raise/{name}")
            finally:
                await transport.aclose()

        with pytest.raises(expected) as raised:
            asyncio.run(call())
        assert type(raised.value) is expected


def test_retry_after_and_iiif_parameter_survive_the_wire(raising_server: str) -> None:
    busy = httpx.get(f"{raising_server}/raise/TooManyWaits")
    size = httpx.get(f"{raising_server}/raise/IIIFRequestError")
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    copy = error_from(size.status_code, size.content)
    assert isinstance(copy, IIIFRequestError) and copy.parameter in (
        "region",
        "size",
        "rotation",
        "quality",
        "format",
    )
    assert by_code()["region_too_large"] is errors.RegionTooLarge
    assert issubclass(IIIFSizeTooLarge, errors.RegionTooLarge)


def _error_descriptions(document: dict[str, object]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    paths = document["paths"]
    assert isinstance(paths, dict)
    for operations in paths.values():
        for operation in operations.values():
            for status, answer in operation.get("responses", {}).items():
                if status.startswith(("4", "5")) and status != "503":
                    found.setdefault(status, set()).add(answer["description"])
    return found


@pytest.mark.parametrize("document", [node_openapi.document, coordinator_openapi.document])
def test_openapi_error_texts_are_generated_from_the_table(document: object) -> None:
    assert callable(document)
    described = _error_descriptions(document())
    assert described, "no error answers documented"
    table = codes_by_status()
    for status, texts in described.items():
        assert texts == {server_errors.describe(int(status))}, status
        for code in table.get(int(status), ()):
            assert code in next(iter(texts)), (status, code)
