// The runs page's lifecycle panels: a line per cleanup event (GET /cleanup/events), refreshed with the list.
// Loaded after runs.js, whose `$` and `api` helpers it uses.
"use strict";

function formatBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n, unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

const CLEANUP_VERBS = {
  delete: ["deleted", "would delete", "could not delete"],
  clean: ["cleaned (archive kept)", "would clean", "could not clean"],
  checkpoints: ["trimmed checkpoints of", "would trim checkpoints of", "could not trim checkpoints of"],
  cache: ["trimmed", "would trim", "could not trim"],
};

function cleanupLine(event) {
  const verbs = CLEANUP_VERBS[event.action] || [event.action, event.action, event.action];
  const verb = verbs[{ cleanup_completed: 0, cleanup_dry_run: 1 }[event.type] ?? 2];
  const when = new Date(event.at * 1000).toLocaleString();
  const what = event.action === "cache" ? "the caches" : `${event.kind || "run"} ${event.target}`;
  const size = event.type === "cleanup_failed" ? "" : `: ${formatBytes(event.bytes_freed)} in ${event.files_deleted} files`;
  const why = event.error ? ` (${event.error})` : event.reason ? ` (${event.reason})` : "";
  return `${when} ${verb} ${what}${size}${why}`;
}

async function refreshCleanup() {
  let data;
  try { data = await api("/cleanup/events?limit=20"); } catch (err) { return; }
  const list = $("cleanup-events");
  list.replaceChildren();
  for (const event of data.events) {
    const item = document.createElement("li");
    item.className = event.type;
    item.dataset.runId = event.run_id || "";
    item.textContent = cleanupLine(event);
    list.append(item);
  }
  $("cleanup-empty").hidden = data.events.length > 0;
}

refreshCleanup();
setInterval(refreshCleanup, 5000);
