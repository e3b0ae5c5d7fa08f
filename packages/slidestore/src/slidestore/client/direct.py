"""Reads a trusted service makes straight from a blob's replicas, each with a token for
that one blob: byte ranges (the lab portal's proof of possession) and a slide's info.

Unlike :class:`~slidestore.client.ReplicaSet` (which streams a slide's tiles with failover
and a refresh from the coordinator), these are one-off reads: the first replica that
answers all of it wins, the others are tried in the view's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from slidestore import errors
from slidestore.client.http import TRANSIENT, Transport, response_error
from slidestore.client.replicas import readable_urls
from slidestore.cluster import wire
from slidestore.tokens import Operation

_info_decoder = msgspec.json.Decoder(dict[str, Any])


async def read_ranges(
    transport: Transport, view: wire.BlobView, ranges: Sequence[tuple[int, int]]
) -> list[bytes]:
    """The bytes of ``(offset, length)`` ranges of the blob, from the first replica that
    serves them all (with a ``download`` token on this one blob).

    :class:`~slidestore.errors.ClusterUnavailable` when no replica did.
    """
    headers = transport.headers(ops={Operation.DOWNLOAD}, blob=view.blob_id)
    failures: list[str] = []
    for url in readable_urls(view.replicas):
        chunks: list[bytes] = []
        try:
            for offset, length in ranges:
                response = await transport.client().get(
                    f"{url}/blobs/{view.blob_id}",
                    headers={**headers, "Range": f"bytes={offset}-{offset + length - 1}"},
                )
                if response.status_code != 206 or len(response.content) != length:
                    failures.append(f"{url}: HTTP {response.status_code}")
                    break
                chunks.append(response.content)
        except TRANSIENT as exc:
            failures.append(f"{url}: {type(exc).__name__}")
            continue
        if len(chunks) == len(ranges):
            return chunks
    raise errors.ClusterUnavailable(
        f"no replica of blob {view.blob_id} served the ranges ({'; '.join(failures) or 'none'})"
    )


async def slide_info(transport: Transport, view: wire.BlobView) -> dict[str, Any] | None:
    """The node's ``/slides/{id}/info`` (normalized metadata) from the first replica that
    answers, with a ``read`` token on this blob; None when none did."""
    token = transport.tokens({Operation.READ}, view.blob_id)
    for url in readable_urls(view.replicas):
        try:
            response = await transport.client().get(
                f"{url}/slides/{view.blob_id}/info", params={"token": token} if token else None
            )
        except TRANSIENT:
            continue
        if response.status_code == 200:
            try:
                return _info_decoder.decode(response.content)
            except msgspec.DecodeError:
                continue
    return None


async def region_image(
    transport: Transport,
    view: wire.BlobView,
    region: tuple[int, int, int, int],
    size: tuple[int, int],
    fmt: str = "png",
) -> bytes:
    """A level-0 ``region`` (x, y, width, height) of the slide rendered at ``size`` (IIIF,
    with a ``read`` token on this blob), from the first replica that renders it.

    A replica that is down, busy or has a bad copy is passed over; a refusal of the request
    itself (4xx) is raised as its named error; :class:`~slidestore.errors.ClusterUnavailable`
    when no replica rendered it.
    """
    x, y, width, height = region
    path = f"/iiif/3/{view.blob_id}/{x},{y},{width},{height}/{size[0]},{size[1]}/0/default.{fmt}"
    headers = transport.headers(ops={Operation.READ}, blob=view.blob_id)
    failures: list[str] = []
    for url in readable_urls(view.replicas):
        try:
            response = await transport.client().get(url + path, headers=headers)
        except TRANSIENT as exc:
            failures.append(f"{url}: {type(exc).__name__}")
            continue
        if response.status_code == 200:
            return response.content
        if response.status_code < 500:
            raise response_error(response, f"GET {path}")
        failures.append(f"{url}: HTTP {response.status_code}")
    raise errors.ClusterUnavailable(
        f"no replica of blob {view.blob_id} rendered the region ({'; '.join(failures) or 'none'})"
    )
