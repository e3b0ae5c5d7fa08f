"""tus concatenation against real node processes: partial uploads sent in parallel, a
final upload that joins them into the blob, what an ``upload`` grant allows along the
way, and parts that survive ``kill -9``."""

from __future__ import annotations

import base64
import hashlib
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from slidestore import tokens
from slidestore.testing.paths import shared_data_dir
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

SLIDE = (shared_data_dir() / "CMU-1-Small-Region.svs").read_bytes()
SLIDE_SHA = hashlib.sha256(SLIDE).hexdigest()
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data_dir = tmp_path_factory.mktemp("concat-node") / "data"
    with NodeProcess(data_dir, settings={"secret": tokens.new_secret()}) as process:
        yield process


def grant(node: NodeProcess, size: int = len(SLIDE), blob: str = SLIDE_SHA) -> str:
    """What a placement hands out: one upload of ``size`` bytes of ``blob``."""
    secret = str(node.settings["secret"])
    return tokens.mint(secret, ops={Operation.UPLOAD}, blob=blob, size=size, ttl=600)


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **TUS, **extra}


def sha_metadata(digest: str = SLIDE_SHA) -> str:
    return (
        "filename "
        + base64.b64encode(b"s.svs").decode()
        + ",sha256 "
        + (base64.b64encode(digest.encode()).decode())
    )


def split(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i : i + step] for i in range(0, len(data), step)]


def new_part(node: NodeProcess, token: str, length: int) -> httpx.Response:
    return httpx.post(
        f"{node.url}/uploads",
        headers=bearer(token, **{"Upload-Length": str(length), "Upload-Concat": "partial"}),
    )


def send_part(node: NodeProcess, token: str, piece: bytes) -> str:
    created = new_part(node, token, len(piece))
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    sent = httpx.patch(
        location, content=piece, headers=bearer(token, **OCTETS, **{"Upload-Offset": "0"})
    )
    assert sent.status_code == 204, sent.text
    assert sent.headers["Upload-Offset"] == str(len(piece))
    assert "Slidestore-Blob-Id" not in sent.headers  # a part is never a blob
    return str(location)


def final(node: NodeProcess, token: str, locations: list[str], **extra: str) -> httpx.Response:
    headers = {"Upload-Concat": "final;" + " ".join(locations), "Upload-Metadata": sha_metadata()}
    return httpx.post(f"{node.url}/uploads", headers=bearer(token, **{**headers, **extra}))


def error_of(response: httpx.Response) -> str:
    assert response.headers["Content-Type"] == "application/json", response.headers
    return str(response.json()["error"])


def test_options_advertise_concatenation(node: NodeProcess) -> None:
    answer = httpx.options(f"{node.url}/uploads")
    assert "concatenation" in answer.headers["Tus-Extension"].split(",")


def test_parts_sent_in_parallel_become_the_blob(node: NodeProcess) -> None:
    token = grant(node)
    pieces = split(SLIDE, 4)
    with ThreadPoolExecutor(4) as pool:
        locations = list(pool.map(lambda piece: send_part(node, token, piece), pieces))
    part = httpx.head(locations[1], headers=bearer(token))
    assert part.headers["Upload-Concat"] == "partial"
    assert part.headers["Upload-Offset"] == part.headers["Upload-Length"] == str(len(pieces[1]))
    # Relative URLs name the parts as well as absolute ones.
    names = [httpx.URL(locations[0]).path, *locations[1:]]
    joined = final(node, token, names)
    assert joined.status_code == 201, joined.text
    assert joined.headers["Slidestore-Blob-Id"] == SLIDE_SHA
    assert joined.headers["Upload-Length"] == str(len(SLIDE))
    assert joined.headers["Upload-Concat"].startswith("final;")
    reader = tokens.mint(str(node.settings["secret"]), ops={Operation.DOWNLOAD}, ttl=60)
    stored = httpx.get(f"{node.url}/blobs/{SLIDE_SHA}", headers=bearer(reader))
    assert stored.content == SLIDE
    # The parts were consumed, and the final takes no bytes of its own.
    assert httpx.head(locations[0], headers=bearer(token)).status_code == 404
    refused = httpx.patch(
        joined.headers["Location"],
        content=b"x",
        headers=bearer(token, **OCTETS, **{"Upload-Offset": str(len(SLIDE))}),
    )
    assert refused.status_code == 403


def test_a_grant_allows_parts_of_its_one_upload_and_no_more(node: NodeProcess) -> None:
    token = grant(node)
    # A part larger than the grant, or parts that together exceed it, are refused.
    assert new_part(node, token, len(SLIDE) + 1).status_code == 403
    half = split(SLIDE, 2)
    first = send_part(node, token, half[0])
    too_much = new_part(node, token, len(SLIDE))
    assert too_much.status_code == 429 and error_of(too_much) == "upload_quota"
    second = send_part(node, token, half[1])
    # A final of another content than the grant's is refused before any byte is copied.
    other = final(node, token, [first, second], **{"Upload-Metadata": sha_metadata("0" * 64)})
    assert other.status_code == 403
    # Another token does not see the parts at all.
    stranger = grant(node)
    assert final(node, stranger, [first, second]).status_code == 404
    assert final(node, token, [first, second]).status_code == 201
    # The final used the grant: no more parts, no second final.
    used = new_part(node, token, 10)
    assert used.status_code == 403 and error_of(used) == "grant_used"


def test_malformed_finals_are_400_with_a_reason(node: NodeProcess) -> None:
    token = grant(node)
    location = send_part(node, token, SLIDE)
    for concat, extra in (
        ("final;", {}),
        ("sideways", {}),
        (f"final;{location} {location}", {}),
        (f"final;{location}", {"Upload-Length": str(len(SLIDE))}),
    ):
        answer = httpx.post(
            f"{node.url}/uploads", headers=bearer(token, **{"Upload-Concat": concat, **extra})
        )
        assert answer.status_code == 400, (concat, answer.text)
        assert error_of(answer) == "invalid_request"
    open_part = new_part(node, grant(node), 100)
    assert open_part.status_code == 201


def test_a_part_that_is_still_open_cannot_be_joined(node: NodeProcess) -> None:
    token = grant(node)
    half = split(SLIDE, 2)
    first = send_part(node, token, half[0])
    second = new_part(node, token, len(half[1])).headers["Location"]
    refused = final(node, token, [first, second])
    assert refused.status_code == 400 and "of its" in refused.json()["detail"]


def test_parts_survive_kill_9_and_join_after_the_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("concat-kill") / "data"
    with NodeProcess(data_dir, settings={"secret": tokens.new_secret()}) as node:
        token = grant(node)
        locations = [send_part(node, token, piece) for piece in split(SLIDE, 3)]
        node.kill(signal.SIGKILL)
        node.start()
        joined = final(node, token, locations)
        assert joined.status_code == 201, joined.text
        assert joined.headers["Slidestore-Blob-Id"] == SLIDE_SHA
