"""``/blobs/{id}`` against a real node: ranges, caching headers, auth, delete."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from slidestore import tokens
from slidestore.blobs import BlobStore
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()
MB = 1 << 20
BUSY_RATE = 8e6


@dataclass
class Served:
    node: NodeProcess
    blob_id: str
    data: bytes
    big_id: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("blob-node") / "data"
    # The node serves whatever its store holds; fill it the way a node would, before start.
    store = BlobStore(data_dir / "blobs", reserve_bytes=0)
    data = os.urandom(100_000)
    blob_id = store.put(data)
    big_id = store.put(os.urandom(24 * MB))
    settings = {"secret": SECRET, "cache_max_age": 3600, "busy_replica_bytes_per_second": BUSY_RATE}
    with NodeProcess(data_dir, settings=settings) as node:
        yield Served(node, blob_id, data, big_id)


def auth(*ops: Operation, blob: str = tokens.ALL_BLOBS) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(SECRET, ops=set(ops), blob=blob)}"}


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=served.node.url, headers=auth(Operation.DOWNLOAD), timeout=30
    ) as client:
        yield client


def test_get_serves_the_whole_blob_with_immutable_caching(
    served: Served, http: httpx.Client
) -> None:
    response = http.get(f"/blobs/{served.blob_id}")
    assert response.status_code == 200
    assert response.content == served.data
    h = response.headers
    assert h["ETag"] == f'"{served.blob_id}"'
    assert h["Cache-Control"] == "public, max-age=3600, immutable"
    assert h["Accept-Ranges"] == "bytes"
    assert h["Content-Length"] == str(len(served.data))
    assert h["Content-Type"] == "application/octet-stream"


def test_head_has_the_headers_and_no_body(served: Served, http: httpx.Client) -> None:
    response = http.head(f"/blobs/{served.blob_id}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == str(len(served.data))
    assert response.headers["ETag"] == f'"{served.blob_id}"'


def test_if_none_match_is_304(served: Served, http: httpx.Client) -> None:
    etag = f'"{served.blob_id}"'
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = http.get(f"/blobs/{served.blob_id}", headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["ETag"] == etag
    miss = http.get(f"/blobs/{served.blob_id}", headers={"If-None-Match": '"other"'})
    assert miss.status_code == 200


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=99990-", 99_990, 100_000),
        ("bytes=-10", 99_990, 100_000),
        ("bytes=-1000000", 0, 100_000),  # a suffix longer than the blob is the whole blob
        ("bytes=50000-999999999", 50_000, 100_000),  # clamped to the end
        ("bytes=7-7", 7, 8),
        ("BYTES = 10-19", 10, 20),
    ],
)
def test_a_single_range_is_206(
    served: Served, http: httpx.Client, header: str, start: int, end: int
) -> None:
    response = http.get(f"/blobs/{served.blob_id}", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == served.data[start:end]
    assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(served.data)}"
    assert response.headers["Content-Length"] == str(end - start)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=100000-",  # starts at the end
        "bytes=200000-300000",
        "bytes=-0",
        "bytes=20-10",
        "bytes=abc",
        "bytes=1-2-3",
        "bytes=",
        "bytes",
        "bytes=0-1,5-6",  # several ranges: refused rather than answered with everything
    ],
)
def test_bad_or_unsatisfiable_ranges_are_416(
    served: Served, http: httpx.Client, header: str
) -> None:
    response = http.get(f"/blobs/{served.blob_id}", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(served.data)}"
    assert response.json()["error"] == "range_not_satisfiable"


def test_ranges_in_other_units_and_stale_if_range_get_the_whole_blob(
    served: Served, http: httpx.Client
) -> None:
    url = f"/blobs/{served.blob_id}"
    assert http.get(url, headers={"Range": "items=0-5"}).status_code == 200
    stale = http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"some-other-etag"'})
    assert stale.status_code == 200
    assert stale.content == served.data
    fresh = http.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{served.blob_id}"'})
    assert fresh.status_code == 206
    assert fresh.content == served.data[:10]


def test_large_blobs_stream_and_a_client_may_leave_early(
    served: Served, http: httpx.Client
) -> None:
    url = f"/blobs/{served.big_id}"
    with http.stream("GET", url) as response:
        first = next(response.iter_bytes())
        assert first
    # Leaving mid-body does not hurt the node; a full read still verifies.
    digest = hashlib.sha256()
    with http.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == served.big_id
    tail = http.get(url, headers={"Range": f"bytes={20 * MB}-"})
    assert tail.status_code == 206
    assert len(tail.content) == 4 * MB


def test_replica_pulls_yield_to_people_using_the_node(served: Served, http: httpx.Client) -> None:
    """Another node's pull slows to the busy rate while people use the node; alone, and for
    a person's own download, the blob goes at full speed."""
    url = f"/blobs/{served.big_id}"
    pull = {"Slidestore-Purpose": "replica"}

    def timed(headers: dict[str, str]) -> float:
        started = time.monotonic()
        answer = http.get(url, headers=headers)
        assert hashlib.sha256(answer.content).hexdigest() == served.big_id
        return time.monotonic() - started

    idle = timed(pull)
    stop = threading.Event()

    def browse() -> None:  # a viewer's requests, every 50 ms
        with httpx.Client(base_url=served.node.url, timeout=30) as viewer:
            while not stop.is_set():
                viewer.get("/openapi.json")
                time.sleep(0.05)

    viewer = threading.Thread(target=browse)
    viewer.start()
    try:
        time.sleep(0.2)
        busy = timed(pull)
        person = timed({})
    finally:
        stop.set()
        viewer.join()
    paced = 24 * MB / BUSY_RATE  # 3.1 s
    assert busy >= 0.9 * paced, (idle, busy)
    assert idle < paced / 2, (idle, busy)
    assert person < paced / 2, (person, busy)


