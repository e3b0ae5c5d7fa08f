// The material page: facts and replica health from the API, thumbnail and (when the team
// allows it) label pictures through a short-lived read token.
"use strict";

(async () => {
  const root = document.getElementById("material");
  const id = root.dataset.material;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const detail = await (await fetch(`/api/materials/${id}`)).json();
  document.getElementById("material-status").textContent = detail.status;
  if (detail.error) document.getElementById("material-error").textContent = detail.error;
  const facts = document.getElementById("facts");
  const slide = detail.slide || {};
  for (const [name, value] of [
    ["Scanner", slide.scanner], ["Vendor", slide.vendor],
    ["Dimensions", slide.width ? `${slide.width} × ${slide.height} px` : null],
    ["µm per pixel", slide.mpp_x], ["Magnification", slide.magnification ? `${slide.magnification}×` : null],
    ["Levels", slide.levels], ["Replicas", `${detail.replicas} of ${detail.target_replicas}`],
  ]) {
    if (value === null || value === undefined) continue;
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    facts.append(dt, dd);
  }
  const list = document.getElementById("replicas");
  for (const node of detail.replica_nodes) {
    const li = document.createElement("li");
    li.textContent = `${node.node_id} (${node.url}): ${node.state}`;
    list.append(li);
  }
  if (!detail.blob_id || detail.status === "unavailable") return;
  // The raw file goes where the label does (the team's label role); the server checks again.
  document.getElementById("download").hidden = !detail.labels_allowed;
  const view = await (await fetch(`/api/materials/${id}/view`, {
    method: "POST", headers: { "X-CSRF-Token": csrf },
  })).json();
  if (view.thumbnail) {
    const img = document.getElementById("thumbnail");
    img.src = view.thumbnail; img.hidden = false;
  }
  const labels = document.getElementById("labels");
  for (const [name, url] of Object.entries(view.labels || {})) {
    const img = document.createElement("img");
    img.src = url; img.alt = name; img.className = "associated"; img.width = 240;
    labels.append(img);
  }
})();
