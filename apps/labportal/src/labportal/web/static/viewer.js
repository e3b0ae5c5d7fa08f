// The slide viewer: OpenSeadragon over a replica's DeepZoom with a short-lived read-only
// token, renewed before it expires (every tile URL is built with the current one), failover
// to the next replica when tiles fail, a scale bar from µm/px, and annotations drawn as an
// SVG overlay in level-0 pixel coordinates.
"use strict";

const box = document.getElementById("stage");
const osd = document.getElementById("osd");
const MATERIAL = box.dataset.material;
const CASE = box.dataset.case;
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
let viewer, ticket, source = 0, failures = 0, annotations = [], draft = null;

async function api(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": CSRF } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(url, init);
  const answer = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.detail || r.statusText);
  return answer;
}

function tileSource(i) {
  return `${ticket.dzi_urls[i]}?token=${encodeURIComponent(ticket.token)}`;
}

// OpenSeadragon fixes a tile's URL when it first plans the tile, and may load it (again)
// long after: hand it a getter instead, so each load uses the token current at that time.
function tokenAtLoadTime(source) {
  const plain = source.getTileUrl.bind(source);
  source.getTileUrl = (level, x, y) => () =>
    `${plain(level, x, y).replace(/\?.*$/, "")}?token=${encodeURIComponent(ticket.token)}`;
}

// A fresh token from the same endpoint at 3/4 of the current one's life; a refusal (removed
// from the team: 404) is shown, a failure retried, and the old token simply runs out.
function renewLater(seconds) {
  setTimeout(async () => {
    try {
      const fresh = await api("POST", `/api/materials/${MATERIAL}/view`);
      ticket.token = fresh.token;
      ticket.expires_in = fresh.expires_in;
      renewLater(fresh.expires_in * 0.75);
    } catch (e) {
      document.getElementById("error").textContent = `viewing access not renewed: ${e.message}`;
      renewLater(Math.min(10, ticket.expires_in / 4));
    }
  }, Math.max(1, seconds) * 1000);
}

function failover() {
  // Another replica, same place on the slide.
  if (ticket.dzi_urls.length < 2) return;
  const bounds = viewer.viewport.getBounds();
  source = (source + 1) % ticket.dzi_urls.length;
  failures = 0;
  viewer.addOnceHandler("open", () => viewer.viewport.fitBounds(bounds, true));
  viewer.open(tileSource(source));
  document.getElementById("viewer-source").textContent = `replica ${source + 1}`;
}

function toScreen(x, y) {
  return viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
}

function toImage(event) {
  const rect = box.getBoundingClientRect();
  const p = new OpenSeadragon.Point(event.clientX - rect.left, event.clientY - rect.top);
  const image = viewer.viewport.viewerElementToImageCoordinates(p);
  return [Math.round(image.x * 10) / 10, Math.round(image.y * 10) / 10];
}

function shape(a) {
  const pts = a.points.map(([x, y]) => toScreen(x, y));
  let el;
  if (a.kind === "point") {
    el = document.createElementNS(SVG, "circle");
    el.setAttribute("cx", pts[0].x); el.setAttribute("cy", pts[0].y); el.setAttribute("r", 5);
  } else if (a.kind === "rectangle") {
    el = document.createElementNS(SVG, "rect");
    el.setAttribute("x", pts[0].x); el.setAttribute("y", pts[0].y);
    el.setAttribute("width", Math.max(1, pts[1].x - pts[0].x));
    el.setAttribute("height", Math.max(1, pts[1].y - pts[0].y));
  } else if (a.kind === "ellipse") {
    el = document.createElementNS(SVG, "ellipse");
    el.setAttribute("cx", (pts[0].x + pts[1].x) / 2); el.setAttribute("cy", (pts[0].y + pts[1].y) / 2);
    el.setAttribute("rx", Math.max(1, (pts[1].x - pts[0].x) / 2));
    el.setAttribute("ry", Math.max(1, (pts[1].y - pts[0].y) / 2));
  } else {
    el = document.createElementNS(SVG, a.kind === "polygon" ? "polygon" : "polyline");
    el.setAttribute("points", pts.map((p) => `${p.x},${p.y}`).join(" "));
  }
  el.setAttribute("stroke", a.color); el.setAttribute("stroke-width", 2);
  el.setAttribute("fill", a.kind === "point" ? a.color : "none");
  el.setAttribute("class", "annotation");
  if (a.id) el.dataset.id = a.id;
  if (a.label) {
    const title = document.createElementNS(SVG, "title");
    title.textContent = a.label; el.append(title);
  }
  return el;
}

