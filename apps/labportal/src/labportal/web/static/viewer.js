// The slide viewer: OpenSeadragon over a replica's DeepZoom with a short-lived read-only
// token, renewed before it expires (every tile URL is built with the current one), failover
// to the next replica when tiles fail, a scale bar from µm/px, annotations drawn as an SVG
// canvas in level-0 pixel coordinates (repainted under a new transform as the view moves, so
// 10,000 shapes stay fluid), layers by label, a virtualised list, a ruler and an area tool
// in µm (not saved unless asked), zoom by objective magnification, rotation, full screen,
// keyboard shortcuts, side-by-side comparison with another slide of the case (pan and zoom
// follow) and a shareable link to the current place (the link carries no token: the page
// itself needs a member of the team).
"use strict";

const box = document.getElementById("stage");
const osd = document.getElementById("osd");
const MATERIAL = box.dataset.material;
const CASE = box.dataset.case;
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
const MAGNIFICATIONS = [1, 5, 10, 20, 40];
const ROW = 36; // px per row of the annotation list (matches portal.css)
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
  "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3"];
let viewer, ticket, source = 0, failures = 0, annotations = [], draft = null;
let measure = null, measuring = "";
let compare = null; // {viewer, ticket, material}
let leader = null; // the viewer the user moves; the other follows
const hiddenLayers = new Set();
const shapes = { byColor: null };

function showError(message) {
  document.getElementById("error").textContent = message;
}

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

function tileSource(t, i) {
  return `${t.dzi_urls[i]}?token=${encodeURIComponent(t.token)}`;
}

// OpenSeadragon fixes a tile's URL when it first plans the tile, and may load it (again)
// long after: hand it a getter instead, so each load uses the token current at that time.
function tokenAtLoadTime(tileSourceObject, t) {
  const plain = tileSourceObject.getTileUrl.bind(tileSourceObject);
  tileSourceObject.getTileUrl = (level, x, y) => () =>
    `${plain(level, x, y).replace(/\?.*$/, "")}?token=${encodeURIComponent(t.token)}`;
}

