"""Who may use an upload session, against real node processes: an ``upload`` grant makes
one session (also across ``kill -9``), a session belongs to the token that made it (and
to renewals of that token), sessions nobody writes to stop holding disk soon, the
free space a node reports is net of what its sessions were promised, and error bodies
and files keep the node's disk to itself."""

from __future__ import annotations

import base64
import hashlib
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from slidestore import tokens
from slidestore.cluster.wire import Heartbeat
from slidestore.testing.paths import shared_data_dir
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess
from slidestore_server.testing_coordinator import RecordingCoordinator

SLIDE = (shared_data_dir() / "CMU-1-Small-Region.svs").read_bytes()
SLIDE_SHA = hashlib.sha256(SLIDE).hexdigest()
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
MB = 1 << 20
StartNode = Callable[..., NodeProcess]


def secret_of(node: NodeProcess) -> str:
    return str(node.settings["secret"])


def grant(
    node: NodeProcess,
    *,
    size: int = len(SLIDE),
    blob: str = SLIDE_SHA,
    ttl: float = 600,
    nonce: str | None = None,
) -> str:
    """What a placement hands out: one upload of ``size`` bytes of ``blob``."""
    return tokens.mint(
        secret_of(node), ops={Operation.UPLOAD}, blob=blob, size=size, ttl=ttl, nonce=nonce
    )


def nonce_of(token: str) -> str:
    """What the node records a grant under (the payload is readable without the secret)."""
    return _capability(token).nonce


def _capability(token: str) -> tokens.Capability:
    payload = token.split(".")[0]
    return msgspec.json.decode(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)), type=tokens.Capability
    )


def writer(node: NodeProcess) -> str:
    return tokens.mint(secret_of(node), ops={Operation.WRITE}, ttl=600)


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **TUS, **extra}


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def post(node: NodeProcess, token: str, length: int = len(SLIDE), **extra: str) -> httpx.Response:
    headers = {"Upload-Length": str(length), "Upload-Metadata": metadata(sha256=SLIDE_SHA)}
    return httpx.post(f"{node.url}/uploads", headers=bearer(token, **{**headers, **extra}))


def create(node: NodeProcess, token: str, length: int = len(SLIDE)) -> str:
    answer = post(node, token, length)
    assert answer.status_code == 201, answer.text
    return str(answer.headers["Location"])


def head(location: str, token: str) -> httpx.Response:
    return httpx.head(location, headers=bearer(token))


def patch(location: str, token: str, offset: int, body: bytes) -> httpx.Response:
    return httpx.patch(
        location, content=body, headers=bearer(token, **OCTETS, **{"Upload-Offset": str(offset)})
    )


def delete(location: str, token: str) -> httpx.Response:
    return httpx.delete(location, headers=bearer(token))


def error_of(response: httpx.Response) -> str:
    assert response.headers["Content-Type"] == "application/json", response.headers
    return str(response.json()["error"])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data_dir = tmp_path_factory.mktemp("grants-node") / "data"
    with NodeProcess(data_dir, settings={"secret": tokens.new_secret()}) as process:
        yield process


# -- A: an upload grant makes one session ----------------------------------------------


def test_an_upload_grant_creates_one_session(node: NodeProcess) -> None:
    token = grant(node)
    location = create(node, token)
    second = post(node, token)
    assert second.status_code == 403, second.text
    assert error_of(second) == "grant_used"
    # Also once its session is gone: a grant is one upload, not one live session.
    assert delete(location, token).status_code == 204
    assert error_of(post(node, token)) == "grant_used"
    # The grant's own limits still hold for a fresh grant: another size is refused.
    assert post(node, grant(node), length=len(SLIDE) - 1).status_code == 403
    # A writer (an uploader client, not a grant) is not single use.
    other = writer(node)
    for _ in range(2):
        assert delete(create(node, other), other).status_code == 204


