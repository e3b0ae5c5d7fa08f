"""Proof of possession: a material is linked to a blob only by someone who holds the file.

A blob id is a sha256, and a sha256 is not a secret: it travels in URLs, logs and tokens,
and a former member may keep a list of them. So a completion never trusts a blob id alone.
The portal picks random byte ranges of the declared size when the material is created;
the client answers with ``sha256(nonce || the bytes of each range, in order)``, computed
from its file; the portal reads the same ranges from a replica and compares. One answer
per challenge: a wrong one fails the material.

The browser computes the same thing in ``web/static/upload.js``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable

import msgspec

#: Ranges per challenge and bytes per range: 8 x 4 KiB cost the client nothing and leave
#: a guesser nothing to guess.
RANGES = 8
RANGE_BYTES = 4096


class Challenge(msgspec.Struct, frozen=True):
    nonce: str
    """16 random bytes, hex; hashed first."""
    ranges: list[tuple[int, int]]
    """``(offset, length)`` pairs inside the file."""


def new_challenge(size: int) -> Challenge:
    length = min(RANGE_BYTES, size)
    span = size - length + 1
    ranges = sorted((secrets.randbelow(span), length) for _ in range(RANGES))
    return Challenge(nonce=secrets.token_hex(16), ranges=ranges)


def digest(challenge: Challenge, chunks: Iterable[bytes]) -> str:
    """The proof for ``challenge`` given the bytes of its ranges, in order."""
    hashed = hashlib.sha256(bytes.fromhex(challenge.nonce))
    for chunk in chunks:
        hashed.update(chunk)
    return hashed.hexdigest()


def answer_from_file(challenge: Challenge, path: str | os.PathLike[str]) -> str:
    """What a client holding the file at ``path`` answers."""
    with open(path, "rb") as file:
        chunks = []
        for offset, length in challenge.ranges:
            file.seek(offset)
            chunks.append(file.read(length))
    return digest(challenge, chunks)


def matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.lower().encode())
