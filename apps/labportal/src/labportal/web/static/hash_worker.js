// The sha256 of a file of any size, in a Web Worker, 8 MiB at a time (hash-wasm's
// incremental SHA-256): the page stays responsive and at most one slice is in memory.
// Message in: {file}. Messages out: {progress: bytes}, then {sha256: hex} or {error}.
"use strict";

importScripts("/vendor/hash-wasm/sha256.umd.min.js");

const SLICE = 8 * 1024 * 1024;

self.onmessage = async (event) => {
  const file = event.data.file;
  try {
    const hasher = await hashwasm.createSHA256();
    hasher.init();
    for (let at = 0; at < file.size; at += SLICE) {
      const end = Math.min(at + SLICE, file.size);
      hasher.update(new Uint8Array(await file.slice(at, end).arrayBuffer()));
      self.postMessage({ progress: end });
    }
    self.postMessage({ sha256: hasher.digest("hex") });
  } catch (e) {
    self.postMessage({ error: String((e && e.message) || e) });
  }
};
