// The material page: facts with units and replica health from the API; the label and macro
// pictures (when the team's label rule allows) through the viewer's short-lived read token.
"use strict";

function row(name, value) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.scope = "row"; th.textContent = name;
  const td = document.createElement("td"); td.textContent = value;
  tr.append(th, td);
  return tr;
}

function mm(px, mpp) {
  return `${((px * mpp) / 1000).toFixed(2)} mm`;
}

function facts(slide) {
  const rows = [];
  const n = (v) => Number(v).toLocaleString("en");
  if (slide.vendor) rows.push(["Format", slide.vendor]);
  if (slide.scanner) rows.push(["Scanner", slide.scanner]);
  if (slide.magnification) rows.push(["Objective", `${slide.magnification}×`]);
  if (slide.mpp_x) {
    const y = slide.mpp_y && slide.mpp_y !== slide.mpp_x ? ` × ${slide.mpp_y}` : "";
    rows.push(["Resolution", `${slide.mpp_x}${y} µm per pixel`]);
  }
  if (slide.width) rows.push(["Dimensions", `${n(slide.width)} × ${n(slide.height)} pixels`]);
  if (slide.width && slide.mpp_x) {
    rows.push(["Scanned area", `${mm(slide.width, slide.mpp_x)} × ${mm(slide.height, slide.mpp_y || slide.mpp_x)}`]);
  }
  if (slide.levels) rows.push(["Pyramid levels", slide.levels]);
  if (slide.associated_images && slide.associated_images.length) {
    rows.push(["Associated images", slide.associated_images.join(", ")]);
  }
  return rows;
}

function health(detail) {
  const summary = document.getElementById("replica-summary");
  const meter = document.getElementById("replica-meter");
  const list = document.getElementById("replicas");
  if (!detail.blob_id) return;
  summary.textContent = `${detail.replicas} of ${detail.target_replicas} copies readable`
    + (detail.replicas >= detail.target_replicas ? "" : detail.replicas ? " (the cluster is making more)" : " (none: ask an administrator)");
  meter.max = Math.max(1, detail.target_replicas);
  meter.low = Math.max(1, detail.target_replicas) - 0.5;
  meter.optimum = detail.target_replicas;
  meter.value = detail.replicas;
  meter.hidden = false;
  for (const node of detail.replica_nodes) {
    const li = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = `dot ${node.state}`;
    dot.title = `${node.node_id}: ${node.state}`;
    const text = document.createElement("span");
    text.textContent = `${node.node_id} · ${node.state}`;
    li.append(dot, text);
    list.append(li);
  }
}

(async () => {
  const root = document.getElementById("material");
  const id = root.dataset.material;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const r = await fetch(`/api/materials/${id}`);
  const detail = await r.json();
  if (!r.ok) {
    document.getElementById("error").textContent = detail.detail || r.statusText;
    return;
  }
  const status = document.getElementById("material-status");
  status.textContent = detail.status.replace("_", " ");
  status.className = `badge ${detail.status}`;
  if (detail.error) document.getElementById("material-error").textContent = detail.error;
  const body = document.getElementById("slide-facts");
  for (const [name, value] of facts(detail.slide || {})) body.append(row(name, value));
  health(detail);
  if (!detail.blob_id || detail.status === "unavailable") return;
  // The raw file goes where the label does (the team's label role); the server checks again.
  document.getElementById("download").hidden = !detail.labels_allowed;
  const view = await (await fetch(`/api/materials/${id}/view`, {
    method: "POST", headers: { "X-CSRF-Token": csrf },
  })).json();
  const labels = document.getElementById("labels");
  for (const [name, url] of Object.entries(view.labels || {})) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url; img.alt = `The slide's ${name} image`; img.className = "associated"; img.width = 240;
    const caption = document.createElement("figcaption");
    caption.textContent = name === "label" ? "Label" : "Macro (overview)";
    figure.append(img, caption);
    labels.append(figure);
  }
})();