def test_a_used_grant_stays_used_after_kill_9(start_node: StartNode) -> None:
    node = start_node()
    token = grant(node, ttl=600)
    location = create(node, token)
    record = node.data_dir / "uploads" / "grants" / nonce_of(token)
    assert record.is_file()
    node.kill(signal.SIGKILL)
    node.start()
    assert error_of(post(node, token)) == "grant_used"
    # A renewal (same nonce, later expiry) is the same grant: it continues the session
    # it made and makes no other.
    renewed = grant(node, ttl=3600, nonce=nonce_of(token))
    assert error_of(post(node, renewed)) == "grant_used"
    assert patch(location, renewed, 0, SLIDE).status_code == 204
    assert head(location, renewed).headers["Slidestore-Blob-Id"] == SLIDE_SHA


# -- B: a session belongs to the token that made it -------------------------------------


def test_only_the_creating_token_and_admin_see_a_session(node: NodeProcess) -> None:
    mine = writer(node)
    location = create(node, mine)
    assert patch(location, mine, 0, SLIDE[:1000]).status_code == 204
    for stranger in (writer(node), grant(node)):
        for refused in (
            head(location, stranger),
            patch(location, stranger, 1000, SLIDE[1000:2000]),
            delete(location, stranger),
        ):
            assert refused.status_code == 404, refused.text
            if refused.request.method != "HEAD":
                assert error_of(refused) == "upload_not_found"
    assert int(head(location, mine).headers["Upload-Offset"]) == 1000
    operator = tokens.mint(secret_of(node), ops={Operation.ADMIN}, ttl=600)
    assert int(head(location, operator).headers["Upload-Offset"]) == 1000
    assert delete(location, operator).status_code == 204


def test_a_renewed_grant_finishes_the_upload_after_the_first_expired(node: NodeProcess) -> None:
    first = grant(node, ttl=2)
    location = create(node, first)
    assert patch(location, first, 0, SLIDE[:100_000]).status_code == 204
    time.sleep(3.1)
    assert head(location, first).status_code == 401  # the expired token itself
    renewed = grant(node, ttl=600, nonce=nonce_of(first))
    assert int(head(location, renewed).headers["Upload-Offset"]) == 100_000
    # A fresh grant for the same content is another grant: not this session's.
    assert head(location, grant(node)).status_code == 404
    done = patch(location, renewed, 100_000, SLIDE[100_000:])
    assert done.status_code == 204, done.text
    assert done.headers["Slidestore-Blob-Id"] == SLIDE_SHA


def test_the_sdk_uploads_with_one_grant(node: NodeProcess, tmp_path: Path) -> None:
    import asyncio

    from slidestore.client.tus import TusOptions, TusUpload

    path = tmp_path / "slide.svs"
    path.write_bytes(SLIDE)

    async def run() -> str:
        async with httpx.AsyncClient() as client:
            upload = TusUpload(
                client,
                f"{node.url}/uploads",
                grant(node),
                path,
                size=len(SLIDE),
                sha256=SLIDE_SHA,
                options=TusOptions(chunk_size=400_000),
            )
            return await upload.run()

    assert asyncio.run(run()) == SLIDE_SHA


# -- C: the reported free space is net of promises -------------------------------------


def test_reported_free_space_is_net_of_open_sessions(start_node: StartNode) -> None:
    capacity = 200 * MB
    with RecordingCoordinator(secret=tokens.new_secret(), heartbeat_interval=0.2) as coordinator:
        node = start_node(
            coordinator_url=coordinator.url,
            capacity_bytes=capacity,
            reserve_bytes=0,
            secret=coordinator.secret,
        )

        def reported_after(at: float) -> int:
            seen = coordinator.wait_for(
                lambda r: isinstance(r.message, Heartbeat) and r.at > at, timeout=10
            )
            return seen.message.report.free_bytes

        assert reported_after(time.monotonic()) == capacity
        token = writer(node)
        location = create(node, token, length=150 * MB)
        assert reported_after(time.monotonic()) == capacity - 150 * MB
        # What another upload may still be promised is what the coordinator was told.
        refused = post(node, writer(node), length=capacity - 150 * MB + 1)
        assert refused.status_code == 507, refused.text
        assert delete(location, token).status_code == 204
        assert reported_after(time.monotonic()) == capacity


