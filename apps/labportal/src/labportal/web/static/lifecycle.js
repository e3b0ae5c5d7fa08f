// Lifecycle in the portal: an archived slide shows its archived thumbnail and, for members,
// "Restore" with its progress (copies back / copies wanted); the team page shows its line
// "Archive: N slides, X saved".
"use strict";

(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const bytes = (n) => {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  };

  const team = document.getElementById("team-archive");
  if (team) {
    fetch(`/api/teams/${team.dataset.team}/archive`).then((r) => r.json()).then((s) => {
      const days = s.archive_after_days === null ? "the cluster's default" : `${s.archive_after_days} days`;
      document.getElementById("archive-line").textContent =
        `Archive: ${s.archived} slide${s.archived === 1 ? "" : "s"} archived` +
        (s.restoring ? `, ${s.restoring} restoring` : "") +
        `, ${bytes(s.saved_bytes)} saved · unread slides are archived after ${days}`;
    });
  }

  const box = document.getElementById("lifecycle");
  if (!box) return;
  const id = box.dataset.material;
  const note = document.getElementById("lifecycle-note");
  const button = document.getElementById("restore");
  const progress = document.getElementById("restore-progress");

  function show(detail) {
    const archived = detail.status === "archived";
    const restoring = detail.status === "restoring";
    box.hidden = !(archived || restoring);
    if (box.hidden) return false;
    const thumb = document.getElementById("archived-thumbnail");
    if (detail.archived_thumbnail && !thumb.src) { thumb.src = detail.archived_thumbnail; thumb.hidden = false; }
    button.hidden = !(archived && box.dataset.canRestore);
    progress.hidden = !restoring;
    if (restoring) {
      progress.max = detail.target_replicas || 1;
      progress.value = detail.replicas;
      note.textContent = `Restoring from the archive: ${detail.replicas} of ${detail.target_replicas} copies`;
    } else {
      note.textContent = box.dataset.canRestore
        ? "This slide is in the archive (nobody read it for a while). Restore it to view it."
        : "This slide is in the archive; a member of the team can restore it.";
    }
    return restoring;
  }

  async function poll() {
    const detail = await (await fetch(`/api/materials/${id}`)).json();
    if (show(detail)) { setTimeout(poll, 1000); return; }
    if (detail.status === "ready" && note.dataset.restored) {
      note.textContent = "Restored.";
      box.hidden = false;
      if (document.getElementById("osd")) window.location.reload();  // the viewer opens it now
    }
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    const r = await fetch(`/api/materials/${id}/restore`, {
      method: "POST", headers: { "X-CSRF-Token": csrf() },
    });
    if (!r.ok) { note.textContent = (await r.json()).detail || "restore failed"; button.disabled = false; return; }
    note.dataset.restored = "yes";
    show(await r.json());
    setTimeout(poll, 500);
  });
  poll();
})();
