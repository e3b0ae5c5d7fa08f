"""End to end in Debian's chromium (playwright): a coordinator and two nodes, the portal,
two users. Register, team, invitation, case, upload a real slide through the page (tus to
the node), real tiles in the viewer (still loading after the first read token expired: the
page renews it), a team-defined case field (defined on the team page, filled in the generated form), an
annotation that survives a reload, a region exported from the viewer
(PNG and TIFF), the original downloaded from the material page (only by a role that may see
labels), the ``tissue`` model run from the material page and its features as a layer in the
viewer, a stock OpenSeadragon IIIF viewer on another origin following the capability-in-path
``id``, and another team's case refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from slidestore import tokens
from slidestore.testing.paths import sample_slide_path
from slidestore.tokens import Operation
from slidestore_server.testing import CoordinatorProcess, NodeProcess

from .helpers import PASSWORD
from .server import ServerProcess
from .tasks_kit import build_onnx, manifest

CHROMIUM = Path("/usr/bin/chromium")
SLIDE = sample_slide_path()
COMPANION = SLIDE.parent / "boxes.tiff"  # a second slide of the case: side by side
MPP = 0.499  # the sample's µm per pixel (its README)
OPENSEADRAGON = (
    Path(__file__).resolve().parents[1] / "frontend/node_modules/openseadragon/build/openseadragon"
)
SECRET = tokens.new_secret()
VIEW_TOKEN_TTL = 4  # seconds: the test outlives several tokens
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module", autouse=True)
def _chromium_present() -> None:
    # Not a skip: .ci/run installs Debian's chromium; a missing browser is a failure.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
    assert SLIDE.exists(), f"{SLIDE} is missing"
    assert COMPANION.exists(), f"{COMPANION} is missing"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cluster")
    coordinator = CoordinatorProcess(tmp / "coord", settings={"secret": SECRET, "replicas": 2})
    with coordinator:
        common = {"secret": SECRET, "coordinator_url": coordinator.url, "heartbeat_interval": 0.5}
        with NodeProcess(tmp / "a", settings=common), NodeProcess(tmp / "b", settings=common):
            token = tokens.mint(SECRET, ops={Operation.ADMIN})
            deadline, nodes = time.monotonic() + 20, []
            while time.monotonic() < deadline:
                nodes = httpx.get(coordinator.url + "/v1/nodes", params={"token": token}).json()
                if sum(n["state"] == "alive" for n in nodes) >= 2:
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"the nodes did not register with the coordinator: {nodes}")
            yield coordinator.url


@pytest.fixture(scope="module")
def portal_url(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("portal")
    server = ServerProcess.start(
        f"sqlite:///{tmp / 'portal.sqlite3'}",
        tmp / "portal.log",
        LABPORTAL_CLUSTER_URL=cluster,
        LABPORTAL_CLUSTER_SECRET=SECRET,
        LABPORTAL_VIEW_TOKEN_TTL_SECONDS=str(VIEW_TOKEN_TTL),
        LABPORTAL_DASK_WORKERS="1",  # the models run here are small; one worker process starts sooner
    )
    try:
        yield server.url
    finally:
        server.stop()


def _register(page, base: str, name: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/register")
    page.fill("input[name=display_name]", name)
    page.fill("input[name=email]", f"{name.lower()}-{time.time_ns()}@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("#register-form button")
    page.wait_for_url("**/teams")


@pytest.mark.timeout(900)  # one long story (two uploads, the viewer's tools, models, three users)
def test_portal_in_a_browser(portal_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            alice_ctx, bob_ctx = browser.new_context(), browser.new_context()
            alice, bob = alice_ctx.new_page(), bob_ctx.new_page()
            errors = console_errors(alice) + console_errors(bob)
            _register(alice, portal_url, "Alice")
            _register(bob, portal_url, "Bob")
            # Bob's own team and case: Alice must not see it later.
            bob.fill("#team-form input[name=name]", "Bob's lab")
            bob.click("#team-form button")
            bob.wait_for_url("**/teams/*")
            bob.goto(bob.url + "/cases")
            bob.fill("#case-form input[name=title]", "Bob's case")
            bob.click("#case-form button")
            bob.wait_for_url("**/cases/*")
            bob_case = bob.url

            alice.fill("#team-form input[name=name]", "Pathology")
            alice.click("#team-form button")
            alice.wait_for_url("**/teams/*")
            team_url = alice.url
            alice.click("#invite-form button")
            expect(alice.locator("#invite-link")).to_be_visible()
            invite = alice.locator("#invite-link").text_content() or ""
            bob.goto(invite)
            bob.click("text=Accept")
            bob.wait_for_url(team_url)

            # A team-defined case field, defined on the team page, filled in the generated form.
            alice.goto(team_url)
            alice.fill(
                "#case-fields-form textarea",
                '[{"name": "stain", "label": "Stain", "type": "enum", "required": true,'
                ' "choices": ["HE", "IHC"]}, {"name": "blocks", "type": "int"}]',
            )
            alice.click("#case-fields-form button")
            expect(alice.locator("#case-fields-form label")).to_contain_text("version 1")
            alice.goto(team_url + "/cases")
            # A form shows the server's message under the field it names.
            alice.evaluate(  # the browser's own checks off: the server's answer is tested
                "document.querySelectorAll('#case-form [required]')"
                ".forEach((e) => { e.required = false; })"
            )
            alice.click("#case-form button")
            title = alice.locator("#case-form input[name=title]")
            expect(title).to_have_attribute("aria-invalid", "true")
            expect(alice.locator("#case-form small.field-error")).not_to_be_empty()
            alice.fill("#case-form input[name=title]", "Biopsy 17")
            alice.select_option("#case-form select[name='fields.stain']", "IHC")
            alice.fill("#case-form input[name='fields.blocks']", "3")
            alice.click("#case-form button")
            alice.wait_for_url("**/cases/*")
            expect(alice.locator("dl.team-fields")).to_contain_text("IHC")
            expect(alice.locator("dl.team-fields")).to_contain_text("3")
            case_page = case_url = alice.url
            _upload(alice, SLIDE, 1)
            _upload(alice, COMPANION, 2)
            _thumbnails_render(alice)
            _accessible(alice)
            _screenshot(alice, "case.png")
            tiles: list[tuple[int, str]] = []  # every tile response: status, token

            def tile(response) -> None:  # type: ignore[no-untyped-def]
                if "_files/" in response.url:
                    token = parse_qs(urlparse(response.url).query).get("token", [""])[0]
                    tiles.append((response.status, token))

            alice.on("response", tile)
            alice.locator("#materials li", has_text=SLIDE.name).get_by_role(
                "button", name="View"
            ).click()
            alice.wait_for_url("**/view")
            alice.wait_for_function(
                "() => window.OpenSeadragon && document.querySelector('#osd canvas')"
                " && [...document.querySelectorAll('#scalebar-text')].some(e => e.textContent)",
                timeout=30_000,
            )
            alice.wait_for_timeout(2000)  # tiles fade in
            shot = alice.locator("#osd").screenshot()
            from PIL import Image

            pixels = list(Image.open(BytesIO(shot)).convert("L").getdata())
            assert statistics.pvariance(pixels) > 100, "the viewer shows no tiles"

            # Past the first token's life, newly needed tiles still load, with a new token.
            first = {token for _, token in tiles}
            alice.wait_for_timeout((VIEW_TOKEN_TTL + 2) * 1000)
            before = len(tiles)
            alice.evaluate("viewer.viewport.zoomBy(4); viewer.viewport.applyConstraints()")
            deadline = time.monotonic() + 20
            while len(tiles) == before and time.monotonic() < deadline:
                alice.wait_for_timeout(250)
            alice.wait_for_timeout(1500)
            later = tiles[before:]
            assert later, "zooming in asked for no tiles"
            refused = [status for status, _ in tiles if status != 200]
            assert not refused, (refused, len(tiles))
            assert not first & {token for _, token in later}, "tiles still use the first token"

            alice.select_option("#tool", "rectangle")
            alice.fill("#ann-label", "mitosis")
            box = alice.locator("#stage").bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            alice.mouse.move(x - 40, y - 30)
            alice.mouse.down()
            alice.mouse.move(x + 40, y + 30, steps=5)
            # Reload only once the annotation is saved (the drawn shape shows before that).
            with alice.expect_response(
                lambda r: r.url.endswith("/annotations") and r.request.method == "POST"
            ) as saved:
                alice.mouse.up()
            assert saved.value.status == 201, saved.value.text()
            assert saved.value.json()["area_um2"] > 0  # the slide has an mpp: measured in µm²
            shapes = alice.locator("#annotation-canvas")
            expect(shapes).to_have_attribute("data-shapes", "1", timeout=20_000)
            assert not alice.locator("#error").text_content()
            alice.reload()
            expect(shapes).to_have_attribute("data-shapes", "1", timeout=20_000)
            # Listed beside the viewer, in its layer; relabel it there, then delete it.
            item = alice.locator("#annotation-list li")
            expect(item).to_have_count(1)
            expect(item.locator(".annotation-name")).to_have_text("rectangle mitosis")
            expect(alice.locator("#layers li")).to_have_text(re.compile(r"mitosis\s*1"))
            alice.fill("#ann-label", "mitotic figure")
            item.get_by_role("button", name="Relabel").click()
            expect(item.locator(".annotation-name")).to_have_text("rectangle mitotic figure")
            alice.reload()
            expect(alice.locator("#annotation-list li .annotation-name")).to_have_text(
                "rectangle mitotic figure", timeout=20_000
            )
            alice.wait_for_function("() => window.viewer && viewer.world.getItemCount()")
            # A layer hidden is not painted; shown again, it is.
            alice.locator("#layers input[type=checkbox]").uncheck()
            expect(shapes).to_have_attribute("data-shapes", "0")
            expect(alice.locator("#annotation-list li")).to_have_count(0)
            alice.locator("#layers input[type=checkbox]").check()
            expect(shapes).to_have_attribute("data-shapes", "1")

            _ruler(alice)
            _accessible(alice)
            _screenshot(alice, "viewer.png")
            alice.locator("#annotation-list li").get_by_role("button", name="Delete").click()
            expect(shapes).to_have_attribute("data-shapes", "0")
            assert _annotations_saved(alice) == 0

            _export_from_the_viewer(alice)
            _side_by_side(alice)
            _shared_view(alice, bob, browser, portal_url)
            _keys(alice, case_url)

            material_page = alice.url.removesuffix("/view")
            _download_the_original(alice, bob, material_page)
            _accessible(alice)
            alice.goto(team_url)
            expect(alice.locator("#storage-used")).to_contain_text("MB of")
            _accessible(alice)
            assert not errors, errors
            _run_tissue_and_see_its_layer(alice, material_page)
            _a_per_patch_model_shows_its_heatmap(alice, material_page, tmp_path)
            _run_on_every_slide_of_the_case(alice, case_page)
            _delete_a_task(alice, material_page)
            _iiif_in_a_stock_viewer_on_another_origin(alice, material_page)

            # Alice is not in Bob's team: his case does not exist for her.
            response = alice.goto(bob_case)
            assert response is not None and response.status == 404
        finally:
            browser.close()


@contextlib.contextmanager
def signed_in_page(url: str, cookies: httpx.Cookies) -> Iterator[Any]:
    """A chromium page holding the session a test opened over HTTP (its cookies for
    ``url``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": c.name, "value": c.value or "", "url": url} for c in cookies.jar]
            )
            page = context.new_page()
            yield page
        finally:
            browser.close()


