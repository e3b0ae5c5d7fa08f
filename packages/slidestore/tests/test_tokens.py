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
        cap.require(op, BLOB)


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
