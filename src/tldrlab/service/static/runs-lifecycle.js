// The runs page's lifecycle panels: runs compared side by side with regressions against a baseline
// (GET /compare, /compare/plot), and a line per cleanup event (GET /cleanup/events), refreshed with the list.
// Loaded after runs.js, whose `$`, `api`, `headers`, `imageDataUrl` and `state` it uses.
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

function compareQuery(ids) {
  const params = new URLSearchParams();
  for (const id of ids) params.append("ids", id);
  params.set("baseline", ids[0]);
  return params.toString();
}

function plotDataUrl(query) {
  return imageDataUrl(`/compare/plot?${query}`);
}

function clearComparison() {
  // what an earlier comparison showed must not stand under the notice of a refused one, as if it answered it
  $("compare-table").tHead.replaceChildren();
  $("compare-table").tBodies[0].replaceChildren();
  $("compare-regressions").replaceChildren();
  $("compare-unchecked").replaceChildren();
  $("compare-plot").hidden = true;
}

async function compareRuns(ids) {
  const query = compareQuery(ids);
  let data;
  try { data = await api(`/compare?${query}`); } catch (err) { clearComparison(); notice(err.message); return; }
  const regressed = new Set(data.regressions.map((r) => `${r.run_id} ${r.metric}`));
  const head = $("compare-table").tHead;
  head.replaceChildren();
  const header = head.insertRow();
  for (const name of ["run", ...data.metrics]) {
    const th = document.createElement("th");
    th.textContent = name;
    header.append(th);
  }
  const body = $("compare-table").tBodies[0];
  body.replaceChildren();
  for (const run of data.runs) {
    const row = body.insertRow();
    row.dataset.runId = run.id;
    if (run.id === data.baseline) row.className = "baseline";
    cell(row, run.id === data.baseline ? `${run.id} (baseline)` : run.id);
    for (const name of data.metrics) {
      const value = run.metrics[name];
      const td = cell(row, value === undefined ? "-" : Number(value).toPrecision(4));
      if (regressed.has(`${run.id} ${name}`)) { td.className = "regression"; td.textContent += " ▼"; }
    }
  }
  const list = $("compare-regressions");
  list.replaceChildren();
  for (const r of data.regressions) {
    const item = document.createElement("li");
    // from a baseline of 0 the change is the difference itself, no fraction of anything
    const change = r.baseline === 0
      ? `${r.change >= 0 ? "+" : ""}${r.change.toPrecision(4)} from 0` : `${(r.change * 100).toFixed(1)}%`;
    item.textContent = `${r.run_id}: ${r.metric} ${r.value.toPrecision(4)} vs ${r.baseline.toPrecision(4)} ` +
      `(${change}, ${data.directions[r.metric]} is better)`;
    list.append(item);
  }
  // a run the baseline's metrics could not be checked on (e.g. a failed one) has no regression either
  const unchecked = $("compare-unchecked");
  unchecked.replaceChildren();
  for (const u of data.unchecked) {
    const item = document.createElement("li");
    item.textContent = u.run_id === data.baseline
      ? `not checked: the baseline ${u.run_id} (${u.status}) has no metric that says better or worse`
      : `not checked: ${u.run_id} (${u.status}) lacks the baseline's ${u.metrics.join(", ")}`;
    unchecked.append(item);
  }
  if (data.ungated.length) {
    const item = document.createElement("li");
    item.textContent = `not gated: ${data.ungated.join(", ")} (times and throughputs move with the ` +
      "machine's load; name one as a metric to gate it)";
    unchecked.append(item);
  }
  const url = await plotDataUrl(query);
  $("compare-plot").hidden = url === null;
  if (url) $("compare-plot").src = url;
}

$("compare-add").addEventListener("click", () => {
  if (!state.selected) { notice("select a run in the list first"); return; }
  const ids = $("compare-ids").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (!ids.includes(state.selected)) ids.push(state.selected);
  $("compare-ids").value = ids.join(", ");
});

$("compare-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const ids = $("compare-ids").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (ids.length < 2) { notice("name at least two runs to compare"); return; }
  compareRuns(ids);
});

refreshCleanup();
setInterval(refreshCleanup, 5000);
