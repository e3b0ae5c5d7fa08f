"""Who may use an upload session, in the library: owners, single-use grants (their
durable record and when it is let go) and the short expiry of sessions nobody writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from slidestore.blobs import BlobStore
from slidestore.errors import GrantUsed, InvalidRequest, UploadExpired, UploadNotFound
from slidestore.testing.clock import ManualClock as Clock
from slidestore.uploads import UploadManager
from slidestore.uploads.manager import GRANTS_DIR


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def uploads(tmp_path: Path, clock: Clock) -> UploadManager:
    return manager(tmp_path, clock)


def manager(tmp_path: Path, clock: Clock) -> UploadManager:
    return UploadManager(
        tmp_path / "uploads",
        BlobStore(tmp_path / "blobs", reserve_bytes=0),
        expiry_seconds=3600,
        idle_expiry_seconds=60,
        max_size=1 << 30,
        validate=None,
        clock=clock,
    )


def test_a_session_is_seen_only_by_its_owner_or_an_operator(uploads: UploadManager) -> None:
    info = uploads.create(10, owner="nonce-of-alice")
    assert uploads.info(info.id, "nonce-of-alice").id == info.id
    assert uploads.info(info.id).id == info.id  # no owner named: an operator
    for call in (
        lambda: uploads.info(info.id, "nonce-of-bob"),
        lambda: uploads.open_append(info.id, 0, None, "nonce-of-bob"),
        lambda: uploads.finish(info.id, "nonce-of-bob"),
        lambda: uploads.terminate(info.id, "nonce-of-bob"),
    ):
        with pytest.raises(UploadNotFound):
            call()
    with uploads.open_append(info.id, 0, None, "nonce-of-alice") as appender:
        appender.write(b"0123456789")
        assert appender.commit().offset == 10


def test_a_single_use_grant_makes_one_session_across_restarts(tmp_path: Path, clock: Clock) -> None:
    uploads = manager(tmp_path, clock)
    first = uploads.create(10, owner="grant-nonce-1", single_use_until=clock.now + 600)
    again = manager(tmp_path, clock)  # a restart
    with pytest.raises(GrantUsed):
        again.create(10, owner="grant-nonce-1", single_use_until=clock.now + 3600)
    # Not single use: the same nonce as an uploader's writer token.
    again.create(10, owner="writer-nonce-1")
    again.create(10, owner="writer-nonce-1")
    record = tmp_path / "uploads" / GRANTS_DIR / "grant-nonce-1"
    again.append(first.id, 0, [b"01234"])  # bytes arrived: the session lives an hour
    # Kept while the grant is valid, and while its session exists after that.
    clock.now += 3000
    again.expire()
    assert record.exists() and again.info(first.id, "grant-nonce-1").offset == 5
    again.terminate(first.id)
    again.expire()
    assert not record.exists()  # expired grant, no session: nothing left to refuse


def test_a_grant_that_made_no_session_is_not_used(uploads: UploadManager) -> None:
    with pytest.raises(InvalidRequest):
        uploads.create(-1, owner="grant-nonce-2", single_use_until=2e6)
    uploads.create(10, owner="grant-nonce-2", single_use_until=2e6)
    with pytest.raises(InvalidRequest):  # a nonce that cannot name a file
        uploads.create(10, owner="../x", single_use_until=2e6)


def test_sessions_without_bytes_expire_after_the_idle_expiry(
    uploads: UploadManager, clock: Clock
) -> None:
    idle = uploads.create(10, owner="o-1")
    written = uploads.create(10, owner="o-1")
    assert idle.expires_at == clock.now + 60
    assert uploads.append(written.id, 0, [b"01234"]).expires_at == clock.now + 3600
    assert uploads.blobs.space.promised_bytes == 15
    clock.now += 61
    assert uploads.expire() == [idle.id]
    with pytest.raises(UploadNotFound):
        uploads.info(idle.id)
    assert uploads.info(written.id).offset == 5
    assert uploads.blobs.space.promised_bytes == 5
    clock.now += 3600
    with pytest.raises(UploadExpired):
        uploads.info(written.id)
