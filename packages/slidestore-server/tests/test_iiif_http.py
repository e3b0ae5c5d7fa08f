"""IIIF against a real node process: renders share a per-node memory budget (concurrent
large renders beyond it get 503 ``busy`` with Retry-After, never a 500; the estimated
bytes in progress never exceed it, per the node's metrics; a render larger than the
whole budget is a 400), and ETags do not change when the node restarts."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import slidestore
from slidestore import tokens
from slidestore.blobs import BlobStore
from slidestore.protocols import iiif
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()
BURST = 8
WIDTH, HEIGHT = 3072, 2560  # the generated slide


@dataclass
class Budgeted:
    node: NodeProcess
    blob: str
    budget: int
    cost: int
    """The estimate of one of the burst's renders."""

    def client(self, *ops: Operation) -> httpx.Client:
        token = tokens.mint(SECRET, ops=set(ops) or {Operation.READ}, blob=self.blob, ttl=600)
        return httpx.Client(
            base_url=self.node.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )

    def metrics(self) -> dict[str, float]:
        token = tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600)
        text = httpx.get(
            f"{self.node.url}/metrics", headers={"Authorization": f"Bearer {token}"}
        ).text
        return {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in text.splitlines())
            if name.startswith("slidestore_node_iiif_render_")
        }


def burst_path(i: int) -> str:
    # Distinct regions (one row shorter each), so no two requests are the same; full
    # resolution PNG, about 7.8 Mpx each.
    return f"0,0,{WIDTH},{HEIGHT - i}/max/0/default.png"


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory, generated_svs: Path) -> Iterator[Budgeted]:
    with slidestore.open_slide(generated_svs) as slide:
        pyramid = slide.pyramid
        region, size, rotation, quality = burst_path(0).split("/")
        plan = iiif.resolve(iiif.parse(region, size, rotation, quality), WIDTH, HEIGHT)
        cost = iiif.render_bytes(pyramid, plan)
    budget = cost * 5 // 2  # room for two of the burst at once, not three
    data_dir = tmp_path_factory.mktemp("iiif-budget") / "data"
    blob = BlobStore(data_dir / "blobs", reserve_bytes=0).put_file(generated_svs)
    node = NodeProcess(
        data_dir,
        settings={
            "secret": SECRET,
            "reserve_bytes": 0,
            "prerender": "false",
            "iiif_render_budget_bytes": budget,
            "iiif_render_wait_seconds": 0.2,
        },
    )
    node.start()
    try:
        yield Budgeted(node, blob, budget, cost)
    finally:
        node.kill(signal.SIGKILL)


def test_a_burst_of_large_renders_stays_within_the_budget(budgeted: Budgeted) -> None:
    with budgeted.client() as http:
        assert http.get(f"/iiif/3/{budgeted.blob}/info.json").status_code == 200  # opened

        def get(i: int) -> httpx.Response:
            return http.get(f"/iiif/3/{budgeted.blob}/{burst_path(i)}")

        with ThreadPoolExecutor(BURST) as pool:
            responses = list(pool.map(get, range(BURST)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    for r in responses:
        if r.status_code == 503:
            assert r.json()["error"] == "busy"
            assert int(r.headers["Retry-After"]) >= 1
        else:
            assert r.headers["content-type"] == "image/png"
    metrics = budgeted.metrics()
    assert metrics["slidestore_node_iiif_render_budget_bytes"] == budgeted.budget
    assert metrics["slidestore_node_iiif_render_bytes_in_use"] == 0
    # More than one render ran at once (the budget was used), never more than it holds.
    assert budgeted.cost < metrics["slidestore_node_iiif_render_bytes_peak"] <= budgeted.budget
    assert metrics["slidestore_node_iiif_render_refused_busy"] == statuses.count(503)


def test_a_render_larger_than_the_whole_budget_is_400(budgeted: Budgeted) -> None:
    with budgeted.client() as http:
        # Upscaled to 5000x4167: about 20 Mpx of PNG, beyond the ~200 MB budget.
        r = http.get(f"/iiif/3/{budgeted.blob}/full/^5000,/0/default.png")
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "region_too_large"
    assert "render budget" in r.json()["detail"]


def test_native_tiles_pass_through_outside_the_budget(
    budgeted: Budgeted, generated_svs: Path
) -> None:
    admitted = budgeted.metrics()["slidestore_node_iiif_render_admitted"]
    with budgeted.client() as http:
        r = http.get(f"/iiif/3/{budgeted.blob}/240,480,240,240/max/0/default.jpg")
    assert r.status_code == 200
    with slidestore.open_slide(generated_svs) as slide:
        assert r.content == slide.raw_tile(0, 1, 2)
    assert budgeted.metrics()["slidestore_node_iiif_render_admitted"] == admitted


def test_info_etag_is_the_same_after_a_restart_with_another_hash_seed(
    budgeted: Budgeted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python salts ``hash()`` of strings per process: an ETag built from it changed on
    every restart (and differed between nodes), defeating caches and 304s."""
    etags = []
    for seed in ("1", "2"):
        monkeypatch.setenv("PYTHONHASHSEED", seed)
        budgeted.node.restart()
        with budgeted.client() as http:
            r = http.get(f"/iiif/3/{budgeted.blob}/info.json")
        assert r.status_code == 200
        etags.append(r.headers["etag"])
    assert etags[0] == etags[1]


def _path_token(blob: str, *, ttl: float = 600, ops: set[Operation] | None = None) -> str:
    return tokens.mint(SECRET, ops=ops or {Operation.READ}, blob=blob, ttl=ttl)


def test_a_token_in_the_path_is_the_service_id_stock_clients_follow(budgeted: Budgeted) -> None:
    """IIIF clients build tile URLs from info.json's ``id`` only (no query string): the
    capability-in-path service puts the token in ``id``, so following it works."""
    token = _path_token(budgeted.blob)
    service = f"{budgeted.node.url}/iiif/3/t/{token}/{budgeted.blob}"
    r = httpx.get(f"{service}/info.json", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == service
    tile = httpx.get(f"{r.json()['id']}/0,0,240,240/max/0/default.jpg", timeout=60)
    assert tile.status_code == 200
    assert tile.headers["content-type"] == "image/jpeg"
    # Without the token, the same tile is refused: the path is what grants it.
    bare = httpx.get(f"{budgeted.node.url}/iiif/3/{budgeted.blob}/0,0,240,240/max/0/default.jpg")
    assert bare.status_code == 401


def test_a_path_token_for_another_blob_or_expired_or_bogus_is_refused(budgeted: Budgeted) -> None:
    other = "ab" * 32
    cases = {
        "another blob": (_path_token(other), 403),
        "expired": (_path_token(budgeted.blob, ttl=-5), 401),
        "forged": (_path_token(budgeted.blob)[:-4] + "AAAA", 401),
        "labels, not read": (_path_token(budgeted.blob, ops={Operation.LABELS}), 403),
    }
    for name, (token, status) in cases.items():
        for suffix in ("info.json", "0,0,240,240/max/0/default.jpg"):
            r = httpx.get(
                f"{budgeted.node.url}/iiif/3/t/{token}/{budgeted.blob}/{suffix}", timeout=60
            )
            assert r.status_code == status, (name, r.text)
            assert "error" in r.json()
    # The refusals were logged, never with the token itself.
    log = budgeted.node.log.read_text()
    assert "/iiif/3/t/<token>/" in log
    for token, _ in cases.values():
        assert token not in log