function redraw() {
  const svg = document.getElementById("overlay");
  svg.replaceChildren(...annotations.map(shape), ...(draft && draft.points.length ? [shape(draft)] : []));
  scalebar();
}

async function loadAnnotations() {
  const b = viewer.viewport.viewportToImageRectangle(viewer.viewport.getBounds());
  const bbox = [b.x, b.y, b.x + b.width, b.y + b.height].map(Math.round).join(",");
  // The page's own ?class=a,b (the layers to show) goes to the API as is.
  const only = new URLSearchParams(window.location.search).get("class");
  const classes = only ? `&class=${encodeURIComponent(only)}` : "";
  const page = await api("GET", `/api/materials/${MATERIAL}/annotations?bbox=${bbox}&limit=5000${classes}`);
  annotations = page.items;
  redraw();
  renderList();
}

// The list beside the viewer: go to an annotation, relabel it (with the Label field's
// text) or delete it. The server decides who may (author or admin): errors are shown.
function renderList() {
  const list = document.getElementById("annotation-list");
  const writable = Boolean(list.dataset.canWrite);
  list.replaceChildren(...annotations.map((a) => {
    const item = document.createElement("li");
    item.dataset.id = a.id;
    const name = document.createElement("span");
    name.className = "annotation-name";
    name.textContent = `${a.kind} ${a.label || "(no label)"}`;
    name.style.borderLeft = `4px solid ${a.color}`;
    item.append(name, button("Go", () => goTo(a)));
    if (writable) {
      item.append(
        button("Relabel", () => update(a, { label: document.getElementById("ann-label").value })),
        button("Delete", () => remove(a)),
      );
    }
    return item;
  }));
}

function button(text, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", () => action().catch((e) => {
    document.getElementById("error").textContent = e.message;
  }));
  return b;
}

async function goTo(a) {
  const xs = a.points.map((p) => p[0]), ys = a.points.map((p) => p[1]);
  const pad = 50;
  const x = Math.min(...xs) - pad, y = Math.min(...ys) - pad;
  const rect = viewer.viewport.imageToViewportRectangle(
    x, y, Math.max(...xs) - x + pad, Math.max(...ys) - y + pad);
  viewer.viewport.fitBounds(rect);
}

async function update(a, change) {
  const changed = await api("PATCH", `/api/annotations/${a.id}`, change);
  annotations = annotations.map((b) => (b.id === a.id ? changed : b));
  redraw();
  renderList();
}

async function remove(a) {
  await api("DELETE", `/api/annotations/${a.id}`);
  annotations = annotations.filter((b) => b.id !== a.id);
  redraw();
  renderList();
}

function scalebar() {
  if (!ticket.mpp || !viewer.world.getItemCount()) return;
  const zoom = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
  const umPerPx = ticket.mpp / zoom;
  const nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];
  const um = nice.find((n) => n / umPerPx >= 60) || nice[nice.length - 1];
  document.getElementById("scalebar-bar").style.width = `${um / umPerPx}px`;
  document.getElementById("scalebar-text").textContent = um >= 1000 ? `${um / 1000} mm` : `${um} µm`;
}

async function saveDraft() {
  const a = draft;
  draft = null;
  a.label = document.getElementById("ann-label").value;
  annotations.push(await api("POST", `/api/materials/${MATERIAL}/annotations`, a));
  redraw();
  renderList();
}

function setupDrawing() {
  const tool = document.getElementById("tool");
  if (!tool) return;
  const svg = document.getElementById("overlay");
  const finish = document.getElementById("finish-shape");
  tool.addEventListener("change", () => {
    draft = null;
    svg.classList.toggle("drawing", Boolean(tool.value));
    viewer.setMouseNavEnabled(!tool.value);
    finish.hidden = !["polygon", "line"].includes(tool.value);
    redraw();
  });
  const color = () => document.getElementById("ann-color").value;
  svg.addEventListener("pointerdown", (e) => {
    const kind = tool.value;
    if (!kind) return;
    const p = toImage(e);
    if (kind === "point") { draft = { kind, points: [p], color: color() }; saveDraft(); return; }
    if (kind === "rectangle") { draft = { kind, points: [p, p], color: color() }; svg.setPointerCapture(e.pointerId); return; }
    if (!draft) draft = { kind, points: [], color: color() };
    draft.points.push(p);
    redraw();
  });
  svg.addEventListener("pointermove", (e) => {
    if (draft && draft.kind === "rectangle") { draft.points[1] = toImage(e); redraw(); }
  });
  svg.addEventListener("pointerup", () => {
    if (draft && draft.kind === "rectangle") {
      const [[x0, y0], [x1, y1]] = draft.points;
      if (x0 !== x1 && y0 !== y1) saveDraft(); else draft = null;
    }
  });
  finish.addEventListener("click", () => {
    const min = draft && draft.kind === "polygon" ? 3 : 2;
    if (draft && draft.points.length >= min) saveDraft();
  });
}