// A fresh token from the same endpoint at 3/4 of the current one's life; a refusal (removed
// from the team: 404) is shown, a failure retried, and the old token simply runs out.
function renewLater(t, material, seconds, alive = () => true) {
  setTimeout(async () => {
    if (!alive()) return;
    try {
      const fresh = await api("POST", `/api/materials/${material}/view`);
      t.token = fresh.token;
      t.expires_in = fresh.expires_in;
      renewLater(t, material, fresh.expires_in * 0.75, alive);
    } catch (e) {
      showError(`viewing access not renewed: ${e.message}`);
      renewLater(t, material, Math.min(10, t.expires_in / 4), alive);
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
  viewer.open(tileSource(ticket, source));
  document.getElementById("viewer-source").textContent = `replica ${source + 1}`;
}

// --- coordinates ---------------------------------------------------------------------

function toScreen(x, y) {
  return viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
}

function toImage(event) {
  const rect = box.getBoundingClientRect();
  const p = new OpenSeadragon.Point(event.clientX - rect.left, event.clientY - rect.top);
  const image = viewer.viewport.viewerElementToImageCoordinates(p);
  return [Math.round(image.x * 10) / 10, Math.round(image.y * 10) / 10];
}

function imageZoom() {
  return viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
}

function objective() {
  if (ticket.magnification) return ticket.magnification;
  return ticket.mpp ? Math.round(10 / ticket.mpp) : null; // 0.25 µm/px ≈ 40×, 0.5 ≈ 20×
}

// The affine map from level-0 pixels to the overlay's pixels (rotation included).
function matrix() {
  const w = ticket.width || 1000, h = ticket.height || 1000;
  const o = toScreen(0, 0), px = toScreen(w, 0), py = toScreen(0, h);
  return [(px.x - o.x) / w, (px.y - o.y) / w, (py.x - o.x) / h, (py.y - o.y) / h, o.x, o.y];
}

// --- annotations: shapes, layers, list -------------------------------------------------

function layerOf(a) {
  return a.label || "(no label)";
}

// Colour by label: the slide's labels in alphabetical order take the palette's colours in turn.
const labelColors = new Map();

function paletteColor(label) {
  if (!labelColors.has(label)) {
    const labels = [...new Set(annotations.map(layerOf))].sort();
    labelColors.clear();
    labels.forEach((l, i) => labelColors.set(l, PALETTE[i % PALETTE.length]));
  }
  return labelColors.get(label) || PALETTE[0];
}

function colorOf(a) {
  return document.getElementById("color-by-label").checked ? paletteColor(layerOf(a)) : a.color;
}

function visible() {
  return annotations.filter((a) => !hiddenLayers.has(layerOf(a)));
}

function shape(a, project) {
  const pts = a.points.map(([x, y]) => project(x, y));
  let el;
  if (a.kind === "point") {
    el = document.createElementNS(SVG, "circle");
    el.setAttribute("cx", pts[0].x); el.setAttribute("cy", pts[0].y); el.setAttribute("r", 5);
  } else if (a.kind === "rectangle") {
    el = document.createElementNS(SVG, "rect");
    el.setAttribute("x", Math.min(pts[0].x, pts[1].x)); el.setAttribute("y", Math.min(pts[0].y, pts[1].y));
    el.setAttribute("width", Math.max(1e-3, Math.abs(pts[1].x - pts[0].x)));
    el.setAttribute("height", Math.max(1e-3, Math.abs(pts[1].y - pts[0].y)));
  } else if (a.kind === "ellipse") {
    el = document.createElementNS(SVG, "ellipse");
    el.setAttribute("cx", (pts[0].x + pts[1].x) / 2); el.setAttribute("cy", (pts[0].y + pts[1].y) / 2);
    el.setAttribute("rx", Math.max(1e-3, Math.abs(pts[1].x - pts[0].x) / 2));
    el.setAttribute("ry", Math.max(1e-3, Math.abs(pts[1].y - pts[0].y) / 2));
  } else {
    el = document.createElementNS(SVG, a.kind === "polygon" ? "polygon" : "polyline");
    el.setAttribute("points", pts.map((p) => `${p.x},${p.y}`).join(" "));
  }
  const color = a.id ? colorOf(a) : a.color;
  el.setAttribute("stroke", color); el.setAttribute("stroke-width", 2);
  el.setAttribute("vector-effect", "non-scaling-stroke");
  el.setAttribute("fill", a.kind === "point" ? color : "none");
  el.setAttribute("class", "annotation");
  if (a.id) el.dataset.id = a.id;
  if (a.label) {
    const title = document.createElementNS(SVG, "title");
    title.textContent = a.label; el.append(title);
  }
  return el;
}

// The saved annotations are painted on a canvas: one Path2D per colour in level-0 pixels,
// rebuilt when the set changes; a move of the view only repaints them under a new transform
// (10,000 shapes stay fluid where as many SVG elements would not). Drafts and measurements,
// a handful of elements, stay in the SVG overlay above.
function rebuildShapes() {
  const byColor = new Map();
  const shown = visible();
  for (const a of shown) {
    const color = colorOf(a);
    if (!byColor.has(color)) byColor.set(color, { path: new Path2D(), points: [] });
    const entry = byColor.get(color);
    const pts = a.points;
    if (a.kind === "point") entry.points.push(pts[0]);
    else if (a.kind === "rectangle") {
      const [[x0, y0], [x1, y1]] = pts;
      entry.path.rect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    } else if (a.kind === "ellipse") {
      const [[x0, y0], [x1, y1]] = pts;
      const rx = Math.abs(x1 - x0) / 2, ry = Math.abs(y1 - y0) / 2;
      const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
      entry.path.moveTo(cx + rx, cy);
      entry.path.ellipse(cx, cy, rx, ry, 0, 0, 2 * Math.PI);
    } else {
      entry.path.moveTo(pts[0][0], pts[0][1]);
      for (let i = 1; i < pts.length; i++) entry.path.lineTo(pts[i][0], pts[i][1]);
      if (a.kind === "polygon") entry.path.closePath();
    }
  }
  shapes.byColor = byColor;
  document.getElementById("annotation-canvas").dataset.shapes = String(shown.length);
  redraw();
}

function paint() {
  const canvas = document.getElementById("annotation-canvas");
  const ratio = window.devicePixelRatio || 1;
  const w = Math.round(box.clientWidth * ratio), h = Math.round(box.clientHeight * ratio);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, w, h);
  if (!shapes.byColor) return;
  const [a, b, c, d, e, f] = matrix();
  const scale = Math.max(1e-9, Math.hypot(a, b));
  for (const [color, { path, points }] of shapes.byColor) {
    ctx.setTransform(a * ratio, b * ratio, c * ratio, d * ratio, e * ratio, f * ratio);
    ctx.lineWidth = 2 / scale;
    ctx.strokeStyle = color;
    ctx.stroke(path);
    if (!points.length) continue;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = color;
    ctx.beginPath();
    for (const [x, y] of points) {
      const sx = a * x + c * y + e, sy = b * x + d * y + f;
      ctx.moveTo(sx + 5, sy);
      ctx.arc(sx, sy, 5, 0, 2 * Math.PI);
    }
    ctx.fill();
  }
}

function redraw() {
  if (!viewer || !viewer.world.getItemCount()) return;
  paint();
  const screen = [];
  if (draft && draft.points.length) screen.push(shape(draft, toScreen));
  if (measure) screen.push(...measureShapes());
  document.getElementById("overlay").replaceChildren(...screen);
  scalebar();
  zoomLevel();
}

async function loadAnnotations() {
  // The page's own ?class=a,b (the layers to show) goes to the API as is.
  const only = new URLSearchParams(window.location.search).get("class");
  const classes = only ? `&class=${encodeURIComponent(only)}` : "";
  const all = [];
  for (let offset = 0; offset < 50000; offset += 5000) {
    const page = await api("GET", `/api/materials/${MATERIAL}/annotations?limit=5000&offset=${offset}${classes}`);
    all.push(...page.items);
    if (!page.truncated) break;
  }
  // Shapes drawn while the list was on its way stay.
  const loaded = new Set(all.map((a) => a.id));
  annotations = all.concat(annotations.filter((a) => !loaded.has(a.id)));
  changed();
}

function changed() {
  labelColors.clear();
  rebuildShapes();
  renderLayers();
  renderList();
}

function renderLayers() {
  const counts = new Map();
  for (const a of annotations) counts.set(layerOf(a), (counts.get(layerOf(a)) || 0) + 1);
  const list = document.getElementById("layers");
  list.replaceChildren(...[...counts].sort(([x], [y]) => x.localeCompare(y)).map(([label, n]) => {
    const li = document.createElement("li");
    const check = document.createElement("input");
    check.type = "checkbox"; check.checked = !hiddenLayers.has(label); check.dataset.layer = label;
    check.addEventListener("change", () => {
      if (check.checked) hiddenLayers.delete(label); else hiddenLayers.add(label);
      rebuildShapes(); renderList();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    const sample = annotations.find((a) => layerOf(a) === label);
    swatch.style.background = colorOf(sample);
    const name = document.createElement("span");
    name.className = "layer-name"; name.textContent = label;
    const count = document.createElement("span");
    count.className = "layer-count muted"; count.textContent = n.toLocaleString("en");
    const label_ = document.createElement("label");
    label_.append(check, swatch, name);
    li.append(label_, count);
    return li;
  }));
  if (!counts.size) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = document.getElementById("tool")
      ? "No annotations yet: choose a shape under Draw and drag on the slide."
      : "No annotations on this slide.";
    list.append(li);
  }
  const known = document.getElementById("known-labels");
  if (known) {
    known.replaceChildren(...[...counts.keys()].filter((l) => l !== "(no label)").map((l) => {
      const o = document.createElement("option"); o.value = l; return o;
    }));
  }
}

// The list beside the viewer, virtualised: only the rows in sight exist in the page. Go to
// an annotation, relabel it (with the Label field's text) or delete it. The server decides
// who may (author or admin): errors are shown.
function renderList() {
  const list = document.getElementById("annotation-list");
  const scroller = document.getElementById("annotation-scroll");
  const rows = visible();
  document.getElementById("annotation-count").textContent =
    `${rows.length.toLocaleString("en")} shown of ${annotations.length.toLocaleString("en")}`;
  list.style.height = `${rows.length * ROW}px`;
  const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - 5);
  const last = Math.min(rows.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW) + 5);
  const writable = Boolean(list.dataset.canWrite);
  const items = [];
  for (let i = first; i < last; i++) {
    const a = rows[i];
    const item = document.createElement("li");
    item.dataset.id = a.id;
    item.style.top = `${i * ROW}px`;
    const name = document.createElement("span");
    name.className = "annotation-name";
    name.textContent = `${a.kind} ${a.label || "(no label)"}`;
    name.style.borderLeft = `4px solid ${colorOf(a)}`;
    item.append(name, button("Go", () => goTo(a), `Go to ${a.kind} ${a.label}`));
    if (writable) {
      item.append(
        button("Relabel", () => update(a, { label: document.getElementById("ann-label").value })),
        button("Delete", () => remove(a)),
      );
    }
    items.push(item);
  }
  list.replaceChildren(...items);
}

function button(text, action, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (title) b.title = title;
  b.addEventListener("click", () => Promise.resolve(action()).catch((e) => showError(e.message)));
  return b;
}

function goTo(a) {
  const xs = a.points.map((p) => p[0]), ys = a.points.map((p) => p[1]);
  const pad = 50;
  const x = Math.min(...xs) - pad, y = Math.min(...ys) - pad;
  const rect = viewer.viewport.imageToViewportRectangle(
    x, y, Math.max(...xs) - x + pad, Math.max(...ys) - y + pad);
  viewer.viewport.fitBounds(rect); // animated
}

async function update(a, change) {
  const updated = await api("PATCH", `/api/annotations/${a.id}`, change);
  annotations = annotations.map((b) => (b.id === a.id ? updated : b));
  changed();
}

async function remove(a) {
  await api("DELETE", `/api/annotations/${a.id}`);
  annotations = annotations.filter((b) => b.id !== a.id);
  changed();
}

// --- scale, magnification ------------------------------------------------------------

function scalebar() {
  if (!ticket.mpp || !viewer.world.getItemCount()) return;
  const umPerPx = ticket.mpp / imageZoom();
  const nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];
  const um = nice.find((n) => n / umPerPx >= 60) || nice[nice.length - 1];
  document.getElementById("scalebar-bar").style.width = `${um / umPerPx}px`;
  document.getElementById("scalebar-text").textContent = um >= 1000 ? `${um / 1000} mm` : `${um} µm`;
}