def console_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Errors the page logs or throws, as they come (shared list, checked at the end)."""
    found: list[str] = []
    page.on(
        "console", lambda m: found.append(f"{page.url}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: found.append(f"{page.url}: {e}"))
    return found


def _upload(page, path: Path, count: int) -> None:  # type: ignore[no-untyped-def]
    """Attach a file through the case page; wait until ``count`` slides can be viewed."""
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-form button")
    page.wait_for_function(
        "(n) => document.querySelectorAll('#materials a[role=button][href$=\"/view\"]').length >= n"
        " || document.querySelector('#upload-error')?.textContent",
        arg=count,
        timeout=60_000,
    )
    error = page.locator("#upload-error")
    assert not (error.count() and error.text_content()), error.text_content()


def _thumbnails_render(page) -> None:  # type: ignore[no-untyped-def]
    """Every slide card shows its thumbnail (loaded from the node, not blank)."""
    from PIL import Image

    thumbs = page.locator("#materials img.thumb")
    assert thumbs.count() == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('#materials img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    for i in range(thumbs.count()):
        image = Image.open(BytesIO(thumbs.nth(i).screenshot())).convert("L")
        assert statistics.pvariance(list(image.getdata())) > 100, f"thumbnail {i} is blank"


def _accessible(page) -> None:  # type: ignore[no-untyped-def]
    """Lighthouse's basics: every image has alt text, every form control a label."""
    missing = page.evaluate(
        """() => {
            const bad = [];
            for (const img of document.querySelectorAll("img")) {
                if (!(img.getAttribute("alt") || "").trim()) bad.push(`img ${img.src}`);
            }
            const controls = "input:not([type=hidden]):not([type=submit]), select, textarea";
            for (const el of document.querySelectorAll(controls)) {
                const named = el.labels?.length || el.getAttribute("aria-label")
                    || el.getAttribute("aria-labelledby");
                if (!named) bad.push(`${el.tagName} ${el.name || el.id}`);
            }
            return bad;
        }"""
    )
    assert not missing, (page.url, missing)