# -- D: sessions nobody writes to stop holding disk soon; metadata is bounded -----------


def test_a_session_without_bytes_expires_after_the_idle_expiry(start_node: StartNode) -> None:
    node = start_node(upload_idle_expiry_seconds=1)
    token = writer(node)
    idle = create(node, token)
    written = create(node, token)
    assert patch(written, token, 0, SLIDE[:1000]).status_code == 204
    uploads = node.data_dir / "uploads"
    idle_dir = uploads / idle.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    while idle_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # nobody asks: the node's own expiry pass removes it
    assert not idle_dir.exists()
    assert head(idle, token).status_code == 404
    # Bytes arrived: the session keeps the (24 h) expiry of an upload in progress.
    answer = head(written, token)
    assert answer.status_code == 200
    assert int(answer.headers["Upload-Offset"]) == 1000


def test_upload_metadata_is_bounded(node: NodeProcess) -> None:
    token = writer(node)
    filename = base64.b64encode(b"x" * 2000).decode()
    fits = post(node, token, **{"Upload-Metadata": f"filename {filename}"})
    assert fits.status_code == 201, fits.text
    assert delete(fits.headers["Location"], token).status_code == 204
    huge = base64.b64encode(b"x" * (2 * MB)).decode()
    for value in (huge, base64.b64encode(b"x" * 3100).decode()):
        refused = post(node, token, **{"Upload-Metadata": f"filename {value}"})
        assert refused.status_code == 400, refused.status_code
        assert error_of(refused) == "invalid_request"


# -- G: files are the node's own ------------------------------------------------------


def test_data_directory_blobs_and_uploads_are_private(start_node: StartNode) -> None:
    node = start_node()
    token = writer(node)
    location = create(node, token)
    assert patch(location, token, 0, SLIDE[:1000]).status_code == 204
    session = node.data_dir / "uploads" / location.rsplit("/", 1)[1]
    done = patch(location, token, 1000, SLIDE[1000:])
    assert done.status_code == 204, done.text
    blob = node.data_dir / "blobs" / SLIDE_SHA[:2] / SLIDE_SHA[2:4] / SLIDE_SHA

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(node.data_dir) == 0o700
    for directory in ("blobs", "uploads", "uploads/grants"):
        assert mode(node.data_dir / directory) == 0o700, directory
    assert mode(blob) == 0o400
    assert mode(blob.parent) == 0o700
    for name in ("state.json", "lock"):
        assert mode(session / name) == 0o600, name
    grant_token = grant(node, size=10, blob=tokens.ALL_BLOBS)
    create(node, grant_token, length=10)
    assert mode(node.data_dir / "uploads" / "grants" / nonce_of(grant_token)) == 0o600


# -- F: error bodies name blobs and uploads, not paths ---------------------------------


def test_error_bodies_do_not_name_server_paths(start_node: StartNode, tmp_path: Path) -> None:
    from slidestore.blobs import BlobStore

    data_dir = tmp_path / "node-data"
    not_a_slide = BlobStore(data_dir / "blobs", reserve_bytes=0).put(b"not a slide at all" * 100)
    node = NodeProcess(data_dir, settings={"secret": tokens.new_secret()}).start()
    try:
        reader = tokens.mint(secret_of(node), ops={Operation.READ}, ttl=600)
        answers = [
            httpx.get(f"{node.url}/slides/{not_a_slide}/info", headers=bearer(reader)),
            httpx.get(f"{node.url}/slides/{not_a_slide}.dzi", headers=bearer(reader)),
        ]
        token = writer(node)
        location = create(node, token, length=2000)
        answers.append(patch(location, token, 0, b"\0" * 2000))  # not a slide: 422
        for answer in answers:
            assert answer.status_code >= 400, answer.text
            assert str(data_dir) not in answer.text and str(data_dir.resolve()) not in answer.text
            assert answer.json()["detail"]
        assert not_a_slide in answers[0].json()["detail"]
    finally:
        node.kill(signal.SIGKILL)