function zoomLevel() {
  const power = objective();
  if (!power) return;
  const mag = imageZoom() * power;
  document.getElementById("zoom-level").textContent = `${mag < 10 ? mag.toFixed(1) : Math.round(mag)}×`;
}

function zoomToMagnification(mag) {
  const power = objective();
  if (!power) return;
  viewer.viewport.zoomTo(viewer.viewport.imageToViewportZoom(mag / power));
}

function setupMagnifications() {
  const group = document.getElementById("magnifications");
  if (!objective()) {
    group.textContent = "magnification unknown";
    return;
  }
  for (const mag of MAGNIFICATIONS) {
    group.append(button(`${mag}×`, () => zoomToMagnification(mag), `Zoom to ${mag}× (key ${MAGNIFICATIONS.indexOf(mag) + 1})`));
  }
  group.append(button("Fit", () => viewer.viewport.goHome(), "The whole slide (0)"));
}

// --- measuring: ruler and area, in µm from the slide's µm per pixel --------------------

function umPerPixel() {
  return ticket.mpp || null;
}

function measured() {
  if (!measure || measure.points.length < 2) return null;
  const mpp = umPerPixel();
  if (measure.kind === "ruler") {
    const [[x0, y0], [x1, y1]] = measure.points;
    const px = Math.hypot(x1 - x0, y1 - y0);
    return { px, um: mpp ? px * mpp : null };
  }
  let twice = 0, perimeter = 0;
  const pts = measure.points;
  for (let i = 0; i < pts.length; i++) {
    const [xa, ya] = pts[i], [xb, yb] = pts[(i + 1) % pts.length];
    twice += xa * yb - xb * ya;
    perimeter += Math.hypot(xb - xa, yb - ya);
  }
  const px2 = Math.abs(twice) / 2;
  return { px: px2, um: mpp ? px2 * mpp * mpp : null, perimeter: mpp ? perimeter * mpp : null };
}

