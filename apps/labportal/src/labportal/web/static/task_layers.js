// Model results in the viewer (issue 15). Each succeeded task of the slide is a read-only
// layer named "<model> <version>" with a visibility toggle. Its features come, like the
// annotations, from bbox queries (GET /api/tasks/{id}/features?bbox=) when the view settles,
// over a margin around the view so small pans ask for nothing; they are drawn once per load
// as SVG paths in level-0 pixels, one group per layer; while the view moves, the painted
// overlay moves as one composited picture, drawn again when the view settles. Per-patch
// models also get their heatmap (heatmap.png at its level-0 bounds) as an OpenSeadragon
// overlay with an opacity slider and, with several classes, a class chooser.
"use strict";

(() => {
  const panel = document.getElementById("task-layers-panel");
  if (!panel) return;
  const MATERIAL = panel.dataset.material;
  const SVG = "http://www.w3.org/2000/svg";
  const LIMIT = 5000; // features per layer and load
  const MARGIN = 0.5; // fraction of the view fetched around it on each side
  const PALETTE = ["#00c853", "#2979ff", "#ff9100", "#d500f9", "#00b8d4", "#ffd600", "#ff1744", "#76ff03"];
  let viewer = null;
  let overlay = null; // <svg id="task-overlay"> over the slide, under the annotations
  const layers = []; // {task, group, visible, loaded: {bbox, truncated} | null, pending, abort, heatmap}

  function colour(name) {
    let h = 0;
    for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  async function getJson(url, signal) {
    const r = await fetch(url, { credentials: "same-origin", signal });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(answer.detail || r.statusText);
    return answer;
  }

  function showError(e) {
    if (e.name === "AbortError") return;
    document.getElementById("error").textContent = `model results: ${e.message}`;
  }

  // ---- geometry -> SVG path data, in level-0 pixels ----------------------------------

  function ring(coords, close) {
    if (!coords.length) return "";
    const [first, ...rest] = coords;
    return `M${first[0]} ${first[1]}${rest.map((p) => `L${p[0]} ${p[1]}`).join("")}${close ? "Z" : ""}`;
  }

  function pathData(geometry) {
    if (!geometry) return "";
    const c = geometry.coordinates;
    switch (geometry.type) {
      case "Point":
        return `M${c[0]} ${c[1]}h0`;
      case "MultiPoint":
        return c.map((p) => `M${p[0]} ${p[1]}h0`).join("");
      case "LineString":
        return ring(c, false);
      case "MultiLineString":
        return c.map((l) => ring(l, false)).join("");
      case "Polygon":
        return c.map((r) => ring(r, true)).join("");
      case "MultiPolygon":
        return c.flatMap((poly) => poly.map((r) => ring(r, true))).join("");
      case "GeometryCollection":
        return geometry.geometries.map(pathData).join("");
      default:
        return "";
    }
  }

  function shape(feature) {
    const path = document.createElementNS(SVG, "path");
    const props = feature.properties || {};
    const cls = props.class ?? "";
    path.setAttribute("d", pathData(feature.geometry));
    path.setAttribute("class", `task-feature ${feature.geometry?.type || ""}`);
    path.setAttribute("stroke", colour(cls));
    path.setAttribute("fill", colour(cls));
    path.dataset.class = cls;
    if (props.score !== undefined && props.score !== null) path.dataset.score = props.score;
    return path;
  }

  // ---- the view -----------------------------------------------------------------------

  // level-0 pixels -> stage pixels: one scale and one offset (OpenSeadragon does not rotate
  // here).
  function current() {
    const origin = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const unit = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(1000, 0));
    return { scale: (unit.x - origin.x) / 1000, x: origin.x, y: origin.y };
  }

  // While the view moves, the painted overlay moves as one picture (a CSS transform of the
  // <svg>, composited, nothing repainted: thousands of shapes cost nothing per frame); once
  // it settles, the shapes are drawn again, sharp, at the new scale. The <svg> is twice the
  // stage in each direction so a pan shows painted shapes up to half a screen away.
  let painted = null; // the view the shapes were last drawn for
  let settleTimer = null;

  function settle() {
    clearTimeout(settleTimer);
    if (!viewer || !viewer.world.getItemCount()) return;
    const now = current();
    const stage = overlay.parentNode; // the <svg> starts half a stage above and left of it
    const w = stage.clientWidth / 2, h = stage.clientHeight / 2;
    const transform = `matrix(${now.scale} 0 0 ${now.scale} ${now.x + w} ${now.y + h})`;
    for (const layer of layers) layer.group.setAttribute("transform", transform);
    overlay.style.transform = "";
    painted = now;
  }

  function follow() {
    if (!viewer || !viewer.world.getItemCount()) return;
    if (!painted) return settle();
    const now = current();
    const k = now.scale / painted.scale;
    overlay.style.transform =
      `translate(${now.x - k * painted.x}px, ${now.y - k * painted.y}px) scale(${k})`;
    clearTimeout(settleTimer);
    settleTimer = setTimeout(settle, 200);
  }

  function viewBox() {
    const b = viewer.viewport.viewportToImageRectangle(viewer.viewport.getBounds(true));
    return [b.x, b.y, b.x + b.width, b.y + b.height];
  }

  function covers(outer, inner) {
    return outer[0] <= inner[0] && outer[1] <= inner[1] && outer[2] >= inner[2] && outer[3] >= inner[3];
  }

  async function load(layer) {
    if (!layer.visible || !viewer || !viewer.world.getItemCount()) return;
    const view = viewBox();
    if (layer.loaded && !layer.loaded.truncated && covers(layer.loaded.bbox, view)) return;
    const w = view[2] - view[0], h = view[3] - view[1];
    const bbox = [view[0] - w * MARGIN, view[1] - h * MARGIN, view[2] + w * MARGIN, view[3] + h * MARGIN].map(Math.round);
    if (layer.loaded && layer.loaded.truncated && layer.loaded.bbox.join() === bbox.join()) return;
    if (layer.pending && covers(layer.pending, view)) return; // on its way
    layer.abort?.abort();
    layer.abort = new AbortController();
    layer.pending = bbox;
    const q = new URLSearchParams({ bbox: bbox.join(","), limit: String(LIMIT) });
    let collection;
    try {
      collection = await getJson(`/api/tasks/${layer.task.id}/features?${q}`, layer.abort.signal);
    } finally {
      if (layer.pending === bbox) layer.pending = null;
    }
    const features = collection.features || [];
    layer.group.replaceChildren(...features.map(shape));
    layer.loaded = { bbox, truncated: collection.truncated ?? features.length >= LIMIT };
    layer.count.textContent = layer.loaded.truncated
      ? ` (the first ${features.length} in view)`
      : ` (${features.length} in view)`;
    settle();
  }

  function loadAll() {
    for (const layer of layers) load(layer).catch(showError);
  }

  // ---- heatmaps -------------------------------------------------------------------------

  function placeHeatmap(layer) {
    const hm = layer.heatmap;
    if (!hm || !viewer || !viewer.world.getItemCount()) return;
    if (viewer.getOverlayById(hm.img)) viewer.removeOverlay(hm.img);
    const rect = viewer.viewport.imageToViewportRectangle(hm.x, hm.y, hm.width, hm.height);
    viewer.addOverlay({ element: hm.img, location: rect });
  }

  function heatmapControls(layer, heatmap) {
    const img = document.createElement("img");
    img.className = "task-heatmap";
    img.alt = `${layer.task.model} heatmap`;
    img.dataset.task = layer.task.id;
    const url = (cls) => (cls ? `${heatmap.url}?${new URLSearchParams({ class: cls })}` : heatmap.url);
    const classes = heatmap.classes || [];
    img.src = url(classes[0]);
    layer.heatmap = { ...heatmap, img };
    const slider = document.createElement("input");
    slider.type = "range";
    slider.min = "0";
    slider.max = "1";
    slider.step = "0.05";
    slider.value = "0.6";
    slider.className = "heatmap-opacity";
    slider.title = "heatmap opacity";
    img.style.opacity = slider.value;
    slider.addEventListener("input", () => {
      img.style.opacity = slider.value;
    });
    const label = document.createElement("label");
    label.className = "heatmap-controls";
    label.append("heatmap opacity ", slider);
    if (classes.length > 1) {
      const select = document.createElement("select");
      select.className = "heatmap-class";
      for (const c of classes) select.append(new Option(c, c));
      select.addEventListener("change", () => {
        img.src = url(select.value);
      });
      label.append(" class ", select);
    }
    placeHeatmap(layer);
    return label;
  }

  // ---- the list of layers ---------------------------------------------------------------

  function addLayer(task) {
    const group = document.createElementNS(SVG, "g");
    group.setAttribute("class", "task-layer");
    group.dataset.task = task.id;
    overlay.append(group);
    const item = document.createElement("li");
    item.dataset.task = task.id;
    const toggle = document.createElement("input");
    toggle.type = "checkbox";
    toggle.checked = true;
    toggle.className = "task-layer-toggle";
    const name = document.createElement("span");
    name.className = "task-layer-name";
    name.textContent = `${task.model} ${task.model_version}`;
    const count = document.createElement("span");
    count.className = "task-layer-count";
    const label = document.createElement("label");
    label.append(toggle, " ", name, count);
    item.append(label);
    const layer = { task, group, visible: true, loaded: null, pending: null, abort: null, heatmap: null, count };
    toggle.addEventListener("change", () => {
      layer.visible = toggle.checked;
      group.style.display = layer.visible ? "" : "none";
      item.classList.toggle("hidden-layer", !layer.visible);
      // OpenSeadragon sets display on every draw of an overlay: hide it another way.
      if (layer.heatmap) layer.heatmap.img.style.visibility = layer.visible ? "" : "hidden";
      if (layer.visible) load(layer).catch(showError);
      else {
        layer.abort?.abort();
        layer.pending = null;
      }
    });
    layers.push(layer);
    return { layer, item };
  }

  async function start(v) {
    viewer = v;
    overlay = document.createElementNS(SVG, "svg");
    overlay.id = "task-overlay";
    const clip = document.createElement("div");
    clip.id = "task-overlay-clip";
    clip.append(overlay);
    document.getElementById("stage").append(clip);
    const q = new URLSearchParams({ material_id: MATERIAL, status: "succeeded", limit: "100" });
    const tasks = (await getJson(`/api/tasks?${q}`)).items;
    const list = document.getElementById("task-layers");
    document.getElementById("task-layers-empty").hidden = tasks.length > 0;
    for (const task of tasks) {
      const { layer, item } = addLayer(task);
      list.append(item);
      getJson(`/api/tasks/${task.id}/result`)
        .then((result) => {
          if (result.heatmap) item.append(heatmapControls(layer, result.heatmap));
        })
        .catch(showError);
    }
    viewer.addHandler("update-viewport", follow);
    viewer.addHandler("animation-finish", () => {
      settle();
      loadAll();
    });
    viewer.addHandler("resize", settle);
    // Opening (again, after a failover to another replica) clears OpenSeadragon's overlays.
    viewer.addHandler("open", () => {
      for (const layer of layers) placeHeatmap(layer);
      loadAll();
    });
    if (viewer.world.getItemCount()) {
      for (const layer of layers) placeHeatmap(layer);
      loadAll();
    }
  }

  function begin(v) {
    start(v).catch(showError);
  }

  if (window.slideViewer) begin(window.slideViewer);
  else document.addEventListener("slide-viewer", (e) => begin(e.detail), { once: true });
})();
