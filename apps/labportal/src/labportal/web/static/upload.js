// Attach a slide: the browser hashes the file (sha256, any size, in a Web Worker), the
// portal places it — or, when the cluster already holds those bytes, links them without
// a byte sent — and the browser sends the bytes straight to the primary node over tus
// (resumable, 8 MiB chunks; a large file as PARTS partial uploads at once, which the node
// joins), then tells the portal the blob id with the proof that it holds the file (the
// answer to the portal's challenge: sha256 of the nonce and the file's bytes at the
// challenge's ranges; see materials/possession.py).
"use strict";

const BLOB_ID_HEADER = "Slidestore-Blob-Id";
const PARTS = 4; // partial uploads at once for a large file (tus concatenation)
const PART_MIN = 16 * 1024 * 1024; // a smaller part is not worth its own connection

function api(url, body) {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  return fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  }).then(async (r) => {
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(answer.detail || r.statusText);
    return answer;
  });
}

function sha256Hex(file, onProgress) {
  if (!window.Worker) return Promise.resolve(null); // the node still checks the bytes
  return new Promise((resolve, reject) => {
    const worker = new Worker("/static/hash_worker.js");
    worker.onmessage = (event) => {
      const answer = event.data;
      if (answer.progress !== undefined) return onProgress(answer.progress);
      worker.terminate();
      if (answer.error) reject(new Error(`hashing the file failed: ${answer.error}`));
      else resolve(answer.sha256);
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(`hashing the file failed: ${event.message}`));
    };
    worker.postMessage({ file });
  });
}

function partsFor(size) {
  return Math.max(1, Math.min(PARTS, Math.floor(size / PART_MIN)));
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function proofOfPossession(file, challenge) {
  const nonce = challenge.nonce.match(/../g).map((h) => parseInt(h, 16));
  const parts = [new Uint8Array(nonce)];
  for (const [offset, length] of challenge.ranges) {
    parts.push(new Uint8Array(await file.slice(offset, offset + length).arrayBuffer()));
  }
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return hex(await crypto.subtle.digest("SHA-256", joined));
}

function nodeReason(error) {
  // tus-js-client keeps the node's answer: {"error", "detail"} for a refused slide.
  const response = error && error.originalResponse;
  if (response) {
    try {
      const body = JSON.parse(response.getBody() || "{}");
      if (body.detail) return body.detail;
    } catch (_) { /* not JSON */ }
    return `the storage node answered ${response.getStatus()}`;
  }
  return String((error && error.message) || error);
}

async function upload(form) {
  const file = document.getElementById("upload-file").files[0];
  const state = document.getElementById("upload-state");
  const error = document.getElementById("upload-error");
  const progress = document.getElementById("upload-progress");
  error.textContent = "";
  state.textContent = "hashing…";
  progress.hidden = false;
  const sha256 = await sha256Hex(file, (done) => {
    progress.value = file.size ? Math.round((done / file.size) * 100) : 100;
    state.textContent = `hashing ${progress.value}%`;
  });
  progress.value = 0;
  const body = { name: file.name, size: file.size };
  if (sha256) body.sha256 = sha256;
  // The team's material fields in the form (portal.js's formBody; empty ones left out).
  const fields = Object.entries(formBody(form).fields || {}).filter(([, v]) => v !== null);
  if (fields.length) body.fields = Object.fromEntries(fields);
  const created = await api(`/api/cases/${form.dataset.case}/materials`, body);
  const materialUrl = `/api/materials/${created.material.id}`;
  const complete = async (blobId) => {
    const proof = await proofOfPossession(file, created.challenge);
    await api(`${materialUrl}/complete`, { blob_id: blobId, proof });
  };
  if (created.exists) {
    await complete(sha256);
    state.textContent = "already stored";
    window.location.reload();
    return;
  }
  let blobId = null;
  progress.hidden = false;
  const metadata = { filename: file.name };
  if (sha256) metadata.sha256 = sha256;
  const parts = partsFor(file.size);
  const tusUpload = new tus.Upload(file, {
    endpoint: created.upload_url,
    parallelUploads: parts,
    headers: { Authorization: `Bearer ${created.token}` },
    metadata,
    chunkSize: 8 * 1024 * 1024,
    retryDelays: [0, 1000, 3000, 5000],
    removeFingerprintOnSuccess: true,
    onProgress(sent, total) {
      progress.value = total ? Math.round((sent / total) * 100) : 0;
      state.textContent = `${progress.value}%`;
    },
    onAfterResponse(_req, res) {
      const id = res.getHeader(BLOB_ID_HEADER);
      if (id) blobId = id;
    },
    async onSuccess() {
      try {
        if (!blobId) throw new Error("the node did not name the stored blob");
        await complete(blobId);
        state.textContent = "stored";
        window.location.reload();
      } catch (e) {
        error.textContent = e.message;
      }
    },
    onError(e) {
      const reason = nodeReason(e);
      error.textContent = reason;
      state.textContent = "failed";
      api(`${materialUrl}/failed`, { reason: reason.slice(0, 2000) }).catch(() => {});
    },
  });
  const previous = await tusUpload.findPreviousUploads();
  if (previous.length) tusUpload.resumeFromPreviousUpload(previous[0]);
  tusUpload.start();
}

document.getElementById("upload-form")?.addEventListener("submit", (event) => {
  event.preventDefault();
  upload(event.target).catch((e) => {
    document.getElementById("upload-error").textContent = e.message;
  });
});