function measureText() {
  const m = measured();
  if (!m) return "";
  if (measure.kind === "ruler") {
    if (m.um === null) return `${m.px.toFixed(1)} px (µm per pixel unknown)`;
    return m.um >= 1000 ? `${(m.um / 1000).toFixed(3)} mm` : `${m.um.toFixed(1)} µm`;
  }
  if (m.um === null) return `${Math.round(m.px)} px² (µm per pixel unknown)`;
  const area = m.um >= 1e6 ? `${(m.um / 1e6).toFixed(3)} mm²` : `${Math.round(m.um).toLocaleString("en")} µm²`;
  return `${area} · perimeter ${m.perimeter >= 1000 ? `${(m.perimeter / 1000).toFixed(2)} mm` : `${m.perimeter.toFixed(0)} µm`}`;
}

function measureShapes() {
  const pts = measure.points.map(([x, y]) => toScreen(x, y));
  const el = document.createElementNS(SVG, measure.kind === "ruler" ? "polyline" : "polygon");
  el.setAttribute("points", pts.map((p) => `${p.x},${p.y}`).join(" "));
  el.setAttribute("class", "measure");
  if (measure.kind === "ruler") el.setAttribute("fill", "none");
  const text = document.createElementNS(SVG, "text");
  const end = pts[pts.length - 1];
  text.setAttribute("x", end.x + 8); text.setAttribute("y", end.y - 8);
  text.setAttribute("class", "measure-text");
  text.textContent = measureText();
  return [el, text];
}

