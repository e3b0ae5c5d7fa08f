"""The node's read endpoints against a real node process and real slides."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import openslide
import pytest
import zarr
from openslide.deepzoom import DeepZoomGenerator

import slidestore
from slidestore import imaging, tokens
from slidestore.blobs import BlobStore
from slidestore.testing.compare import psnr
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()


class Seeded:
    def __init__(self, node: NodeProcess, ids: dict[str, str]) -> None:
        self.node = node
        self.ids = ids
        self.admin = tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=3600)

    def read_token(self, name: str, *ops: Operation) -> str:
        return tokens.mint(SECRET, ops=set(ops) or {Operation.READ}, blob=self.ids[name], ttl=600)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return httpx.Client(base_url=self.node.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
    sample_slide_path: Path,
    unreadable_svs_path: Path,
    boxes_tiff_path: Path,
    generated_svs: Path,
) -> Iterator[Seeded]:
    data_dir = tmp_path_factory.mktemp("readnode") / "data"
    # Seed blobs straight into the store: unreadable.svs would (rightly) be refused by an
    # upload, but a node must still cope with a blob whose pixels turn out corrupt.
    store = BlobStore(data_dir / "blobs", reserve_bytes=0)
    ids = {
        "sample": store.put_file(sample_slide_path),
        "unreadable": store.put_file(unreadable_svs_path),
        "boxes": store.put_file(boxes_tiff_path),
        "generated": store.put_file(generated_svs),
    }
    node = NodeProcess(data_dir, settings={"secret": SECRET, "reserve_bytes": 0})
    node.start()
    try:
        yield Seeded(node, ids)
    finally:
        node.kill(signal.SIGKILL)


def test_info(seeded: Seeded) -> None:
    with seeded.client() as c:
        r = c.get(f"/slides/{seeded.ids['sample']}/info")
    assert r.status_code == 200
    body = r.json()
    assert body["metadata"]["vendor"] == "aperio"
    assert body["metadata"]["mpp_x"] == pytest.approx(0.499)
    assert body["metadata"]["width"] == 2220
    assert body["pyramid_levels"][0]["native_level"] == 0
    assert r.headers["etag"].startswith('"')
    assert "immutable" in r.headers["cache-control"]
    with seeded.client() as c:
        again = c.get(
            f"/slides/{seeded.ids['sample']}/info", headers={"If-None-Match": r.headers["etag"]}
        )
    assert again.status_code == 304


def test_thumbnail_and_labels_need_the_labels_operation(seeded: Seeded) -> None:
    blob = seeded.ids["sample"]
    with seeded.client(seeded.read_token("sample")) as c:
        thumb = c.get(f"/slides/{blob}/thumbnail", params={"size": 300, "format": "png"})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        assert max(imaging.decode(thumb.content).shape[:2]) == 300
        refused = c.get(f"/slides/{blob}/label")
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    with seeded.client(seeded.read_token("sample", Operation.READ, Operation.LABELS)) as c:
        label = c.get(f"/slides/{blob}/label")
        assert label.status_code == 200
        assert imaging.decode(label.content).shape == (463, 387, 3)
        missing = c.get(f"/slides/{blob}/nonexistent")
        assert (
            missing.status_code == 404 and missing.json()["error"] == "associated_image_not_found"
        )


def test_deepzoom_passthrough_and_oracle(seeded: Seeded, generated_svs: Path) -> None:
    blob = seeded.ids["generated"]
    with seeded.client(seeded.read_token("generated")) as c:
        dzi = c.get(f"/slides/{blob}.dzi")
        assert dzi.status_code == 200 and b'TileSize="240"' in dzi.content
        with slidestore.open_slide(generated_svs) as slide:
            dz_level = 12  # level 0 of a 3072x2560 slide
            r = c.get(f"/slides/{blob}_files/{dz_level}/3_4.jpeg")
            assert r.status_code == 200
            assert r.content == slide.raw_tile(0, 3, 4)  # byte-identical: passed through
        generator = DeepZoomGenerator(openslide.OpenSlide(generated_svs), 240, 0)
        r = c.get(f"/slides/{blob}_files/11/2_2.png")
        ours = imaging.decode(r.content)
        theirs = np.asarray(generator.get_tile(11, (2, 2)).convert("RGB"))
        assert psnr(ours, theirs) >= 40
        bad = c.get(f"/slides/{blob}_files/12/999_0.jpeg")
        assert bad.status_code == 404 and bad.json()["error"] == "out_of_bounds"
        bad_fmt = c.get(f"/slides/{blob}_files/12/0_0.gif")
        assert bad_fmt.status_code == 400


def test_iiif(seeded: Seeded) -> None:
    blob = seeded.ids["sample"]
    with seeded.client(seeded.read_token("sample")) as c:
        info = c.get(f"/iiif/3/{blob}/info.json")
        assert info.status_code == 200
        doc = info.json()
        assert doc["width"] == 2220 and doc["height"] == 2967
        assert doc["id"].endswith(f"/iiif/3/{blob}")
        img = c.get(f"/iiif/3/{blob}/0,0,480,480/240,/0/default.jpg")
        assert img.status_code == 200
        assert imaging.decode(img.content).shape == (240, 240, 3)
        gray = c.get(f"/iiif/3/{blob}/full/!200,200/0/gray.png")
        assert gray.status_code == 200
        for bad in (
            "full/max/45/default.jpg",
            "full/max/0/default.tif",
            "9999,9999,5,5/max/0/default.jpg",
            "full/0,/0/default.jpg",
        ):
            r = c.get(f"/iiif/3/{blob}/{bad}")
            assert r.status_code == 400, bad
            assert "error" in r.json()
        redirect = c.get(f"/iiif/3/{blob}", follow_redirects=False)
        assert redirect.status_code == 303


def test_zarr_over_http(seeded: Seeded, sample_slide_path: Path) -> None:
    blob = seeded.ids["sample"]
    group = zarr.open_group(
        f"{seeded.node.url}/zarr/{blob}",
        mode="r",
        storage_options={"headers": {"Authorization": f"Bearer {seeded.read_token('sample')}"}},
    )
    assert group.attrs["ome"]["version"] == "0.5"
    region = np.asarray(group["0"][:, 250:500, 100:400]).transpose(1, 2, 0)
    with slidestore.open_slide(sample_slide_path) as slide:
        np.testing.assert_array_equal(region, slide.read_region((100, 250), 0, (300, 250)))
    with seeded.client() as c:
        assert c.get(f"/zarr/{blob}/0/c/0/99/99").status_code == 404
        assert c.get(f"/zarr/{blob}/nope.json").status_code == 404


def test_generic_tiff_served_without_passthrough(seeded: Seeded) -> None:
    blob = seeded.ids["boxes"]
    with seeded.client() as c:
        r = c.get(f"/slides/{blob}_files/9/0_0.jpeg")
        assert r.status_code == 200
        assert imaging.decode(r.content).shape[2] == 3


def test_unreadable_slide_fails_cleanly_and_node_keeps_serving(seeded: Seeded) -> None:
    bad, good = seeded.ids["unreadable"], seeded.ids["sample"]
    with seeded.client() as c:
        for path in (
            f"/slides/{bad}_files/4/0_0.jpeg",
            f"/slides/{bad}_files/4/0_0.png",
            f"/zarr/{bad}/0/c/0/0/0",
        ):
            r = c.get(path)
            assert r.status_code == 422, path
            assert r.json()["error"] == "slide_read_error"
        assert c.get(f"/slides/{good}_files/12/1_1.jpeg").status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/slides/not-a-blob/info", 400, "invalid_blob_id"),
        ("/slides/" + "0" * 64 + "/info", 404, "blob_not_found"),
        ("/iiif/3/" + "0" * 64 + "/info.json", 404, "blob_not_found"),
        ("/zarr/" + "0" * 64 + "/zarr.json", 404, "blob_not_found"),
        ("/nowhere", 404, "not_found"),
    ],
)
def test_bad_requests_answer_json(seeded: Seeded, path: str, status: int, code: str) -> None:
    with seeded.client() as c:
        r = c.get(path)
    assert r.status_code == status
    assert r.json()["error"] == code


def test_tokens_enforced(seeded: Seeded) -> None:
    blob = seeded.ids["sample"]
    with httpx.Client(base_url=seeded.node.url) as c:
        assert c.get(f"/slides/{blob}/info").status_code == 401
        assert c.get(f"/slides/{blob}/info", params={"token": "garbage"}).status_code == 401
        other = tokens.mint(SECRET, ops={Operation.READ}, blob=seeded.ids["boxes"], ttl=60)
        assert c.get(f"/slides/{blob}/info", params={"token": other}).status_code == 403
        forged = tokens.mint(tokens.new_secret(), ops={Operation.ADMIN}, ttl=60)
        assert c.get(f"/slides/{blob}/info", params={"token": forged}).status_code == 401
        expired = tokens.mint(SECRET, ops={Operation.READ}, blob=blob, ttl=-10)
        r = c.get(f"/slides/{blob}/info", params={"token": expired})
        assert r.status_code == 401 and r.json()["error"] == "token_expired"
        ok = c.get(
            f"/slides/{blob}_files/12/0_0.jpeg", params={"token": seeded.read_token("sample")}
        )
        assert ok.status_code == 200
        assert c.get("/healthz").status_code == 200


def test_metrics_and_openapi(seeded: Seeded) -> None:
    with seeded.client() as c:
        c.get(f"/slides/{seeded.ids['sample']}_files/11/0_0.jpeg")
        text = c.get("/metrics").text
        assert "slidestore_node_http_requests_total" in text
        assert "slidestore_node_tile_cache_hit_ratio" in text
        assert "slidestore_node_bytes_stored" in text
        assert c.get("/openapi.json").json()["openapi"] == "3.1.0"
        assert c.get("/readyz").status_code == 200


def test_readyz_reports_an_unreachable_coordinator(start_node: Callable[..., NodeProcess]) -> None:
    from slidestore_server.testing import free_port

    node = start_node(reserve_bytes=0, coordinator_url=f"http://127.0.0.1:{free_port()}")
    r = httpx.get(node.url + "/readyz")
    assert r.status_code == 503
    assert "coordinator" in r.json()["problems"][0]
    assert httpx.get(node.url + "/healthz").status_code == 200


def test_the_stored_tile_fast_path_answers_exactly_like_the_route(seeded: Seeded) -> None:
    blob = seeded.ids["generated"]
    path = f"/slides/{blob}_files/12/1_1.jpeg"
    with seeded.client() as c:
        c.get(f"/slides/{blob}.dzi")  # opens the slide: its stored tiles take the fast path
        fast = c.get(path)
        # A conditional request that does not match goes through the route instead.
        routed = c.get(path, headers={"If-None-Match": '"something-else"'})
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content
        for name in ("content-type", "etag", "cache-control", "access-control-allow-origin"):
            assert fast.headers[name] == routed.headers[name], name
        assert c.get(path, headers={"If-None-Match": fast.headers["etag"]}).status_code == 304
        metrics = c.get("/metrics").text
    assert 'route="tile"' in metrics
    # Token problems fall through to the route: the usual JSON errors.
    assert httpx.get(seeded.node.url + path).json()["error"] == "token_missing"
    other = seeded.read_token("sample")
    denied = httpx.get(seeded.node.url + path, params={"token": other})
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    assert (
        httpx.get(seeded.node.url + path, params={"token": seeded.read_token("generated")}).content
        == fast.content
    )


def test_a_viewer_token_reads_tiles_but_never_the_raw_file(seeded: Seeded) -> None:
    """The raw .svs holds the label and macro (OpenSlide reads them out of it): a viewer's
    ``read`` token gets tiles and info, and ``/blobs`` needs ``download``."""
    blob_id = seeded.ids["sample"]
    read = seeded.read_token("sample")
    with seeded.client(read) as c:
        assert c.get(f"/slides/{blob_id}_files/8/0_0.jpeg").status_code == 200
        assert c.get(f"/slides/{blob_id}/info").status_code == 200
        for method in ("GET", "HEAD"):
            refused = c.request(method, f"/blobs/{blob_id}")
            assert refused.status_code == 403, method
        assert c.get(f"/slides/{blob_id}/label").status_code == 403
    with seeded.client(seeded.read_token("sample", Operation.DOWNLOAD)) as c:
        whole = c.get(f"/blobs/{blob_id}")
        assert whole.status_code == 200 and len(whole.content) > 1_000_000
        other = seeded.ids["boxes"]
        assert c.get(f"/blobs/{other}").status_code == 403  # download on that one blob only


def test_info_withholds_vendor_properties_that_name_people_and_files(seeded: Seeded) -> None:
    blob_id = seeded.ids["sample"]
    with seeded.client(seeded.read_token("sample")) as c:
        viewer = c.get(f"/slides/{blob_id}/info")
    props = viewer.json()["metadata"]["properties"]
    # CMU-1 records its scanning user's id, the original file name and a free-text comment.
    for key in ("aperio.User", "aperio.Filename", "openslide.comment", "tiff.ImageDescription"):
        assert key not in props, key
    assert props["openslide.mpp-x"] == "0.499" and props["aperio.AppMag"] == "20"
    assert viewer.json()["metadata"]["mpp_x"] == pytest.approx(0.499)
    assert "public" in viewer.headers["cache-control"]

    for op in (Operation.LABELS, Operation.DOWNLOAD):
        with seeded.client(seeded.read_token("sample", Operation.READ, op)) as c:
            full = c.get(f"/slides/{blob_id}/info")
        assert full.json()["metadata"]["properties"]["aperio.User"].startswith("b414003d")
        # Never in a shared cache, never under the viewer's ETag.
        assert "private" in full.headers["cache-control"]
        assert full.headers["etag"] != viewer.headers["etag"]
