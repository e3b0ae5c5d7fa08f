"""``slidestore-server serve DIR`` as a real process over a temp folder holding a generated
slide, a symlink to the real sample slide and a file that is no slide: every slide gets
DeepZoom, IIIF and zarr by a stable id, the index lists them, nothing outside the listed
slides can be reached, and off loopback every request needs a read token."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import slidestore
from slidestore import tokens
from slidestore.testing.paths import sample_slide_path
from slidestore.tokens import Operation
from slidestore_server.folder.index import slide_id
from slidestore_server.testing import free_port, wait_http


@dataclass
class Served:
    url: str
    folder: Path
    proc: subprocess.Popen[bytes]
    ids: dict[str, str]
    """relative path -> id"""


def start(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slidestore_server.cli",
            "serve",
            str(folder),
            "--port",
            str(port),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return f"http://127.0.0.1:{port}", proc


def expected_id(folder: Path, relative: str) -> str:
    stat = (folder / relative).stat()
    return slide_id(relative, stat.st_size, stat.st_mtime_ns)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, generated_svs: Path) -> Path:
    root = tmp_path_factory.mktemp("slides")
    (root / "cases" / "a").mkdir(parents=True)
    (root / "generated.svs").symlink_to(generated_svs)
    (root / "cases" / "a" / "sample.svs").symlink_to(sample_slide_path())
    (root / "notes.txt").write_text("not a slide")
    (root / "cases" / "broken.svs").write_bytes(b"II*\x00 this is no slide")
    return root


@pytest.fixture(scope="module")
def served(folder: Path) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if k != "SLIDESTORE_SECRET"}
    env["SLIDESTORE_RESCAN_SECONDS"] = "0"  # see a changed file at once
    env["SLIDESTORE_RENDER_CACHE_DIR"] = str(folder.parent / "serve-cache")
    url, proc = start(folder, env=env)
    try:
        wait_http(url + "/", proc=proc, timeout=60)
        ids = {rel: expected_id(folder, rel) for rel in ("generated.svs", "cases/a/sample.svs")}
        # Prerendered levels go to the cache directory, never beside the slides.
        deadline = time.monotonic() + 60
        renditions = folder.parent / "serve-cache" / "renditions"
        while not (renditions / ids["generated.svs"]).is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (renditions / ids["generated.svs"]).is_dir()
        yield Served(url, folder, proc, ids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def test_index_lists_the_slides_by_stable_id_and_skips_other_files(served: Served) -> None:
    page = httpx.get(served.url + "/", timeout=60)
    assert page.status_code == 200
    for relative, sid in served.ids.items():
        assert relative in page.text
        assert f'href="/view/{sid}"' in page.text
        assert f"/slides/{sid}/thumbnail?size=256" in page.text
    assert "notes.txt" not in page.text
    # Read-only, no copy: the folder holds exactly what the test put there.
    assert sorted(str(p.relative_to(served.folder)) for p in served.folder.rglob("*")) == [
        "cases",
        "cases/a",
        "cases/a/sample.svs",
        "cases/broken.svs",
        "generated.svs",
        "notes.txt",
    ]
    thumb = httpx.get(f"{served.url}/slides/{served.ids['generated.svs']}/thumbnail?size=256")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    viewer = httpx.get(f"{served.url}/view/{served.ids['cases/a/sample.svs']}")
    assert viewer.status_code == 200 and "openseadragon.min.js" in viewer.text
    osd = httpx.get(served.url + "/viewer/openseadragon/openseadragon.min.js")
    assert osd.status_code == 200 and b"OpenSeadragon" in osd.content


def test_every_protocol_serves_the_files_own_tiles(served: Served, generated_svs: Path) -> None:
    sid = served.ids["generated.svs"]
    with (
        slidestore.open_slide(generated_svs) as slide,
        httpx.Client(base_url=served.url, timeout=60) as http,
    ):
        assert http.get(f"/slides/{sid}.dzi").status_code == 200
        tile = http.get(f"/slides/{sid}_files/12/1_1.jpeg")
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
        native = http.get(f"/iiif/3/{sid}/240,480,240,240/max/0/default.jpg")
        assert native.content == slide.raw_tile(0, 1, 2)  # passed through, as on a node
        info = http.get(f"/iiif/3/{sid}/info.json").json()
        assert (info["width"], info["height"]) == slide.dimensions
        assert http.get(f"/zarr/{sid}/zarr.json").json()["attributes"]
        listed = http.get(f"/zarr/{sid}", params={"list": "dir", "prefix": ""}).json()["keys"]
        assert listed[0] == "zarr.json" and "0" in listed
    sample = httpx.get(f"{served.url}/slides/{served.ids['cases/a/sample.svs']}/info").json()
    assert sample["metadata"]["vendor"] == "aperio"


def test_no_token_reads_tiles_but_never_labels(served: Served) -> None:
    sid = served.ids["cases/a/sample.svs"]
    label = httpx.get(f"{served.url}/slides/{sid}/label")
    assert label.status_code == 403 and label.json()["error"]


def test_a_broken_file_is_a_4xx_and_unknown_or_traversing_paths_are_refused(
    served: Served, folder: Path
) -> None:
    broken = expected_id(folder, "cases/broken.svs")
    r = httpx.get(f"{served.url}/slides/{broken}.dzi", timeout=60)
    assert 400 <= r.status_code < 500 and r.json()["error"]
    assert str(folder) not in r.text
    unknown = httpx.get(f"{served.url}/slides/{'0' * 64}.dzi")
    assert unknown.status_code == 404 and unknown.json()["error"] == "blob_not_found"
    host, port = served.url.removeprefix("http://").split(":")
    for raw in (
        "/slides/..%2F..%2F..%2Fetc%2Fpasswd.dzi",
        "/view/../../../../etc/passwd",
        "/viewer/openseadragon/../../../../../../etc/passwd",
        "/viewer/openseadragon/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/zarr/../notes.txt",
    ):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", raw)  # sent as is, not normalized by a client
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
        assert answer.status in (400, 404), (raw, answer.status)
        assert b"root:" not in body and b"not a slide" not in body


def test_a_changed_file_gets_a_new_id_without_a_restart(
    served: Served, folder: Path, generated_svs: Path
) -> None:
    later = folder / "later.svs"
    later.symlink_to(sample_slide_path())
    first = expected_id(folder, "later.svs")
    assert httpx.get(f"{served.url}/slides/{first}.dzi", timeout=60).status_code == 200
    later.unlink()
    later.symlink_to(generated_svs)  # other content (size, mtime) under the same name
    second = expected_id(folder, "later.svs")
    assert first != second
    # An unknown id makes the server walk the folder again: the new one is found, the old
    # one is gone (its cached tiles are never served for the new content).
    assert httpx.get(f"{served.url}/slides/{second}.dzi", timeout=60).status_code == 200
    assert httpx.get(f"{served.url}/slides/{first}.dzi", timeout=60).status_code == 404
    later.unlink()


def test_off_loopback_the_secret_and_read_tokens_are_required(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SLIDESTORE_SECRET"}
    env["SLIDESTORE_PRERENDER"] = "false"
    _, refused = start(folder, "--host", "0.0.0.0", env=env)
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert b"SLIDESTORE_SECRET" in out and b"read token" in out

    secret = tokens.new_secret()
    url, proc = start(folder, "--host", "0.0.0.0", env={**env, "SLIDESTORE_SECRET": secret})
    try:
        _wait_any(url, proc)
        sid = expected_id(folder, "generated.svs")
        other = expected_id(folder, "cases/a/sample.svs")
        assert httpx.get(f"{url}/slides/{sid}.dzi").status_code == 401
        assert httpx.get(f"{url}/slides/{sid}_files/12/1_1.jpeg").status_code == 401
        assert httpx.get(f"{url}/").status_code == 401
        one = tokens.mint(secret, ops={Operation.READ}, blob=sid, ttl=600)
        assert httpx.get(f"{url}/slides/{sid}_files/12/1_1.jpeg?token={one}").status_code == 200
        assert httpx.get(f"{url}/slides/{other}.dzi?token={one}").status_code == 403
        assert httpx.get(f"{url}/?token={one}").status_code == 403  # one slide's token lists none
        assert httpx.get(f"{url}/slides/{sid}/label?token={one}").status_code == 403
        every = tokens.mint(secret, ops={Operation.READ}, ttl=600)
        page = httpx.get(f"{url}/?token={every}")
        assert page.status_code == 200 and f"/view/{sid}?token={every}" in page.text
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def _wait_any(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Up when it answers at all (every path needs a token here)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
        try:
            httpx.get(url + "/", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the folder server did not come up")