function showMeasure() {
  const out = document.getElementById("measure-result");
  const m = measured();
  out.textContent = measureText();
  out.dataset.um = m && m.um !== null ? String(m.um) : "";
  out.dataset.px = m ? String(m.px) : "";
  const save = document.getElementById("save-measure");
  if (save) save.hidden = !(m && measure.done);
}

function setMeasuring(kind) {
  measuring = measuring === kind ? "" : kind;
  measure = null;
  for (const id of ["ruler", "area"]) {
    document.getElementById(id).setAttribute("aria-pressed", String(measuring === id));
  }
  const tool = document.getElementById("tool");
  if (measuring && tool && tool.value) { tool.value = ""; draft = null; finishVisible(); }
  overlayMode();
  showMeasure();
  redraw();
}

function overlayMode() {
  const tool = document.getElementById("tool");
  const drawing = Boolean(tool && tool.value);
  const svg = document.getElementById("overlay");
  svg.classList.toggle("drawing", drawing);
  svg.classList.toggle("measuring", Boolean(measuring));
  viewer.setMouseNavEnabled(!drawing && !measuring);
}

function setupMeasuring() {
  const svg = document.getElementById("overlay");
  document.getElementById("ruler").addEventListener("click", () => setMeasuring("ruler"));
  document.getElementById("area").addEventListener("click", () => setMeasuring("area"));
  svg.addEventListener("pointerdown", (e) => {
    if (!measuring) return;
    const p = toImage(e);
    measure = { kind: measuring, points: measuring === "ruler" ? [p, p] : [p], done: false };
    svg.setPointerCapture(e.pointerId);
    showMeasure(); redraw();
  });
  svg.addEventListener("pointermove", (e) => {
    if (!measuring || !measure || measure.done) return;
    const p = toImage(e);
    if (measure.kind === "ruler") measure.points[1] = p;
    else {
      const [lx, ly] = measure.points[measure.points.length - 1];
      const step = 3 / imageZoom(); // a vertex every 3 screen pixels
      if (Math.hypot(p[0] - lx, p[1] - ly) >= step) measure.points.push(p);
    }
    showMeasure(); redraw();
  });
  svg.addEventListener("pointerup", () => {
    if (!measuring || !measure) return;
    measure.done = true;
    if (measure.kind === "area" && measure.points.length < 3) measure = null;
    showMeasure(); redraw();
  });
  document.getElementById("save-measure")?.addEventListener("click", async () => {
    if (!measure || !measure.done) return;
    const stride = Math.ceil(measure.points.length / 1000);
    const points = measure.points.filter((_, i) => i % stride === 0);
    const body = {
      kind: measure.kind === "ruler" ? "line" : "polygon",
      points,
      label: `${measure.kind === "ruler" ? "ruler" : "area"} ${measureText()}`.slice(0, 200),
      color: "#ffd600",
    };
    try {
      annotations.push(await api("POST", `/api/materials/${MATERIAL}/annotations`, body));
      measure = null;
      showMeasure();
      changed();
    } catch (e) {
      showError(e.message);
    }
  });
}

// --- drawing annotations -------------------------------------------------------------

async function saveDraft() {
  const a = draft;
  draft = null;
  a.label = document.getElementById("ann-label").value;
  try {
    annotations.push(await api("POST", `/api/materials/${MATERIAL}/annotations`, a));
  } catch (e) {
    showError(e.message);
  }
  changed();
}

function finishVisible() {
  const tool = document.getElementById("tool");
  document.getElementById("finish-shape").hidden = !["polygon", "line"].includes(tool.value);
}