def _screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """For ``nox -s screenshots``: the page as a reviewer sees it, small (palette PNG)."""
    folder = os.environ.get("LABPORTAL_SCREENSHOTS")
    if not folder:
        return
    from PIL import Image

    Path(folder).mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import TimeoutError as Slow

    page.evaluate("window.scrollTo(0, 0)")
    with contextlib.suppress(Slow):  # best effort: a picture, not a check
        page.wait_for_function(
            "() => !window.viewer || viewer.world.getItemAt(0)?.getFullyLoaded()", timeout=10_000
        )
    page.wait_for_timeout(2000)  # tiles fade in
    image = Image.open(BytesIO(page.screenshot(full_page=False))).convert("RGB")
    image = image.resize((1024, round(image.height * 1024 / image.width)), Image.Resampling.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
        Path(folder) / name, optimize=True
    )


def _annotations_saved(page) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate(  # type: ignore[no-any-return]
        """async () => {
            const id = location.pathname.split("/")[2];
            const r = await fetch(`/api/materials/${id}/annotations`);
            return (await r.json()).items.length;
        }"""
    )


def _ruler(page) -> None:  # type: ignore[no-untyped-def]
    """At 10× (from the slide's 20× objective), a 1000-pixel ruler reads mpp × 1000 µm within
    1%; nothing is saved unless asked."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="10×", exact=True).click()
    expect(page.locator("#zoom-level")).to_have_text("10×", timeout=10_000)
    # The zoom animation has ended: the current zoom and centre are the target ones (a
    # fixed wait was not enough on a loaded machine: the ruler's ends moved under it).
    page.wait_for_function(
        """() => {
            if (viewer.world.getItemCount() !== 1) return false;  // not reopening
            const v = viewer.viewport;
            const a = v.getCenter(true), b = v.getCenter(false);
            return Math.abs(v.getZoom(true) - v.getZoom(false)) < 1e-9 * v.getZoom(false)
                && Math.abs(a.x - b.x) < 1e-9 && Math.abs(a.y - b.y) < 1e-9;
        }""",
        timeout=20_000,
    )
    page.wait_for_timeout(300)
    page.click("#ruler")
    ends = page.evaluate(
        """() => {
            const v = viewer.viewport, r = document.getElementById("stage").getBoundingClientRect();
            const c = v.viewportToImageCoordinates(v.getCenter(true));
            return [[c.x - 500, c.y], [c.x + 500, c.y]].map(([x, y]) => {
                const p = v.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
                return [p.x + r.left, p.y + r.top];
            });
        }"""
    )
    saved = _annotations_saved(page)
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.id", ends[0])
    assert hit == "overlay", (hit, ends, page.evaluate("[measuring, scrollY, innerHeight]"))
    page.mouse.move(*ends[0])
    page.mouse.down()
    page.mouse.move(*ends[1], steps=8)
    page.mouse.up()
    result = page.locator("#measure-result")
    expected = MPP * 1000
    um = float(result.get_attribute("data-um") or "nan")
    assert abs(um - expected) <= expected * 0.01, (um, expected, result.text_content())
    assert (result.text_content() or "").endswith(" µm")
    assert _annotations_saved(page) == saved, "a measurement was saved without asking"
    expect(page.locator("#save-measure")).to_be_visible()


def _side_by_side(page) -> None:  # type: ignore[no-untyped-def]
    """Compare with the case's other slide: panning either one moves both."""
    page.keyboard.press("Escape")  # the ruler off
    page.select_option("#compare", label=COMPANION.name)
    page.wait_for_function(
        "() => window.viewer2 && viewer2.world.getItemCount()"
        " && viewer2.world.getItemAt(0).getFullyLoaded()",
        timeout=30_000,
    )
    centres = (
        "() => [viewer, viewer2].map(v => [v.viewport.getCenter(true).x,"
        " v.viewport.getCenter(true).y, v.viewport.getZoom(true)])"
    )
    for stage in ("#stage", "#stage2"):
        before = page.evaluate(centres)
        box = page.locator(stage).bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 120, y - 80, steps=8)
        page.mouse.up()
        page.wait_for_timeout(1500)
        after = page.evaluate(centres)
        for i in range(2):
            assert abs(after[i][0] - before[i][0]) > 0.01, (stage, before, after)
        assert after[0] == pytest.approx(after[1], rel=1e-6, abs=1e-9), (stage, after)
    page.select_option("#compare", "")
    expect_hidden = page.locator("#stage2")
    assert expect_hidden.is_hidden()