// Export what is in view (clamped to the slide) at the chosen level: "as on screen" picks the
// level whose pixels are about the screen's. The portal bounds the size (4xx with a reason).
function setupExport() {
  document.getElementById("export-view").addEventListener("click", async () => {
    const b = viewer.viewport.viewportToImageRectangle(viewer.viewport.getBounds());
    const size = viewer.world.getItemAt(0).getContentSize();
    const x = Math.max(0, Math.round(b.x)), y = Math.max(0, Math.round(b.y));
    const width = Math.max(1, Math.min(size.x, Math.round(b.x + b.width)) - x);
    const height = Math.max(1, Math.min(size.y, Math.round(b.y + b.height)) - y);
    const chosen = document.getElementById("export-level").value;
    const onScreen = Math.floor(Math.log2(Math.max(1, width / osd.clientWidth)));
    const level = chosen === "auto" ? Math.max(0, onScreen) : Number(chosen);
    const format = document.getElementById("export-format").value;
    const q = new URLSearchParams({ x, y, width, height, level, format });
    const r = await fetch(`/api/materials/${MATERIAL}/export?${q}`, { credentials: "same-origin" });
    if (!r.ok) {
      const problem = await r.json().catch(() => ({}));
      document.getElementById("error").textContent = `export: ${problem.detail || r.statusText}`;
      return;
    }
    const name = /filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await r.blob());
    link.download = name ? name[1] : `export.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  });
}

function setupThreads() {
  document.getElementById("thread-form")?.addEventListener("submit", async (e) => {
    e.preventDefault();
    const b = viewer.viewport.viewportToImageRectangle(viewer.viewport.getBounds());
    const region = {
      x: Math.max(0, Math.round(b.x)), y: Math.max(0, Math.round(b.y)),
      width: Math.max(1, Math.round(b.width)), height: Math.max(1, Math.round(b.height)),
    };
    const body = e.target.elements.body.value;
    await api("POST", `/api/cases/${CASE}/comments`, { body, material_id: MATERIAL, region });
    window.location.assign(`/cases/${CASE}`);
  });
}

(async () => {
  try {
    ticket = await api("POST", `/api/materials/${MATERIAL}/view`);
  } catch (e) {
    document.getElementById("error").textContent = e.message;
    return;
  }
  viewer = OpenSeadragon({
    element: osd,
    prefixUrl: "/vendor/openseadragon/images/",
    tileSources: tileSource(0),
    showNavigator: true,
    crossOriginPolicy: "Anonymous",
    timeout: 10000,
  });
  // The hook other scripts of the page draw over (task_layers.js: model results).
  window.slideViewer = viewer;
  document.dispatchEvent(new CustomEvent("slide-viewer", { detail: viewer }));
  viewer.world.addHandler("add-item", (e) => tokenAtLoadTime(e.item.source));
  renewLater(ticket.expires_in * 0.75);
  viewer.addHandler("tile-load-failed", (e) => {
    if (++failures >= 3) return failover();
    // A copy that failed its checksums (503 replica_corrupt) or is gone (404) will not get
    // better: ask why and move to the next replica at once (once per replica).
    const at = source;
    const url = e.tile && e.tile.getUrl ? e.tile.getUrl() : null;
    if (!url) return;
    fetch(url)
      .then((r) => (r.ok ? {} : r.json().catch(() => ({}))))
      .then((b) => {
        const bad = b.error === "replica_corrupt" || b.error === "blob_not_found";
        if (bad && source === at) failover();
      })
      .catch(() => {});
  });
  viewer.addHandler("open-failed", failover);
  viewer.addHandler("update-viewport", redraw);
  viewer.addHandler("animation-finish", loadAnnotations);
  viewer.addHandler("open", () => {
    const q = new URLSearchParams(window.location.search);
    if (q.has("x")) {
      const rect = viewer.viewport.imageToViewportRectangle(
        Number(q.get("x")), Number(q.get("y")), Number(q.get("w")), Number(q.get("h")));
      viewer.viewport.fitBounds(rect, true);
    }
    loadAnnotations();
  });
  document.getElementById("viewer-source").textContent = `replica 1 of ${ticket.dzi_urls.length}`;
  setupDrawing();
  setupThreads();
  setupExport();
})();
