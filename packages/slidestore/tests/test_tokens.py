"""Signed capabilities."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slidestore import errors, tokens
from slidestore.tokens import Operation

BLOB = "ab" * 32


def test_round_trip_and_scope() -> None:
    token = tokens.mint("s3cret", ops={Operation.READ}, blob=BLOB, ttl=60, subject="viewer")
    cap = tokens.verify("s3cret", token)
    assert cap.blob == BLOB and cap.sub == "viewer"
    cap.require(Operation.READ, BLOB)
    with pytest.raises(errors.Forbidden, match="does not grant write"):
        cap.require(Operation.WRITE, BLOB)
    with pytest.raises(errors.Forbidden):
        cap.require(Operation.READ, "cd" * 32)


def test_admin_and_wildcard() -> None:
    cap = tokens.verify("k", tokens.mint("k", ops={Operation.ADMIN}, ttl=60))
    for op in Operation:
        if op is not Operation.NODE:
            cap.require(op, BLOB)


def test_admin_does_not_make_a_node() -> None:
    """A leaked admin token must not let a stranger join the cluster as a storage node."""
    admin = tokens.verify("k", tokens.mint("k", ops={Operation.ADMIN}, ttl=60))
    with pytest.raises(errors.Forbidden, match="does not grant node"):
        admin.require(Operation.NODE)
    node = tokens.verify("k", tokens.mint("k", ops={Operation.NODE}, ttl=60))
    node.require(Operation.NODE)
    with pytest.raises(errors.Forbidden):
        node.require(Operation.READ, BLOB)  # a node's identity reads nothing


def test_read_is_not_download() -> None:
    """A viewer's read token reads tiles, not the raw file (which holds the label)."""
    cap = tokens.verify("k", tokens.mint("k", ops={Operation.READ}, blob=BLOB, ttl=60))
    cap.require(Operation.READ, BLOB)
    for wider in (Operation.DOWNLOAD, Operation.LABELS, Operation.UPLOAD, Operation.WRITE):
        with pytest.raises(errors.Forbidden):
            cap.require(wider, BLOB)


def test_an_upload_grant_is_bound_and_narrow() -> None:
    token = tokens.mint("k", ops={Operation.UPLOAD}, blob=BLOB, size=1234, ttl=60)
    cap = tokens.verify("k", token)
    assert cap.is_upload_grant and cap.size == 1234 and cap.blob == BLOB
    cap.require(Operation.UPLOAD, BLOB)
    for wider in (Operation.WRITE, Operation.READ, Operation.DOWNLOAD, Operation.DELETE):
        with pytest.raises(errors.Forbidden):
            cap.require(wider, BLOB)
    writer = tokens.verify("k", tokens.mint("k", ops={Operation.WRITE}, ttl=60))
    assert not writer.is_upload_grant


def test_renewal_keeps_the_nonce() -> None:
    first = tokens.verify("k", tokens.mint("k", ops={Operation.UPLOAD}, size=1, ttl=60))
    again = tokens.verify(
        "k", tokens.mint("k", ops={Operation.UPLOAD}, size=1, ttl=600, nonce=first.nonce)
    )
    assert again.nonce == first.nonce and again.exp > first.exp
    other = tokens.verify("k", tokens.mint("k", ops={Operation.UPLOAD}, size=1, ttl=60))
    assert other.nonce != first.nonce and len(other.nonce) == 16


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("", "is not set"),
        ("dev-secret-change-me", "publicly known"),
        ("demo-secret", "publicly known"),
        ("a-short-secret-of-thirty-two-chars", "at least 43"),
        ("ab" * 40, "too few distinct"),
    ],
)
def test_weak_secrets_are_refused_with_the_fix(secret: str, reason: str) -> None:
    with pytest.raises(tokens.WeakSecret, match=reason) as refused:
        tokens.check_secret(secret, "SLIDESTORE_SECRET")
    assert "SLIDESTORE_SECRET" in str(refused.value)
    assert "slidestore-server secret" in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_a_new_secret_passes_and_differs() -> None:
    first, second = tokens.new_secret(), tokens.new_secret()
    assert tokens.check_secret(first) == first and first != second
    assert len(first) >= tokens.MIN_SECRET_CHARS


def test_expired_token() -> None:
    token = tokens.mint("k", ops={Operation.READ}, ttl=10, now=1000)
    assert tokens.verify("k", token, now=1005).exp == 1010
    with pytest.raises(errors.TokenExpired):
        tokens.verify("k", token, now=1011)


def test_wrong_secret_and_tampering() -> None:
    token = tokens.mint("k", ops={Operation.READ}, blob=BLOB, ttl=60)
    with pytest.raises(errors.InvalidToken, match="does not verify"):
        tokens.verify("other", token)
    payload, signature = token.split(".")
    forged = tokens.mint("attacker", ops={Operation.ADMIN}, ttl=60).split(".")[0]
    with pytest.raises(errors.InvalidToken):
        tokens.verify("k", f"{forged}.{signature}")
    with pytest.raises(errors.InvalidToken):
        tokens.verify("k", payload)


@given(st.text(max_size=300))
def test_garbage_is_always_invalid_token(garbage: str) -> None:
    with pytest.raises(errors.InvalidToken):
        tokens.verify("k", garbage)


def test_verifier_remembers_valid_tokens_but_still_checks_expiry() -> None:
    verifier = tokens.Verifier("s3cret", max_entries=2)
    token = tokens.mint("s3cret", ops={Operation.READ}, ttl=10, now=1000.0)
    assert verifier.verify(token, now=1001.0).exp == 1010
    assert verifier.verify(token, now=1005.0).exp == 1010  # from memory
    with pytest.raises(errors.TokenExpired):
        verifier.verify(token, now=1011.0)
    forged = tokens.mint("other", ops={Operation.ADMIN}, ttl=10, now=1000.0)
    for _ in range(2):  # a forged token is never remembered: refused every time
        with pytest.raises(errors.InvalidToken):
            verifier.verify(forged, now=1001.0)
    for i in range(5):  # the memory stays bounded
        verifier.verify(
            tokens.mint("s3cret", ops={Operation.READ}, ttl=10 + i, now=1000.0), now=1001.0
        )
    assert len(verifier._known) <= 2
