"""Every error class a slidestore server can answer with, by wire code and by status.

The classes declare their ``code`` and ``status`` themselves (:mod:`slidestore.errors`);
this module only gathers them, from every module of the library that defines some, so the
client SDK's code → exception map, the servers' status lookup and their OpenAPI texts all
read the same table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

# Imported for their classes: every module of the library that defines errors.
import slidestore.cluster.errors
import slidestore.protocols.iiif.errors  # noqa: F401
from slidestore.errors import SlidestoreError

_LIBRARY = "slidestore."


@functools.cache
def error_classes() -> tuple[type[SlidestoreError], ...]:
    """``SlidestoreError`` and every subclass the library defines, parents first."""
    found: list[type[SlidestoreError]] = []
    pending: list[type[SlidestoreError]] = [SlidestoreError]
    while pending:
        klass = pending.pop(0)
        if klass in found or not klass.__module__.startswith(_LIBRARY):
            continue
        found.append(klass)
        pending.extend(klass.__subclasses__())
    return tuple(found)


@functools.cache
def by_code() -> Mapping[str, type[SlidestoreError]]:
    """Wire code → class. Where classes share a code (a IIIF size refusal is a
    ``region_too_large`` like any other) the most general one stands for it."""
    table: dict[str, type[SlidestoreError]] = {}
    for klass in error_classes():
        known = table.get(klass.code)
        if known is None or len(klass.__mro__) < len(known.__mro__):
            table[klass.code] = klass
    return table


def codes_by_status() -> dict[int, list[str]]:
    """HTTP status → the codes answered with it, sorted: the status table as documents
    (OpenAPI descriptions) show it."""
    table: dict[int, set[str]] = {}
    for klass in error_classes():
        table.setdefault(klass.status, set()).add(klass.code)
    return {status: sorted(codes) for status, codes in sorted(table.items())}


def status_of(exc: BaseException) -> int:
    """The status a server answers ``exc`` with: its class's, else 500 (not ours: a bug)."""
    return exc.status if isinstance(exc, SlidestoreError) else 500