function setupDrawing() {
  const tool = document.getElementById("tool");
  if (!tool) return;
  const svg = document.getElementById("overlay");
  const finish = document.getElementById("finish-shape");
  tool.addEventListener("change", () => {
    draft = null;
    if (tool.value && measuring) setMeasuring(measuring);
    overlayMode();
    finishVisible();
    redraw();
  });
  const color = () => document.getElementById("ann-color").value;
  svg.addEventListener("pointerdown", (e) => {
    const kind = tool.value;
    if (!kind || measuring) return;
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

// --- export, threads ------------------------------------------------------------------

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
      showError(`export: ${problem.detail || r.statusText}`);
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
    try {
      await api("POST", `/api/cases/${CASE}/comments`, { body, material_id: MATERIAL, region });
      window.location.assign(`/cases/${CASE}`);
    } catch (err) {
      showError(err.message);
    }
  });
}

// --- view: rotation, full screen, keys, share ------------------------------------------

function rotate() {
  viewer.viewport.setRotation((viewer.viewport.getRotation() + 90) % 360);
}

function fullScreen() {
  const layout = document.querySelector(".viewer-layout");
  if (document.fullscreenElement) document.exitFullscreen();
  else layout.requestFullscreen().catch((e) => showError(`full screen: ${e.message}`));
}

function goToSlide(which) {
  const id = box.dataset[which];
  if (id) window.location.assign(`/materials/${id}/view`);
}

function setupKeys() {
  // OpenSeadragon's own keys would act twice: the page handles them all.
  viewer.addHandler("canvas-key", (e) => { e.preventDefaultAction = true; });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest("input, textarea, select, [contenteditable]")) return;
    const v = viewer.viewport;
    const b = v.getBounds();
    const pan = { ArrowLeft: [-0.2, 0], ArrowRight: [0.2, 0], ArrowUp: [0, -0.2], ArrowDown: [0, 0.2] }[e.key];
    if (pan) {
      leader = viewer;
      v.panBy(new OpenSeadragon.Point(pan[0] * b.width, pan[1] * b.height));
    } else if (e.key === "+" || e.key === "=") { leader = viewer; v.zoomBy(1.5); }
    else if (e.key === "-" || e.key === "_") { leader = viewer; v.zoomBy(1 / 1.5); }
    else if (e.key === "0") { leader = viewer; v.goHome(); }
    else if (e.key >= "1" && e.key <= "5") { leader = viewer; zoomToMagnification(MAGNIFICATIONS[Number(e.key) - 1]); }
    else if (e.key === "[" || e.key === "PageUp") goToSlide("previous");
    else if (e.key === "]" || e.key === "PageDown") goToSlide("next");
    else if (e.key === "r") rotate();
    else if (e.key === "f") fullScreen();
    else if (e.key === "m") setMeasuring("ruler");
    else if (e.key === "a") setMeasuring("area");
    else if (e.key === "Escape") {
      if (measuring) setMeasuring(measuring);
      draft = null;
      redraw();
    } else return;
    e.preventDefault();
  });
}

function shareLink() {
  const c = viewer.viewport.viewportToImageCoordinates(viewer.viewport.getCenter(true));
  const q = new URLSearchParams({
    cx: c.x.toFixed(1), cy: c.y.toFixed(1), z: imageZoom().toPrecision(6),
  });
  const r = viewer.viewport.getRotation();
  if (r) q.set("r", String(r));
  return `${window.location.origin}/materials/${MATERIAL}/view?${q}`;
}

function setupShare() {
  document.getElementById("share-view").addEventListener("click", () => {
    const field = document.getElementById("share-link");
    field.value = shareLink();
    field.hidden = false;
    field.select();
    navigator.clipboard?.writeText(field.value).catch(() => {});
  });
}

function openAtRequestedPlace() {
  const q = new URLSearchParams(window.location.search);
  const v = viewer.viewport;
  if (q.has("cx") && q.has("cy") && q.has("z")) {
    const [cx, cy, z] = ["cx", "cy", "z"].map((k) => Number(q.get(k)));
    if ([cx, cy, z].every(Number.isFinite) && z > 0) {
      if (q.has("r")) v.setRotation(Number(q.get("r")) || 0, true);
      v.zoomTo(v.imageToViewportZoom(z), null, true);
      v.panTo(v.imageToViewportCoordinates(cx, cy), true);
    }
  } else if (q.has("x")) {
    const rect = v.imageToViewportRectangle(
      Number(q.get("x")), Number(q.get("y")), Number(q.get("w")), Number(q.get("h")));
    v.fitBounds(rect, true);
  }
}