def test_reads_need_a_token_for_that_blob(served: Served) -> None:
    url = f"{served.node.url}/blobs/{served.blob_id}"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"] == "token_missing"
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    other = auth(Operation.DOWNLOAD, blob=served.big_id)
    assert httpx.get(url, headers=other).json()["error"] == "forbidden"
    assert httpx.get(url, headers=auth(Operation.WRITE)).status_code == 403
    # ``read`` (tiles, info) is not the raw file's bytes.
    assert httpx.get(url, headers=auth(Operation.READ, Operation.LABELS)).status_code == 403
    mine = tokens.mint(SECRET, ops={Operation.DOWNLOAD}, blob=served.blob_id)
    assert httpx.get(url, headers={"Authorization": f"Bearer {mine}"}).status_code == 200
    assert httpx.get(url, params={"token": mine}).status_code == 200


def test_unknown_and_malformed_ids(http: httpx.Client) -> None:
    absent = http.get(f"/blobs/{hashlib.sha256(b'never stored').hexdigest()}")
    assert absent.status_code == 404
    assert absent.json()["error"] == "blob_not_found"
    for bad in ("xyz", "A" * 64, "0" * 63):
        response = http.get(f"/blobs/{bad}")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_blob_id"


def test_delete_needs_the_delete_operation(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("delete-node") / "data"
    blob_id = BlobStore(data_dir / "blobs", reserve_bytes=0).put(b"to be deleted")
    with NodeProcess(data_dir, settings={"secret": SECRET}) as node:
        url = f"{node.url}/blobs/{blob_id}"
        refused = httpx.delete(url, headers=auth(Operation.DOWNLOAD, Operation.WRITE))
        assert refused.status_code == 403
        assert httpx.get(url, headers=auth(Operation.DOWNLOAD)).status_code == 200
        assert httpx.delete(url, headers=auth(Operation.DELETE, blob=blob_id)).status_code == 204
        assert httpx.get(url, headers=auth(Operation.DOWNLOAD)).status_code == 404
        again = httpx.delete(url, headers=auth(Operation.DELETE))
        assert again.status_code == 404
        assert again.json()["error"] == "blob_not_found"
    assert not BlobStore(data_dir / "blobs", reserve_bytes=0).exists(blob_id)


def test_cors_preflight_and_exposed_headers_for_browser_uploads(
    start_node: Callable[..., NodeProcess],
) -> None:
    node = start_node()
    origin = {"Origin": "http://portal.example"}
    preflight = httpx.options(
        f"{node.url}/uploads",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, tus-resumable, upload-length",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", origin["Origin"])
    assert "POST" in preflight.headers["access-control-allow-methods"]
    answer = httpx.get(f"{node.url}/healthz", headers=origin)
    exposed = answer.headers["access-control-expose-headers"].lower()
    for name in ("location", "upload-offset", "slidestore-blob-id"):
        assert name in exposed
