"""The node's ledger (``node/ledger.py``): what it keeps for a coordinator's rebuild."""

from __future__ import annotations

import time
from pathlib import Path

from slidestore.cluster.wire import BlobPolicy, LedgerUpdate, Tombstone
from slidestore_server.node.ledger import DEFAULT_TOMBSTONE_SECONDS, Ledger

A, B, C = "a" * 64, "b" * 64, "c" * 64


def policy(blob_id: str, changed_at: float, target: int = 2) -> BlobPolicy:
    return BlobPolicy(
        blob_id=blob_id,
        target=target,
        pinned=False,
        expires_at=changed_at + 7 * 86400,
        created_at=changed_at,
        changed_at=changed_at,
        owners=("portal",),
    )


def test_policies_and_tombstones_are_kept_and_reported(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    assert ledger.policies([A]) == () and ledger.tombstones() == ()
    now = time.time()
    buried = ledger.keep(
        LedgerUpdate(
            seq=5,
            policies=(policy(A, now), policy(B, now, target=3)),
            tombstones=(Tombstone(blob_id=C, deleted_at=now, size=10),),
        )
    )
    assert buried == [C]
    # Only the blobs asked for (those the node holds), as they were sent.
    assert ledger.policies([A, C]) == (policy(A, now),)
    assert ledger.tombstones() == (Tombstone(blob_id=C, deleted_at=now, size=10),)
    # Another instance (another worker process, a restart) reads the same.
    assert Ledger(tmp_path / "ledger").policies([B]) == (policy(B, now, target=3),)


def test_a_tombstone_drops_the_policy_and_a_later_policy_drops_the_tombstone(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    ledger.keep(LedgerUpdate(seq=1, policies=(policy(A, 100.0),)))
    ledger.keep(LedgerUpdate(seq=2, tombstones=(Tombstone(blob_id=A, deleted_at=200.0),)))
    assert ledger.policies([A]) == ()
    # A policy from before the deletion (a late resend) leaves the tombstone alone...
    ledger.keep(LedgerUpdate(seq=3, policies=(policy(A, 150.0),)))
    assert [t.blob_id for t in ledger.tombstones(now=300.0)] == [A]
    # ...one set after it (the content was stored again) makes it stale.
    ledger.keep(LedgerUpdate(seq=4, policies=(policy(A, 250.0),)))
    assert ledger.tombstones(now=300.0) == ()
    assert ledger.policies([A]) == (policy(A, 250.0),)


def test_tombstones_expire_after_the_period_the_coordinator_sets(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    assert ledger.tombstone_seconds == DEFAULT_TOMBSTONE_SECONDS
    now = time.time()
    ledger.keep(
        LedgerUpdate(
            seq=1,
            tombstones=(
                Tombstone(blob_id=A, deleted_at=now - 50),
                Tombstone(blob_id=B, deleted_at=now - 5),
            ),
        )
    )
    assert len(ledger.tombstones(now=now)) == 2
    ledger.set_tombstone_seconds(10.0)
    assert Ledger(tmp_path / "ledger").tombstone_seconds == 10.0
    assert [t.blob_id for t in ledger.tombstones(now=now)] == [B]
    assert not (tmp_path / "ledger" / "tombstones" / A).exists()  # removed, not just hidden


def test_a_torn_or_foreign_file_counts_as_no_entry(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    ledger.keep(LedgerUpdate(seq=1, policies=(policy(A, 1.0),)))
    (tmp_path / "ledger" / "policies" / A).write_bytes(b'{"blob_id": "aaa')
    (tmp_path / "ledger" / "tombstones" / "notes.txt").write_text("hello")
    (tmp_path / "ledger" / "tombstones" / B).write_bytes(b"\x00\x01")
    assert ledger.policies([A]) == ()
    assert ledger.tombstones() == ()