// --- side by side ---------------------------------------------------------------------

function follow(from, to) {
  if (!to || from !== leader) return;
  to.viewport.zoomTo(from.viewport.getZoom(true), null, true);
  to.viewport.panTo(from.viewport.getCenter(true), true);
}

function openViewer(element, t, extra = {}) {
  const v = OpenSeadragon({
    element,
    prefixUrl: "/vendor/openseadragon/images/",
    tileSources: tileSource(t, 0),
    crossOriginPolicy: "Anonymous",
    timeout: 10000,
    maxZoomPixelRatio: 4,
    showRotationControl: false,
    ...extra,
  });
  v.world.addHandler("add-item", (e) => tokenAtLoadTime(e.item.source, t));
  return v;
}

async function startCompare(material) {
  stopCompare();
  if (!material) return;
  const t = await api("POST", `/api/materials/${material}/view`);
  const stage2 = document.getElementById("stage2");
  stage2.hidden = false;
  document.getElementById("stages").classList.add("split");
  const select = document.getElementById("compare");
  document.getElementById("stage2-label").textContent = select.options[select.selectedIndex].text;
  const state = { ticket: t, material, alive: true };
  state.viewer = openViewer(document.getElementById("osd2"), t, { showNavigator: false });
  window.viewer2 = state.viewer;
  renewLater(t, material, t.expires_in * 0.75, () => state.alive && compare === state);
  compare = state;
  const other = state.viewer;
  other.addOnceHandler("open", () => { leader = viewer; follow(viewer, other); });
  other.addHandler("viewport-change", () => follow(other, viewer));
  for (const type of ["pointerdown", "wheel"]) {
    document.getElementById("stage2").addEventListener(type, () => { leader = other; }, { capture: true });
  }
}

function stopCompare() {
  if (!compare) return;
  compare.alive = false;
  compare.viewer.destroy();
  compare = null;
  window.viewer2 = null;
  document.getElementById("stage2").hidden = true;
  document.getElementById("stages").classList.remove("split");
}

function setupCompare() {
  const select = document.getElementById("compare");
  if (!select) return;
  select.addEventListener("change", () => startCompare(select.value).catch((e) => showError(e.message)));
  for (const type of ["pointerdown", "wheel"]) {
    box.addEventListener(type, () => { leader = viewer; }, { capture: true });
  }
  viewer.addHandler("viewport-change", () => follow(viewer, compare && compare.viewer));
}

// --- start ----------------------------------------------------------------------------

(async () => {
  try {
    ticket = await api("POST", `/api/materials/${MATERIAL}/view`);
  } catch (e) {
    showError(`${e.message}. Open the slide's page to see its state, or come back once it is stored.`);
    return;
  }
  const power = objective();
  viewer = openViewer(osd, ticket, {
    showNavigator: true,
    navigatorPosition: "TOP_RIGHT",
    maxZoomPixelRatio: power ? Math.max(2, (1.05 * 40) / power) : 2,
  });
  window.viewer = viewer;
  leader = viewer;
  renewLater(ticket, MATERIAL, ticket.expires_in * 0.75);
  // The hook other scripts of the page draw over (task_layers.js: model results).
  window.slideViewer = viewer;
  document.dispatchEvent(new CustomEvent("slide-viewer", { detail: viewer }));
  // Three failures in a row, not three in a session: a loaded server's odd timeout over
  // an hour of viewing must not reopen the slide (and reset the view) on another replica.
  viewer.addHandler("tile-loaded", () => { failures = 0; });
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
  viewer.addOnceHandler("open", () => {
    openAtRequestedPlace();
    loadAnnotations().catch((e) => showError(e.message));
  });
  document.getElementById("viewer-source").textContent = `replica 1 of ${ticket.dzi_urls.length}`;
  document.getElementById("annotation-scroll").addEventListener("scroll", renderList, { passive: true });
  document.getElementById("color-by-label").addEventListener("change", changed);
  document.getElementById("rotate").addEventListener("click", rotate);
  document.getElementById("fullscreen").addEventListener("click", fullScreen);
  setupMagnifications();
  setupDrawing();
  setupMeasuring();
  setupThreads();
  setupExport();
  setupKeys();
  setupShare();
  setupCompare();
})();