def _shared_view(alice, bob, browser, base: str) -> None:  # type: ignore[no-untyped-def]
    """A link to this place and zoom: a member opens it there; someone outside the team
    gets nothing (the link carries no token)."""
    alice.evaluate(
        "viewer.viewport.zoomBy(1.7, null, true); viewer.viewport.panBy("
        "new OpenSeadragon.Point(0.05, 0.07), true)"
    )
    alice.wait_for_timeout(500)
    alice.click("#share-view")
    link = alice.input_value("#share-link")
    assert "token" not in link and link.startswith(base + "/materials/")
    where = (
        "() => { const v = viewer.viewport, c = v.viewportToImageCoordinates(v.getCenter(true));"
        " return [c.x, c.y, v.viewportToImageZoom(v.getZoom(true))]; }"
    )
    expected = alice.evaluate(where)
    bob.goto(link)
    bob.wait_for_function("() => window.viewer && viewer.world.getItemCount()", timeout=30_000)
    bob.wait_for_timeout(500)
    got = bob.evaluate(where)
    assert got[0] == pytest.approx(expected[0], abs=2) and got[1] == pytest.approx(
        expected[1], abs=2
    )
    assert got[2] == pytest.approx(expected[2], rel=0.005), (got, expected)
    carol = browser.new_context().new_page()
    _register(carol, base, "Carol")
    response = carol.goto(link)
    assert response is not None and response.status == 404


