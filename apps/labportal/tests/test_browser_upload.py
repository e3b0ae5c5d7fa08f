"""Large uploads from the page, in Debian's chromium: the browser hashes the file in a Web
Worker, sends it as parallel tus partial uploads that the node joins, and a file the
cluster already holds is linked without a byte sent (the proof of possession instead)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from .test_browser import ARGS, CHROMIUM, SLIDE, _register, cluster, portal_url

__all__ = ["cluster", "portal_url"]  # module fixtures, shared with the main browser test

BIG = 40 << 20


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A slide followed by filler is still a slide (OpenSlide reads by offsets).
    path = tmp_path_factory.mktemp("big") / "big-slide.svs"
    with path.open("wb") as out:
        out.write(SLIDE.read_bytes())
        out.write(os.urandom(BIG - SLIDE.stat().st_size))
    return path


def _new_case(page, base: str, title: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/teams")
    page.fill("#team-form input[name=name]", f"Lab for {title}")
    page.click("#team-form button")
    page.wait_for_url("**/teams/*")
    page.goto(page.url + "/cases")
    page.fill("#case-form input[name=title]", title)
    page.click("#case-form button")
    page.wait_for_url("**/cases/*")


def _upload(page, path: Path) -> str:  # type: ignore[no-untyped-def]
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-form button")
    page.wait_for_function(
        "() => document.querySelector('#materials a[href$=\"/view\"]')"
        " || document.querySelector('#upload-error')?.textContent",
        timeout=120_000,
    )
    error = page.locator("#upload-error")
    return (error.text_content() or "") if error.count() else ""


def test_a_large_file_is_hashed_in_a_worker_and_sent_in_parallel_parts(
    portal_url: str, big_slide: Path
) -> None:
    from playwright.sync_api import sync_playwright

    expected = hashlib.sha256(big_slide.read_bytes()).hexdigest()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_context().new_page()
            console: list[str] = []  # errors, but a missing favicon's (not this test's)
            page.on(
                "console",
                lambda m: (
                    m.type == "error"
                    and not str(m.location.get("url", "")).endswith("/favicon.ico")
                    and console.append(m.text)
                ),
            )
            sent: list[tuple[str, str, dict[str, str]]] = []
            page.on("request", lambda r: sent.append((r.method, r.url, r.headers)))
            declared: list[str] = []

            def material_created(request) -> None:  # type: ignore[no-untyped-def]
                if request.method == "POST" and request.url.endswith("/materials"):
                    declared.append(json.loads(request.post_data or "{}").get("sha256", ""))

            page.on("request", material_created)
            _register(page, portal_url, "Carol")
            _new_case(page, portal_url, "Big scan")
            assert _upload(page, big_slide) == "", console
            # The worker's sha256 of all 40 MiB is what the portal was told.
            assert declared == [expected]
            tus_posts = [h for m, u, h in sent if m == "POST" and "/uploads" in u]
            partial = [h for h in tus_posts if h.get("upload-concat") == "partial"]
            final = [h for h in tus_posts if h.get("upload-concat", "").startswith("final;")]
            assert len(partial) == 2 and len(final) == 1, tus_posts
            assert final[0]["upload-concat"].count("/uploads/") == 2

            # The same bytes again, in another case: linked, not sent.
            _new_case(page, portal_url, "Same scan again")
            sent.clear()
            assert _upload(page, big_slide) == "", console
            assert not [u for m, u, _ in sent if m in ("POST", "PATCH") and "/uploads" in u]
            assert declared == [expected, expected]
            assert console == []
        finally:
            browser.close()
