"""The index page (every slide, a thumbnail, a viewer link) and the viewer page.

The pages carry no token of their own: in token mode the index is opened with
``?token=<a read token for all slides>`` and its links pass that query on; the viewer hands
its query string to OpenSeadragon's DZI source, which appends it to every tile URL.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from slidestore_server.folder.index import FolderSlide

_STYLE = """
body { font: 15px system-ui, sans-serif; margin: 2rem; color: #222 }
ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 1.5rem }
li { width: 220px } li img { width: 220px; height: 165px; object-fit: contain; background: #eee }
li span { display: block; font-size: 13px; color: #666; word-break: break-all }
"""


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def index_page(slides: list[FolderSlide], root_name: str, query: str) -> str:
    items = "\n".join(
        f'<li><a href="/view/{s.id}{query}"><img loading="lazy" alt="" '
        f'src="/slides/{s.id}/thumbnail?size=256{query.replace("?", "&", 1)}">'
        f"{escape(s.relative)}</a><span>{_size(s.size)} · id {s.id[:12]}…</span></li>"
        for s in slides
    )
    empty = "" if slides else "<p>No slides (.svs, .tif, .ndpi, .mrxs, …) in this folder.</p>"
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{escape(root_name)} · slidestore</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(root_name)}</h1><p>{len(slides)} slides</p>{empty}"
        f'<ul id="slides">{items}</ul></body></html>'
    )


def viewer_page(slide: FolderSlide, viewer_available: bool) -> str:
    if not viewer_available:
        body = (
            "<p>OpenSeadragon was not found: run <code>npm ci --prefix "
            "apps/labportal/frontend</code> or set SLIDESTORE_VIEWER_DIR.</p>"
        )
    else:
        body = (
            '<div id="viewer" style="position:absolute;inset:2.5rem 0 0 0;background:#111">'
            '</div><script src="/viewer/openseadragon/openseadragon.min.js"></script>'
            "<script>window.viewer = OpenSeadragon({id: 'viewer', "
            "prefixUrl: '/viewer/openseadragon/images/', showNavigator: true, "
            f"tileSources: '/slides/{quote(slide.id)}.dzi' + location.search}});</script>"
        )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{escape(slide.relative)}</title></head><body style='margin:0;font:15px "
        f"system-ui'><p style='margin:.6rem 1rem'>{escape(slide.relative)}</p>{body}"
        "</body></html>"
    )
