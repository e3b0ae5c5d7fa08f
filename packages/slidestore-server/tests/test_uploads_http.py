"""tus 1.0 uploads against a real node process on loopback: the protocol with the real
``tuspy`` client, resuming after drops, restarts and ``kill -9``, every error status,
and memory while a large file streams through."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from tusclient.client import TusClient

from slidestore import tokens
from slidestore.testing.paths import shared_data_dir
from slidestore.tokens import Operation
from slidestore.uploads.manager import GRANTS_DIR
from slidestore_server.testing import NodeProcess

DATA = shared_data_dir()
SLIDE = (DATA / "CMU-1-Small-Region.svs").read_bytes()
SLIDE_SHA = hashlib.sha256(SLIDE).hexdigest()
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
MB = 1 << 20
# Large enough that 507 (not 413) is what a multi-terabyte declaration gets.
MAX_UPLOAD = 1 << 44

StartNode = Callable[..., NodeProcess]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node shared by the tests that do not restart or reconfigure it."""
    data_dir = tmp_path_factory.mktemp("shared-node") / "data"
    process = NodeProcess(
        data_dir, settings={"secret": tokens.new_secret(), "max_upload_bytes": MAX_UPLOAD}
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node the restart tests stop, kill and start again (each leaves it running)."""
    data_dir = tmp_path_factory.mktemp("restartable-node") / "data"
    with NodeProcess(data_dir, settings={"secret": tokens.new_secret()}) as process:
        yield process


@functools.cache
def writer_token(secret: str) -> str:
    """One uploader client's token per node: an upload is only seen by the token that
    made it (test_upload_grants.py shows other tokens refused)."""
    ops = {Operation.WRITE, Operation.READ, Operation.DOWNLOAD, Operation.DELETE}
    return tokens.mint(secret, ops=ops, ttl=3600)


def writer_headers(node: NodeProcess, **extra: str) -> dict[str, str]:
    token = writer_token(str(node.settings["secret"]))
    return {"Authorization": f"Bearer {token}", **TUS, **extra}


def token_headers(
    node: NodeProcess, *ops: Operation, blob: str = tokens.ALL_BLOBS
) -> dict[str, str]:
    token = tokens.mint(str(node.settings["secret"]), ops=set(ops), blob=blob, ttl=600)
    return {"Authorization": f"Bearer {token}"}


def client(node: NodeProcess) -> httpx.Client:
    return httpx.Client(base_url=node.url, headers=writer_headers(node), timeout=60)


def metadata(**values: bytes | str) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode() if isinstance(v, str) else v).decode()}"
        for k, v in values.items()
    )


def create(http: httpx.Client, length: int, **meta: bytes | str) -> str:
    headers = {"Upload-Length": str(length)}
    if meta:
        headers["Upload-Metadata"] = metadata(**meta)
    response = http.post("/uploads", headers=headers)
    assert response.status_code == 201, response.text
    return str(response.headers["Location"])


def patch(
    http: httpx.Client, location: str, offset: int, body: bytes, **headers: str
) -> httpx.Response:
    return http.patch(
        location, content=body, headers={**OCTETS, "Upload-Offset": str(offset), **headers}
    )


def offset_of(http: httpx.Client, location: str) -> int:
    response = http.head(location)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Content-Type"] == "application/json"
    if response.request.method == "HEAD":
        return {}  # a HEAD response carries the headers of the JSON error, not its body
    body: dict[str, str] = response.json()
    assert body["error"] == code
    assert body["detail"]
    return body


def blob_bytes(node: NodeProcess, blob_id: str) -> bytes:
    with client(node) as http:
        response = http.get(f"/blobs/{blob_id}")
        assert response.status_code == 200
        return response.content


def upload_dirs(node: NodeProcess) -> list[Path]:
    root = node.data_dir / "uploads"
    if not root.exists():
        return []
    return [p for p in root.iterdir() if not p.name.startswith(".") and p.name != GRANTS_DIR]


def raw_partial_patch(
    node: NodeProcess, path: str, offset: int, declared: int, part: bytes
) -> socket.socket:
    """A PATCH that announces ``declared`` bytes, sends ``part`` of them, and stays open."""
    sock = socket.create_connection(("127.0.0.1", node.port))
    head = "".join(
        f"{k}: {v}\r\n"
        for k, v in {
            "Host": f"127.0.0.1:{node.port}",
            **writer_headers(node, **OCTETS),
            "Upload-Offset": str(offset),
            "Content-Length": str(declared),
        }.items()
    )
    sock.sendall(f"PATCH {path} HTTP/1.1\r\n{head}\r\n".encode() + part)
    return sock


def settled_offset(http: httpx.Client, location: str, timeout: float = 10) -> int:
    """The offset once no request holds the upload any more (the server noticed the drop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A zero-byte PATCH at a wrong offset: 423 while a request still writes, else 409.
        probe = patch(http, location, 10**15, b"")
        if probe.status_code == 409:
            return offset_of(http, location)
        assert probe.status_code == 423, probe.text
        time.sleep(0.05)
    raise TimeoutError("the upload stayed locked")


def settled_at(http: httpx.Client, location: str, expected: int, timeout: float = 20) -> int:
    """Wait until the upload is unlocked at ``expected`` (a request that has not reached the
    node yet leaves it unlocked at its old offset for a moment)."""
    deadline = time.monotonic() + timeout
    while (offset := settled_offset(http, location, timeout)) != expected:
        assert offset < expected, offset
        assert time.monotonic() < deadline, f"offset {offset}, expected {expected}"
        time.sleep(0.05)
    return offset


def eventually_locked(http: httpx.Client, location: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while patch(http, location, 10**15, b"").status_code != 423:
        assert time.monotonic() < deadline, "no request ever held the upload"
        time.sleep(0.02)


# -- discovery and the real tus client ------------------------------------------------


def test_options_advertises_the_protocol(node: NodeProcess) -> None:
    response = httpx.options(f"{node.url}/uploads")  # no token, no Tus-Resumable needed
    assert response.status_code == 204
    h = response.headers
    assert h["Tus-Resumable"] == "1.0.0"
    assert h["Tus-Version"] == "1.0.0"
    assert set(h["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "checksum",
        "termination",
        "expiration",
        "concatenation",
    }
    assert h["Tus-Max-Size"] == str(MAX_UPLOAD)
    assert set(h["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}


def test_tuspy_uploads_in_chunks_with_checksums_and_resumes(node: NodeProcess) -> None:
    tus = TusClient(
        f"{node.url}/uploads", headers={"Authorization": writer_headers(node)["Authorization"]}
    )
    uploader = tus.uploader(
        file_path=str(DATA / "CMU-1-Small-Region.svs"),
        chunk_size=300_000,
        metadata={"filename": "CMU-1-Small-Region.svs", "sha256": SLIDE_SHA},
        upload_checksum=True,  # sha1 Upload-Checksum on every PATCH
    )
    uploader.upload(stop_at=900_000)  # a client that stops midway ...
    assert uploader.offset == 900_000
    url = uploader.url

    resumed = tus.uploader(
        file_path=str(DATA / "CMU-1-Small-Region.svs"), url=url, chunk_size=400_000
    )
    assert resumed.offset == 900_000  # ... and another that picks up from HEAD
    resumed.upload()
    assert resumed.offset == len(SLIDE)
    assert resumed.request is not None
    assert resumed.request.response_headers["slidestore-blob-id"] == SLIDE_SHA

    with client(node) as http:
        head = http.head(url)
    assert head.headers["Slidestore-Blob-Id"] == SLIDE_SHA
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(SLIDE))
    assert head.headers["Cache-Control"] == "no-store"
    assert "Upload-Metadata" in head.headers
    assert blob_bytes(node, SLIDE_SHA) == SLIDE


def test_creation_with_upload_and_termination(node: NodeProcess) -> None:
    with client(node) as http:
        response = http.post(
            "/uploads",
            content=SLIDE[:100_000],
            headers={**OCTETS, "Upload-Length": str(len(SLIDE))},
        )
        assert response.status_code == 201
        assert response.headers["Upload-Offset"] == "100000"
        location = response.headers["Location"]
        assert location.startswith(f"{node.url}/uploads/")
        expires = parsedate_to_datetime(response.headers["Upload-Expires"])
        assert expires.timestamp() > time.time() + 3600

        assert http.delete(location).status_code == 204
        assert_error(http.head(location), 404, "upload_not_found")
        assert_error(patch(http, location, 100_000, b"x"), 404, "upload_not_found")


def test_same_content_uploaded_twice_is_stored_once(node: NodeProcess) -> None:
    data = (DATA / "small.svs").read_bytes()
    ids = []
    with client(node) as http:
        for _ in range(2):
            location = create(http, len(data))
            response = patch(http, location, 0, data)
            assert response.status_code == 204
            ids.append(response.headers["Slidestore-Blob-Id"])
    blob_id = hashlib.sha256(data).hexdigest()
    assert ids == [blob_id, blob_id]
    stored = [p for p in (node.data_dir / "blobs").rglob(blob_id)]
    assert len(stored) == 1


# -- resuming -------------------------------------------------------------------------


def test_resume_after_a_dropped_connection(node: NodeProcess) -> None:
    with client(node) as http:
        location = create(http, len(SLIDE), sha256=SLIDE_SHA)
        path = httpx.URL(location).path
        sock = raw_partial_patch(node, path, 0, len(SLIDE), SLIDE[:700_000])
        time.sleep(0.2)
        sock.close()  # the connection drops mid-body
        # Every byte that arrived before the drop is kept (no chunk checksum to wait for).
        offset = settled_at(http, location, 700_000)
        response = patch(http, location, offset, SLIDE[offset:])
        assert response.status_code == 204, response.text
        assert response.headers["Slidestore-Blob-Id"] == SLIDE_SHA
    assert blob_bytes(node, SLIDE_SHA) == SLIDE


def test_resume_after_the_node_restarts(restartable: NodeProcess) -> None:
    node = restartable
    with client(node) as http:
        location = create(http, len(SLIDE), sha256=SLIDE_SHA)
        assert patch(http, location, 0, SLIDE[:1_000_000]).status_code == 204
    node.restart()  # graceful stop; the new process has no in-memory hash state
    with client(node) as http:
        assert offset_of(http, location) == 1_000_000
        response = patch(http, location, 1_000_000, SLIDE[1_000_000:])
        assert response.status_code == 204, response.text
        assert response.headers["Slidestore-Blob-Id"] == SLIDE_SHA
    assert blob_bytes(node, SLIDE_SHA) == SLIDE


def test_kill_9_never_loses_an_acknowledged_offset(restartable: NodeProcess) -> None:
    node = restartable
    with client(node) as http:
        location = create(http, len(SLIDE), sha256=SLIDE_SHA)
        acked = patch(http, location, 0, SLIDE[:600_000])
        assert acked.status_code == 204
        acknowledged = int(acked.headers["Upload-Offset"])
        assert acknowledged == 600_000
        # The next chunk is mid-flight when the node dies.
        sock = raw_partial_patch(
            node, httpx.URL(location).path, acknowledged, 700_000, SLIDE[600_000:900_000]
        )
        time.sleep(0.1)
        node.kill(signal.SIGKILL)
        sock.close()
    node.start()
    upload_id = location.rsplit("/", 1)[1]
    with client(node) as http:
        offset = offset_of(http, location)
        assert offset >= acknowledged
        on_disk = (node.data_dir / "uploads" / upload_id / "data").read_bytes()
        assert on_disk[:offset] == SLIDE[:offset]
        response = patch(http, location, offset, SLIDE[offset:])
        assert response.status_code == 204, response.text
        assert response.headers["Slidestore-Blob-Id"] == SLIDE_SHA
    assert blob_bytes(node, SLIDE_SHA) == SLIDE


def test_chunk_sums_are_right_after_kill_9_between_and_inside_patches(
    restartable: NodeProcess,
) -> None:
    """The chunk checksums are computed as the bytes arrive, not read back at the end: a
    node killed between PATCHes (mid checksum-chunk) and again inside one still stores
    the blob with the sums of its bytes, and serves it through them."""
    from slidestore.blobs.store import BlobStore
    from slidestore.blobs.sums import CHUNK, ChunkSummer, ChunkSums

    node = restartable
    first, second = 3 * CHUNK + 777, 20 * CHUNK + 5
    with client(node) as http:
        location = create(http, len(SLIDE), sha256=SLIDE_SHA)
        assert patch(http, location, 0, SLIDE[:first]).status_code == 204
    node.kill(signal.SIGKILL)  # between PATCHes
    node.start()
    with client(node) as http:
        assert offset_of(http, location) == first
        assert patch(http, location, first, SLIDE[first:second]).status_code == 204
        sock = raw_partial_patch(
            node, httpx.URL(location).path, second, 400_000, SLIDE[second : second + 99_999]
        )
        time.sleep(0.1)
        node.kill(signal.SIGKILL)  # inside a PATCH
        sock.close()
    node.start()
    with client(node) as http:
        offset = offset_of(http, location)
        assert offset >= second
        response = patch(http, location, offset, SLIDE[offset:])
        assert response.status_code == 204, response.text
        assert response.headers["Slidestore-Blob-Id"] == SLIDE_SHA
    summer = ChunkSummer()
    summer.update(SLIDE)
    store = BlobStore(node.data_dir / "blobs", reserve_bytes=0)
    assert ChunkSums.load(store.sums_path(SLIDE_SHA)) == summer.finish()
    assert blob_bytes(node, SLIDE_SHA) == SLIDE  # every chunk read is checked


def test_head_completes_an_upload_whose_last_patch_was_cut_off(restartable: NodeProcess) -> None:
    node = restartable
    with client(node) as http:
        location = create(http, len(SLIDE))
        assert patch(http, location, 0, SLIDE[:-10]).status_code == 204
    # Simulate a node killed after the last bytes were durable but before completing:
    # write them the way the node does (data then offset), with the node down.
    node.kill(signal.SIGKILL)
    from slidestore.blobs import BlobStore
    from slidestore.uploads import UploadManager

    manager = UploadManager(
        node.data_dir / "uploads",
        BlobStore(node.data_dir / "blobs", reserve_bytes=0),
        expiry_seconds=3600,
        max_size=MAX_UPLOAD,
    )
    upload_id = location.rsplit("/", 1)[1]
    with manager.open_append(upload_id, len(SLIDE) - 10) as appender:
        appender.write(SLIDE[-10:])
        appender.abort()
    node.start()
    with client(node) as http:
        head = http.head(location)
    assert head.headers["Upload-Offset"] == str(len(SLIDE))
    assert head.headers["Slidestore-Blob-Id"] == SLIDE_SHA


# -- errors ---------------------------------------------------------------------------


def test_offset_mismatch_is_409(node: NodeProcess) -> None:
    with client(node) as http:
        location = create(http, len(SLIDE))
        assert patch(http, location, 0, SLIDE[:1000]).status_code == 204
        body = assert_error(
            patch(http, location, 500, SLIDE[500:1500]), 409, "upload_offset_mismatch"
        )
        assert "1000" in body["detail"]
        assert offset_of(http, location) == 1000


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_chunk_checksum_mismatch_is_460_and_discards_the_chunk(
    node: NodeProcess, algorithm: str
) -> None:
    chunk = SLIDE[:50_000]
    wrong = base64.b64encode(hashlib.new(algorithm, b"other bytes").digest()).decode()
    right = base64.b64encode(hashlib.new(algorithm, chunk).digest()).decode()
    with client(node) as http:
        location = create(http, len(SLIDE))
        response = patch(http, location, 0, chunk, **{"Upload-Checksum": f"{algorithm} {wrong}"})
        assert_error(response, 460, "checksum_mismatch")
        assert offset_of(http, location) == 0
        ok = patch(http, location, 0, chunk, **{"Upload-Checksum": f"{algorithm} {right}"})
        assert ok.status_code == 204
        assert ok.headers["Upload-Offset"] == "50000"


def test_unsupported_checksum_algorithm_is_400(node: NodeProcess) -> None:
    digest = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    with client(node) as http:
        location = create(http, 10)
        assert_error(
            patch(http, location, 0, b"x", **{"Upload-Checksum": f"md5 {digest}"}),
            400,
            "invalid_request",
        )


def test_declared_whole_file_sha256_mismatch_is_460_and_nothing_is_kept(node: NodeProcess) -> None:
    data = (DATA / "boxes.tiff").read_bytes()  # a valid slide no other test here uploads
    with client(node) as http:
        location = create(http, len(data), sha256=hashlib.sha256(b"something else").hexdigest())
        body = assert_error(patch(http, location, 0, data), 460, "checksum_mismatch")
        assert "declared" in body["detail"]
        assert http.head(location).status_code == 404
        assert http.head(f"/blobs/{hashlib.sha256(data).hexdigest()}").status_code == 404


def test_more_than_declared_is_413(node: NodeProcess) -> None:
    with client(node) as http:
        assert_error(
            http.post("/uploads", headers={"Upload-Length": str(MAX_UPLOAD + 1)}),
            413,
            "upload_too_large",
        )
        location = create(http, 1000)
        # Announced by Content-Length: refused before reading the body.
        assert_error(patch(http, location, 0, b"x" * 1001), 413, "upload_too_large")

        # Not announced (chunked transfer): refused as soon as the bytes overflow.
        def overflowing() -> Iterator[bytes]:
            yield b"x" * 600
            yield b"y" * 600

        response = http.patch(
            location, content=overflowing(), headers={**OCTETS, "Upload-Offset": "0"}
        )
        assert_error(response, 413, "upload_too_large")
        assert offset_of(http, location) == 0


def test_a_declaration_the_disk_cannot_hold_is_507(node: NodeProcess) -> None:
    with client(node) as http:
        body = assert_error(
            http.post("/uploads", headers={"Upload-Length": str(1 << 43)}),
            507,
            "insufficient_storage",
        )
        assert "reserve" in body["detail"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(
            (DATA / "unopenable.tiff").read_bytes(),
            "Unsupported TIFF compression",
            id="unopenable.tiff",
        ),
        pytest.param(
            (DATA / "unreadable.svs").read_bytes(), "Bogus marker length", id="unreadable.svs"
        ),
        pytest.param(os.urandom(100_000), "not a slide format", id="random-bytes"),
    ],
)
def test_files_that_are_not_slides_are_422_and_nothing_is_kept(
    node: NodeProcess, content: bytes, reason: str
) -> None:
    with client(node) as http:
        location = create(http, len(content))
        body = assert_error(patch(http, location, 0, content), 422, "unsupported_format")
        assert reason in body["detail"]
        assert str(node.data_dir) not in body["detail"]
        assert http.head(location).status_code == 404
        assert http.head(f"/blobs/{hashlib.sha256(content).hexdigest()}").status_code == 404
    upload_id = location.rsplit("/", 1)[1]
    assert not (node.data_dir / "uploads" / upload_id).exists()


def test_tokens_are_required_and_checked(node: NodeProcess) -> None:
    url = f"{node.url}/uploads"
    length = {"Upload-Length": "10", **TUS}
    assert_error(httpx.post(url, headers=length), 401, "token_missing")
    forged = tokens.mint(tokens.new_secret(), ops={Operation.WRITE})
    assert_error(
        httpx.post(url, headers={**length, "Authorization": f"Bearer {forged}"}),
        401,
        "invalid_token",
    )
    expired = tokens.mint(str(node.settings["secret"]), ops={Operation.WRITE}, ttl=-10)
    assert_error(
        httpx.post(url, headers={**length, "Authorization": f"Bearer {expired}"}),
        401,
        "token_expired",
    )
    assert_error(
        httpx.post(url, headers={**length, **token_headers(node, Operation.READ)}), 403, "forbidden"
    )
    with client(node) as http:
        location = create(http, 10)
    assert_error(
        httpx.patch(location, content=b"x", headers={**TUS, **OCTETS, "Upload-Offset": "0"}),
        401,
        "token_missing",
    )
    assert_error(
        httpx.delete(location, headers={**TUS, **token_headers(node, Operation.READ)}),
        403,
        "forbidden",
    )


def test_protocol_violations(node: NodeProcess) -> None:
    with client(node) as http:
        old = http.post("/uploads", headers={"Upload-Length": "10", "Tus-Resumable": "0.2.2"})
        assert_error(old, 412, "unsupported_tus_version")
        assert old.headers["Tus-Version"] == "1.0.0"
        location = create(http, 10)
        assert_error(
            http.patch(location, content=b"x", headers={"Upload-Offset": "0"}),
            415,
            "unsupported_media_type",
        )
        assert_error(http.post("/uploads"), 400, "invalid_request")  # no Upload-Length
        assert_error(
            http.post("/uploads", headers={"Upload-Defer-Length": "1"}), 400, "invalid_request"
        )
        assert_error(http.post("/uploads", headers={"Upload-Length": "-5"}), 400, "invalid_request")
        bad_meta = http.post(
            "/uploads", headers={"Upload-Length": "10", "Upload-Metadata": "sha256 ###"}
        )
        assert_error(bad_meta, 400, "invalid_request")
        bad_sha = http.post(
            "/uploads", headers={"Upload-Length": "10", "Upload-Metadata": metadata(sha256="abc")}
        )
        assert_error(bad_sha, 400, "invalid_request")
        assert_error(http.head("/uploads/..."), 404, "upload_not_found")
        assert http.head("/uploads/..%2F..%2Fblobs").status_code == 404


def test_a_second_writer_on_the_same_upload_is_423(node: NodeProcess) -> None:
    with client(node) as http:
        location = create(http, len(SLIDE))
        sock = raw_partial_patch(node, httpx.URL(location).path, 0, len(SLIDE), SLIDE[:100_000])
        try:
            deadline = time.monotonic() + 10
            while True:  # 409 until the first request holds the upload, then 423
                response = patch(http, location, 10**15, b"")
                if response.status_code == 423 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert_error(response, 423, "upload_conflict")
        finally:
            sock.close()


def test_a_silent_body_times_out_keeps_its_bytes_and_unlocks_the_upload(
    start_node: StartNode,
) -> None:
    idle = 1
    node = start_node(upload_read_idle_seconds=idle)
    sent = 700_000  # not a multiple of the node's 1 MiB write batches
    with client(node) as http:
        location = create(http, len(SLIDE), sha256=SLIDE_SHA)
        # Headers and part of the body, then silence without FIN (a network that died).
        sock = raw_partial_patch(node, httpx.URL(location).path, 0, len(SLIDE), SLIDE[:sent])
        try:
            # Unlocked within the idle timeout (and a margin for a loaded machine), and
            # HEAD reports every byte that was sent.
            settled_at(http, location, sent, timeout=idle + 20)
            # The silent request itself was answered 408 with a JSON body.
            sock.settimeout(20)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b'"body_read_timeout"' in answer
        finally:
            sock.close()
        resumed = patch(http, location, sent, SLIDE[sent:1_500_000])  # no 423
        assert resumed.status_code == 204, resumed.text
        assert int(resumed.headers["Upload-Offset"]) == 1_500_000
    node.kill(signal.SIGKILL)  # after the acknowledgement: the offset must survive
    node.start()
    with client(node) as http:
        assert offset_of(http, location) == 1_500_000
        done = patch(http, location, 1_500_000, SLIDE[1_500_000:])
        assert done.status_code == 204, done.text
        assert done.headers["Slidestore-Blob-Id"] == SLIDE_SHA
    assert blob_bytes(node, SLIDE_SHA) == SLIDE


def test_a_silent_body_with_a_chunk_checksum_keeps_the_last_verified_offset(
    start_node: StartNode,
) -> None:
    node = start_node(upload_read_idle_seconds=1)
    with client(node) as http:
        location = create(http, len(SLIDE))
        assert patch(http, location, 0, SLIDE[:300_000]).status_code == 204
        chunk = SLIDE[300_000:900_000]
        digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
        sock = socket.create_connection(("127.0.0.1", node.port))
        head = "".join(
            f"{k}: {v}\r\n"
            for k, v in {
                "Host": f"127.0.0.1:{node.port}",
                **writer_headers(node, **OCTETS),
                "Upload-Offset": "300000",
                "Upload-Checksum": f"sha256 {digest}",
                "Content-Length": str(len(chunk)),
            }.items()
        )
        path = httpx.URL(location).path
        sock.sendall(f"PATCH {path} HTTP/1.1\r\n{head}\r\n".encode() + chunk[:200_000])
        try:
            # Locked while the chunk is being received...
            eventually_locked(http, location)
            # ...then unlocked; the partial chunk cannot be checked against its checksum,
            # so the offset stays at the last verified point.
            assert settled_offset(http, location, timeout=21) == 300_000
        finally:
            sock.close()


def test_one_token_holds_a_bounded_number_of_sessions_and_bytes(start_node: StartNode) -> None:
    node = start_node(upload_max_sessions_per_token=3)
    secret = str(node.settings["secret"])
    with client(node) as http:
        locations = [create(http, 1000) for _ in range(3)]
        refused = http.post("/uploads", headers={"Upload-Length": "1000"})
        assert_error(refused, 429, "upload_quota")
        assert len(upload_dirs(node)) == 3
        # Deleting one frees its place; another token's quota is its own.
        assert http.delete(locations[0]).status_code == 204
        create(http, 1000)
        other = tokens.mint(secret, ops={Operation.WRITE}, ttl=600)
        response = httpx.post(
            f"{node.url}/uploads",
            headers={**TUS, "Authorization": f"Bearer {other}", "Upload-Length": "1000"},
        )
        assert response.status_code == 201, response.text
    # A token minted for a size holds no more bytes than that, over all its sessions.
    sized = tokens.mint(secret, ops={Operation.WRITE}, size=5000, ttl=600)
    with httpx.Client(
        base_url=node.url, headers={**TUS, "Authorization": f"Bearer {sized}"}, timeout=60
    ) as http:
        create(http, 3000)
        assert_error(http.post("/uploads", headers={"Upload-Length": "3000"}), 429, "upload_quota")
        create(http, 2000)
    # An upload-only token (a placement's grant) is narrower: one session of its size.
    grant = tokens.mint(secret, ops={Operation.UPLOAD}, size=1000, ttl=600)
    with httpx.Client(
        base_url=node.url, headers={**TUS, "Authorization": f"Bearer {grant}"}, timeout=60
    ) as http:
        create(http, 1000)
        assert_error(http.post("/uploads", headers={"Upload-Length": "1000"}), 403, "grant_used")


def test_abandoned_uploads_expire(start_node: StartNode) -> None:
    node = start_node(upload_expiry_seconds=1)
    with client(node) as http:
        location = create(http, len(SLIDE))
        response = patch(http, location, 0, SLIDE[:1000])
        expires = parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp()
        assert time.time() - 2 < expires < time.time() + 3
        time.sleep(2.1)
        # 410 if the request finds it expired first, 404 once the node's own expiry pass
        # (every half expiry period) removed it.
        assert http.head(location).status_code in (404, 410)
        assert_error(patch(http, location, 1000, SLIDE[1000:2000]), 404, "upload_not_found")
    assert upload_dirs(node) == []


def test_an_upload_nobody_comes_back_to_is_removed_by_the_node_itself(
    start_node: StartNode,
) -> None:
    node = start_node(upload_expiry_seconds=1)
    with client(node) as http:
        location = create(http, len(SLIDE))
        assert patch(http, location, 0, SLIDE[:1000]).status_code == 204
    assert len(upload_dirs(node)) == 1
    deadline = time.monotonic() + 10
    while upload_dirs(node) and time.monotonic() < deadline:
        time.sleep(0.1)  # no request touches the upload: only the background pass can
    assert upload_dirs(node) == []


# -- memory ---------------------------------------------------------------------------

BIG_UPLOAD_BYTES = int(os.environ.get("SLIDESTORE_BIG_UPLOAD_BYTES", 300 * MB))
"""300 MiB in the default suite; ``nox -s durability`` runs 5 GiB."""
RSS_LIMIT = 200 * MB
FILLER = os.urandom(MB)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def padded_slide(total: int) -> Iterator[bytes]:
    """A real slide followed by filler up to ``total`` bytes: OpenSlide reads a TIFF by
    its offsets, so trailing bytes keep it a valid slide of any size, made on the fly."""
    yield SLIDE
    filler = FILLER
    remaining = total - len(SLIDE)
    while remaining > 0:
        piece = filler[: min(MB, remaining)]
        remaining -= len(piece)
        yield piece


def test_memory_stays_flat_while_a_large_slide_streams_in_and_out(node: NodeProcess) -> None:
    expected = hashlib.sha256()
    for piece in padded_slide(BIG_UPLOAD_BYTES):
        expected.update(piece)
    blob_id = expected.hexdigest()
    before = peak_rss(node.pid)

    started = time.monotonic()
    with client(node) as http:
        location = create(http, BIG_UPLOAD_BYTES, sha256=blob_id)
        response = http.patch(
            location,
            content=padded_slide(BIG_UPLOAD_BYTES),
            headers={**OCTETS, "Upload-Offset": "0", "Content-Length": str(BIG_UPLOAD_BYTES)},
            timeout=600,
        )
        assert response.status_code == 204, response.text
        assert response.headers["Slidestore-Blob-Id"] == blob_id
        upload_seconds = time.monotonic() - started
        after_upload = peak_rss(node.pid)

        received = hashlib.sha256()
        with http.stream("GET", f"/blobs/{blob_id}", timeout=600) as download:
            assert download.status_code == 200
            for chunk in download.iter_bytes():
                received.update(chunk)
        assert received.hexdigest() == blob_id
        after_download = peak_rss(node.pid)
        assert http.delete(f"/blobs/{blob_id}").status_code == 204

    print(
        f"\n{BIG_UPLOAD_BYTES / MB:.0f} MiB: upload {upload_seconds:.1f}s "
        f"({BIG_UPLOAD_BYTES / MB / upload_seconds:.0f} MiB/s); node peak RSS "
        f"{before / MB:.0f} MiB at start, {after_upload / MB:.0f} MiB after upload, "
        f"{after_download / MB:.0f} MiB after download"
    )
    assert after_upload < RSS_LIMIT
    assert after_download < RSS_LIMIT