def _keys(page, case_url: str) -> None:  # type: ignore[no-untyped-def]
    """r rotates, ] opens the case's next slide, [ comes back."""
    page.click("#osd")
    page.keyboard.press("r")
    page.wait_for_function("() => viewer.viewport.getRotation() === 90")
    here = page.url.split("?")[0]
    page.keyboard.press("]")
    page.wait_for_url(lambda url: url.split("?")[0] != here and url.endswith("/view"))
    page.wait_for_function("() => window.viewer && viewer.world.getItemCount()", timeout=30_000)
    page.keyboard.press("[")
    page.wait_for_url(here)
    page.wait_for_function("() => window.viewer && viewer.world.getItemCount()", timeout=30_000)


def _export_from_the_viewer(page) -> None:  # type: ignore[no-untyped-def]
    """Anyone who may view exports what is in view: PNG as on screen, TIFF at level 1."""
    from PIL import Image

    for level, fmt, magic in (("auto", "png", b"\x89PNG"), ("1", "tiff", b"II*\x00")):
        page.select_option("#export-level", level)
        page.select_option("#export-format", fmt)
        with page.expect_download(timeout=60_000) as info:
            page.click("#export-view")
        download = info.value
        assert download.suggested_filename.endswith(f".{fmt}"), download.suggested_filename
        data = Path(download.path()).read_bytes()
        assert data.startswith(magic), data[:8]
        with Image.open(BytesIO(data)) as image:
            assert image.width > 16 and image.height > 16
            assert statistics.pvariance(list(image.convert("L").getdata())) > 10
    assert not page.locator("#error").text_content()


