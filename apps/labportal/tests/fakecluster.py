"""A coordinator and its nodes, faked as an httpx transport: enough of the protocol
(docs/cluster.md) to test the portal's side, with every token checked like the real ones."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from slidestore import tokens
from slidestore.cluster.wire import BlobView, Placement, PlacementRequest, ReplicaView, Target
from slidestore.errors import SlidestoreError
from slidestore.tokens import Operation

SECRET = tokens.new_secret()
COORDINATOR = "http://coordinator.test"
NODES = ("http://node-a.test", "http://node-b.test")
METADATA = {
    "vendor": "aperio",
    "width": 2220,
    "height": 2967,
    "levels": [{"width": 2220, "height": 2967, "downsample": 1.0}],
    "mpp_x": 0.499,
    "mpp_y": 0.499,
    "objective_power": 20.0,
    "scanner_id": "SS1234",
    "scanner_model": "ScanScope",
    "associated_images": [
        {"name": "label", "width": 1, "height": 1},
        {"name": "macro", "width": 1, "height": 1},
    ],
}


def content(blob_id: str, size: int) -> bytes:
    """The bytes the fake holds for a blob (a real one's are its file's)."""
    block = hashlib.sha256(blob_id.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@dataclass
class FakeCluster:
    blobs: dict[str, int] = field(default_factory=dict)
    """blob id -> size"""
    copies: dict[str, int] = field(default_factory=dict)
    """blob id -> healthy copies (target 2)"""
    deleted: list[str] = field(default_factory=list)
    placements: list[PlacementRequest] = field(default_factory=list)
    down: bool = False
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    """blob id -> normalised metadata the slide info answers (default: ``METADATA``)."""

    def store(self, blob_id: str, size: int, copies: int = 2) -> None:
        """What a finished tus upload (and replication) leaves behind."""
        self.blobs[blob_id], self.copies[blob_id] = size, copies

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _cap(self, request: httpx.Request, op: Operation, blob: str | None = None) -> None:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") or request.url.params.get("token", "")
        tokens.verify(SECRET, token).require(op, blob)

    def _view(self, blob_id: str) -> BlobView:
        replicas = tuple(
            ReplicaView(node_id=f"n{i}", url=NODES[i], state="alive")  # type: ignore[arg-type]
            for i in range(self.copies[blob_id])
        )
        status = "ok" if len(replicas) >= 2 else "under_replicated"
        return BlobView(
            blob_id=blob_id,
            size=self.blobs[blob_id],
            target=2,
            replicas=replicas,
            status=status,  # type: ignore[arg-type]
            pinned=True,
            expires_at=None,
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("down", request=request)
        try:
            return self._route(request)
        except SlidestoreError as exc:
            return httpx.Response(403, json={"error": "forbidden", "detail": str(exc)})

    def _route(self, request: httpx.Request) -> httpx.Response:
        url, path, method = str(request.url), request.url.path, request.method
        if url.startswith(COORDINATOR) and path == "/v1/placements" and method == "POST":
            self._cap(request, Operation.WRITE)
            req = msgspec.json.decode(request.content, type=PlacementRequest)
            self.placements.append(req)
            if req.sha256 and req.sha256 in self.blobs:
                placement = Placement(
                    exists=True, primary=None, targets=(), upload_url=None, token=None, replicas=2
                )
            else:
                target = Target(node_id="n0", url=NODES[0])
                placement = Placement(
                    exists=False,
                    primary=target,
                    targets=(target,),
                    upload_url=NODES[0] + "/uploads",
                    token=tokens.mint(
                        SECRET,
                        ops={Operation.UPLOAD},
                        blob=req.sha256 or tokens.ALL_BLOBS,
                        size=req.size,
                    ),
                    replicas=2,
                )
            return httpx.Response(200, content=msgspec.json.encode(placement))
        if url.startswith(COORDINATOR) and path.startswith("/v1/blobs/"):
            blob_id = path.split("/")[3]
            if method == "DELETE":
                self._cap(request, Operation.DELETE, blob_id)
                self.deleted.append(blob_id)
                self.blobs.pop(blob_id, None)
                return httpx.Response(204)
            self._cap(request, Operation.READ, blob_id)
            if blob_id not in self.blobs:
                if path.endswith("/wait"):  # the real one long-polls, then times out
                    return httpx.Response(408, json={"error": "timeout", "detail": "no"})
                return httpx.Response(404, json={"error": "blob_not_found", "detail": "no"})
            return httpx.Response(200, content=msgspec.json.encode(self._view(blob_id)))
        if path.startswith("/blobs/") and method == "GET":
            blob_id = path.split("/")[2]
            self._cap(request, Operation.DOWNLOAD, blob_id)
            first, _, last = request.headers["range"].removeprefix("bytes=").partition("-")
            data = content(blob_id, self.blobs[blob_id])[int(first) : int(last) + 1]
            return httpx.Response(206, content=data)
        if path.startswith("/slides/") and path.endswith("/info"):
            blob_id = path.split("/")[2]
            self._cap(request, Operation.READ, blob_id)
            meta = self.metadata.get(blob_id, METADATA)
            body: dict[str, Any] = {"blob_id": blob_id, "metadata": meta, "pyramid_levels": []}
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={"error": "not_found", "detail": url})