def _download_the_original(alice, bob, material_page: str) -> None:  # type: ignore[no-untyped-def]
    """The owner may have the file (labels are for admins here); a plain member may not."""
    alice.goto(material_page)
    link = alice.locator("#download-original")
    expect_visible(link)
    with alice.expect_download(timeout=60_000) as info:
        link.click()
    got = hashlib.sha256(Path(info.value.path()).read_bytes()).hexdigest()
    assert got == hashlib.sha256(SLIDE.read_bytes()).hexdigest()
    bob.goto(material_page)
    bob.wait_for_function("() => document.querySelector('#slide-facts tr')", timeout=20_000)
    assert bob.locator("#download").is_hidden()
    refused = bob.request.get(
        material_page.replace("/materials/", "/api/materials/") + "/download", max_redirects=0
    )
    assert refused.status == 403, refused.text()


def _run_tissue_and_see_its_layer(page, material_page: str) -> None:  # type: ignore[no-untyped-def]
    """Run ``tissue`` from the material page (a bad parameter first: the server's reason at
    its field), wait for it to succeed, read its summary and provenance, then see its features
    as a layer in the viewer and toggle it off. No console errors on the way."""
    from playwright.sync_api import expect

    page.goto(material_page)
    choice = page.locator("#model-choice option").filter(has_text=re.compile(r"^tissue "))
    expect(choice).to_have_count(1, timeout=20_000)
    page.select_option("#model-choice", choice.get_attribute("value"))
    field = page.locator('label[data-param="saturation_threshold"]')
    field.locator("input").fill("0")  # exclusiveMinimum 0: the server refuses it, not the page
    page.click("#run-model-button")
    expect(field.locator(".param-error")).to_contain_text("saturation_threshold")
    expect(page.locator("#task-list tbody tr")).to_have_count(0)
    field.locator("input").fill("")  # the model's default

    errors: list[str] = []

    def console_error(message) -> None:  # type: ignore[no-untyped-def]
        # The browser's own favicon request is not the page's doing.
        url = message.location.get("url", "")
        if message.type == "error" and not url.endswith("/favicon.ico"):
            errors.append(f"{message.text} ({url})")

    page.on("console", console_error)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.click("#run-model-button")
    row = page.locator("#task-list tbody tr")
    expect(row).to_have_count(1)
    page.wait_for_function(
        "() => ['succeeded', 'failed', 'cancelled'].includes("
        "document.querySelector('#task-list tbody tr')?.dataset.status)",
        timeout=120_000,
    )
    assert row.get_attribute("data-status") == "succeeded", row.text_content()
    expect(row.locator(".task-status")).to_have_text("succeeded")
    expect(page.locator("#task-result")).to_be_visible()
    fraction = page.locator('#task-summary dd[data-key="tissue_fraction"]').text_content() or ""
    assert 0 < float(fraction) <= 1, fraction
    assert page.locator("#task-provenance-json").is_hidden()  # on demand
    page.click("#task-provenance summary")
    expect(page.locator("#task-provenance-json")).to_contain_text('"tissue"')

    row.get_by_role("link", name="view").click()
    page.wait_for_url("**/view")
    layer = page.locator("#task-layers li")
    expect(layer).to_have_count(1, timeout=20_000)
    expect(layer.locator(".task-layer-name")).to_have_text(re.compile(r"^tissue \S+$"))
    shapes = page.locator("#task-overlay g.task-layer path.task-feature")
    expect(shapes.first).to_be_visible(timeout=30_000)
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('#task-overlay path.task-feature')].filter(p => {
            const r = p.getBoundingClientRect();
            return r.width > 2 && r.height > 2 && p.getAttribute('d').length > 10;
        }).length"""
    )
    assert drawn >= 1, "the tissue layer draws no shapes"
    layer.locator("input.task-layer-toggle").uncheck()
    expect(shapes.first).to_be_hidden()
    layer.locator("input.task-layer-toggle").check()
    expect(shapes.first).to_be_visible()
    assert not errors, errors
    assert not page.locator("#error").text_content()


def _a_per_patch_model_shows_its_heatmap(page, material_page: str, tmp: Path) -> None:  # type: ignore[no-untyped-def]
    """A team's ONNX patch classifier (registered by its admin), run from the material page:
    in the viewer its heatmap lies over the slide at its level-0 bounds, with an opacity
    slider and a class chooser, and hides with its layer."""
    from playwright.sync_api import expect

    page.goto(material_page)
    team = page.locator("#tasks-panel").get_attribute("data-team")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    model = build_onnx(tmp / "tiny.onnx")
    registered = page.request.post(
        f"{material_page.split('/materials/')[0]}/api/teams/{team}/models",
        headers={"X-CSRF-Token": csrf},
        multipart={
            "file": {
                "name": "tiny.onnx",
                "mimeType": "application/octet-stream",
                "buffer": model.read_bytes(),
            },
            "manifest": manifest(name="patches", version="2"),
        },
    )
    assert registered.status == 201, registered.text()
    page.reload()
    choice = page.locator("#model-choice option").filter(has_text="patches 2")
    expect(choice).to_have_count(1, timeout=20_000)
    page.select_option("#model-choice", choice.get_attribute("value"))
    page.click("#run-model-button")
    row = page.locator('#task-list tbody tr:has-text("patches 2")')
    expect(row).to_have_attribute("data-status", "succeeded", timeout=120_000)

    row.get_by_role("link", name="view").click()
    page.wait_for_url("**/view")
    layer = page.locator("#task-layers li").filter(has_text="patches 2")
    heatmap = page.locator("img.task-heatmap")
    expect(heatmap).to_have_count(1, timeout=20_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.task-heatmap');"
        " return i && i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 20; }",
        timeout=20_000,
    )
    # At its level-0 bounds: the image's box is where the viewer puts those pixels.
    placed = page.evaluate(
        """async () => {
            const img = document.querySelector('img.task-heatmap');
            const r = await (await fetch(`/api/tasks/${img.dataset.task}/result`)).json();
            const v = window.slideViewer, h = r.heatmap;
            const a = v.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(h.x, h.y));
            const b = v.viewport.imageToViewerElementCoordinates(
                new OpenSeadragon.Point(h.x + h.width, h.y + h.height));
            const box = img.getBoundingClientRect(), stage = v.element.getBoundingClientRect();
            return [box.left - stage.left - a.x, box.top - stage.top - a.y,
                    box.width - (b.x - a.x), box.height - (b.y - a.y), r.heatmap.classes];
        }"""
    )
    assert all(abs(d) < 2 for d in placed[:4]), placed
    layer.locator("input.heatmap-opacity").fill("0.2")
    expect(heatmap).to_have_attribute("style", re.compile(r"opacity: 0\.2"))
    assert placed[4] == ["tumour", "stroma"]
    layer.locator("select.heatmap-class").select_option("stroma")
    expect(heatmap).to_have_attribute("src", re.compile(r"class=stroma$"))
    page.wait_for_function(
        "() => { const i = document.querySelector('img.task-heatmap');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    layer.locator("input.task-layer-toggle").uncheck()
    expect(heatmap).to_be_hidden()
    assert not page.locator("#error").text_content()


def _run_on_every_slide_of_the_case(page, case_page: str) -> None:  # type: ignore[no-untyped-def]
    """The case page runs a model on each of its slides and shows each slide's newest task
    of each model (the one slide here already has a tissue task: a new one replaces it)."""
    from playwright.sync_api import expect

    page.goto(case_page)
    tissue = page.locator("#case-task-status tr[data-material] .case-task").filter(
        has_text=re.compile(r"^tissue ")
    )
    expect(tissue).to_have_count(1, timeout=20_000)
    expect(tissue).to_have_attribute("data-status", "succeeded")
    before = tissue.get_attribute("data-task")
    choice = page.locator("#model-choice option").filter(has_text=re.compile(r"^tissue "))
    page.select_option("#model-choice", choice.get_attribute("value"))
    page.click("#run-model-button")
    page.wait_for_function(
        """(before) => [...document.querySelectorAll('#case-task-status .case-task')]
            .some(e => e.textContent.startsWith('tissue ') && e.dataset.task !== before
                       && e.dataset.status === 'succeeded')""",
        arg=before,
        timeout=120_000,
    )
    # One newest tissue task per slide of the case (the case holds two by now).
    slides = page.locator("#case-task-status tr[data-material]").count()
    assert slides >= 2
    expect(tissue).to_have_count(slides, timeout=120_000)
    assert not page.locator("#error").text_content()


def _delete_a_task(page, material_page: str) -> None:  # type: ignore[no-untyped-def]
    """A member deletes a task from the material page: gone from the list and the API."""
    from playwright.sync_api import expect

    page.goto(material_page)
    rows = page.locator("#task-list tbody tr")
    expect(rows).to_have_count(3, timeout=20_000)  # tissue twice, the classifier once
    oldest = rows.last
    task = oldest.get_attribute("data-task")
    page.once("dialog", lambda dialog: dialog.accept())
    oldest.locator("button.task-delete").click()
    expect(rows).to_have_count(2)
    expect(page.locator(f'#task-list tr[data-task="{task}"]')).to_have_count(0)
    gone = page.request.get(material_page.split("/materials/")[0] + f"/api/tasks/{task}")
    assert gone.status == 404, gone.text()


def expect_visible(locator) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    expect(locator).to_be_visible(timeout=20_000)


def _iiif_in_a_stock_viewer_on_another_origin(page, material_page: str) -> None:  # type: ignore[no-untyped-def]
    """OpenSeadragon's IIIF tile source follows info.json's ``id`` (no query string): with
    the read token in the service path, every tile loads, cross-origin."""
    material = material_page.rsplit("/", 1)[1]
    ticket = page.evaluate(
        """async (id) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(`/api/materials/${id}/view`,
                                  {method: "POST", headers: {"X-CSRF-Token": csrf}});
            return await r.json();
        }""",
        material,
    )
    node = ticket["dzi_urls"][0].split("/slides/")[0]
    token = tokens.mint(SECRET, ops={Operation.READ}, blob=ticket["blob_id"], ttl=300)
    info = f"{node}/iiif/3/t/{token}/{ticket['blob_id']}/info.json"
    with _static_site(info) as url:
        tiles: list[int] = []
        page.on(
            "response",
            lambda r: (
                tiles.append(r.status) if "/iiif/3/" in r.url and "/default." in r.url else None
            ),
        )
        page.goto(url)
        page.wait_for_function(
            "() => window.viewer && viewer.world.getItemCount() === 1"
            " && viewer.world.getItemAt(0).getFullyLoaded()",
            timeout=60_000,
        )
        assert tiles and all(status == 200 for status in tiles), tiles
        assert page.evaluate("viewer.world.getItemAt(0).source.id") == info.removesuffix(
            "/info.json"
        )


@contextlib.contextmanager
def _static_site(info_url: str) -> Iterator[str]:
    """A page on its own origin (another port) with the portal's vendored OpenSeadragon."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="iiif-site-") as tmp:
        root = Path(tmp)
        shutil.copytree(OPENSEADRAGON, root / "osd")
        (root / "index.html").write_text(
            "<!doctype html><div id=v style='width:800px;height:600px'></div>"
            "<script src='osd/openseadragon.min.js'></script><script>"
            "window.viewer = OpenSeadragon({id: 'v', prefixUrl: 'osd/images/',"
            f" crossOriginPolicy: 'Anonymous', tileSources: '{info_url}'}});</script>"
        )
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
        finally:
            server.shutdown()
            server.server_close()
