// The runs page: start a run of any kind (picker and config box from GET /kinds), list (polled), details,
// a live loss chart fed by the run's SSE event stream, artifacts, cancel. Vanilla JS; fetch() streams the events so the X-Api-Key header can be sent (EventSource cannot).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { selected: null, stream: null, points: [], kinds: {}, plotsKey: null, offset: 0 };
// The list shows a page of runs, newest first; older pages are one click away (GET /runs pages with offset).
const RUNS_PAGE = 50;

function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, "X-Api-Key": key } : extra;
}

async function api(path, options = {}) {
  const response = await fetchFromServer(path, { ...options, headers: headers(options.headers || {}) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${body.code || response.status}: ${body.message || "request failed"}`);
  return body;
}

function notice(text) { $("notice").textContent = text; }

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function refreshList() {
  let data;
  // one run more than the page shows says whether an older page exists
  const offset = state.offset;
  const query = new URLSearchParams({ limit: String(RUNS_PAGE + 1), offset: String(offset) });
  try { data = await api(`/runs?${query}`); } catch (err) { notice(err.message); return; }
  if (offset !== state.offset) return;  // a poll's late answer for the page shown before a click
  const runs = data.runs.slice(0, RUNS_PAGE);
  $("runs-newer").disabled = state.offset === 0;
  $("runs-older").disabled = data.runs.length <= RUNS_PAGE;
  $("runs-range").textContent = runs.length ? `runs ${state.offset + 1}–${state.offset + runs.length}` : "";
  const body = $("runs").tBodies[0];
  body.replaceChildren();
  for (const run of runs) {
    const row = body.insertRow();
    row.dataset.runId = run.id;
    row.className = run.id === state.selected ? "selected" : "";
    cell(row, run.id);
    cell(row, run.kind);
    cell(row, run.status, `status status-${run.status}`);
    cell(row, run.progress == null ? "" : `${Math.round(run.progress * 100)}%`);
    cell(row, run.message || "");
    row.addEventListener("click", () => select(run.id));
  }
  if (state.selected) refreshDetail();
}

async function refreshDetail() {
  const runId = state.selected;
  let run;
  try { run = await api(`/runs/${encodeURIComponent(runId)}`); } catch (err) { notice(err.message); return; }
  // the list's poll may have asked for the run selected before a new selection: its late answer must not
  // put that run back in the panel (nor its cancel button under the new run's id)
  if (runId !== state.selected) return;
  $("detail-id").textContent = run.id;
  $("detail-status").textContent = run.status;
  $("detail-status").className = `status status-${run.status}`;
  $("detail-message").textContent = run.message || "";
  // a finished run's heartbeat age only grows: shown for a running run alone, as Discord's /status does
  const beating = run.status === "running" && run.heartbeat_age_s != null;
  $("detail-heartbeat").textContent = beating ? `last heartbeat ${run.heartbeat_age_s.toFixed(1)} s ago` : "";
  $("cancel").disabled = ["completed", "failed", "cancelled"].includes(run.status);
  showReport(run);
  const list = $("artifacts");
  list.replaceChildren();
  for (const artifact of run.artifacts) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `${artifactsUrl(run)}/${encodedPath(artifact.path)}`;
    link.textContent = `${artifact.path} (${artifact.size} bytes)`;
    link.addEventListener("click", (event) => { event.preventDefault(); download(link.href, artifact.path); });
    item.append(link);
    list.append(item);
  }
  showPlots(run);
}

// A run file's URL: each segment of its path encoded, so a name holding `#`, `?`, `%` or a space is fetched
// as the file it names, not cut at a fragment or query.
function encodedPath(path) { return path.split("/").map(encodeURIComponent).join("/"); }

function artifactsUrl(run) { return `/artifacts/${encodeURIComponent(run.kind)}/${encodeURIComponent(run.id)}`; }

async function imageDataUrl(url) {
  // a data: URL (the page's policy allows no blob: images), fetched with the API key header
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) return null;
  const blob = await response.blob();
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.readAsDataURL(blob);
  });
}

async function showPlots(run) {
  // the curves the run drew (plots/*.png, files of the run rather than manifest artifacts, which its result
  // names as "curves: run:<id>/plots"), fetched again only when they changed (redrawn at every evaluation)
  const base = artifactsUrl(run);
  let listing;
  try { listing = await api(base); } catch (err) { return; }
  const files = listing.files.filter((file) => /^plots\/[^/]+\.png$/.test(file.path));
  const key = files.map((file) => `${file.path}:${file.size}`).join(" ");
  if (run.id !== state.selected || key === state.plotsKey) return;
  const images = [];
  for (const file of files) {
    const src = await imageDataUrl(`${base}/${encodedPath(file.path)}`);
    if (src === null) continue;
    const image = document.createElement("img");
    image.src = src;
    image.alt = file.path;
    images.push(image);
  }
  if (run.id !== state.selected) return;  // another run was selected meanwhile
  state.plotsKey = key;
  $("plots").replaceChildren(...images);
  $("plots-panel").hidden = images.length === 0;
}

async function showReport(run) {
  // the completed run's result as the CLI prints it (GET /runs/{id}/report); kinds without a result have none
  let report = null;
  if (run.status === "completed") {
    try { report = await api(`/runs/${encodeURIComponent(run.id)}/report`); } catch (err) { report = null; }
  }
  if (run.id !== state.selected) return;  // another run was selected meanwhile
  $("report").textContent = report ? report.markdown : "";
  $("report-panel").hidden = !report;
}

async function download(url, name) {
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) { notice(`download failed: ${response.status}`); return; }
  const blobUrl = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = blobUrl;
  a.download = name.split("/").pop();
  a.click();
  URL.revokeObjectURL(blobUrl);
}

function drawChart() {
  const pts = state.points;
  const line = $("loss-line");
  if (pts.length === 0) { line.setAttribute("points", ""); $("chart-label").textContent = "no metrics yet"; return; }
  const steps = pts.map((p) => p.step), losses = pts.map((p) => p.loss);
  const [s0, s1] = [Math.min(...steps), Math.max(...steps)];
  const [l0, l1] = [Math.min(...losses), Math.max(...losses)];
  const x = (s) => 10 + ((s - s0) / Math.max(1, s1 - s0)) * 580;
  const y = (l) => 210 - ((l - l0) / Math.max(1e-12, l1 - l0)) * 180;
  line.setAttribute("points", pts.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(" "));
  const last = pts[pts.length - 1];
  $("chart-label").textContent = `step ${last.step}: loss ${last.loss.toPrecision(4)}`;
}

function onEvent(event) {
  const loss = event.metrics.loss ?? event.metrics.train_loss;  // smoke runs log loss, trainings train_loss
  // an overflowed step's inf (or nan) arrives as null in JSON: no point, and the chart keeps drawing
  if (event.type === "progress" && Number.isFinite(loss)) {
    state.points = state.points.filter((p) => p.step < event.step);  // a resumed run repeats no step
    state.points.push({ step: event.step, loss });
    drawChart();
  }
  if (event.type !== "progress") {
    const item = document.createElement("li");
    item.textContent = `${event.type}${event.message ? ": " + event.message : ""}`;
    item.dataset.time = event.time;
    // a replayed history comes before the run's current status, which happened earlier (started before its
    // checkpoints): each line goes where its time puts it
    const later = [...$("events").children].find((line) => Number(line.dataset.time) > event.time);
    $("events").insertBefore(item, later || null);
  }
  if (["started", "completed", "failed", "cancelled", "queued"].includes(event.type)) refreshDetail();
}

// Waits `ms`, or rejects with an AbortError as soon as `signal` aborts (another run was selected).
function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("the run is no longer selected", "AbortError"));
    }, { once: true });
  });
}

// A run's events, history first, then live. A stream lost on the way (the server restarting, a proxy's idle
// timeout) is opened again from the last event it delivered, as EventSource does with Last-Event-ID, so the
// chart and the event list go on where they stopped; the server ends the stream when the run has finished,
// and answers a reconnection after that with 204 No Content.
const RECONNECTING = " (reconnecting…)";
async function streamEvents(runId, controller) {
  let lastId = null;
  let lost = 0;  // reconnections in a row that delivered nothing: the wait before the next one grows
  while (state.selected === runId) {
    let delivered = false;
    try {
      const asked = { Accept: "text/event-stream" };
      if (lastId !== null) asked["Last-Event-ID"] = lastId;
      const response = await fetchFromServer(`/runs/${encodeURIComponent(runId)}/events`, {
        headers: headers(asked), signal: controller.signal,
      });
      if (response.status === 204) return;
      if (!response.ok || !response.body) { notice(`event stream failed: ${response.status}`); return; }
      for await (const ev of sseEvents(response)) {
        if (ev.id !== null) lastId = ev.id;
        // back after a lost stream: its notice is stale
        if (!delivered && $("notice").textContent.endsWith(RECONNECTING)) notice("");
        delivered = true;
        lost = 0;
        if (ev.data && state.selected === runId) onEvent(JSON.parse(ev.data));
      }
      if (lastId === null) return;  // nothing to resume from (no event carried an id)
    } catch (err) {
      if (err.name === "AbortError") throw err;
      notice(`${err.message}${RECONNECTING}`);
    }
    if (!delivered) lost += 1;
    await pause(lost ? Math.min(1000 * 2 ** (lost - 1), 15_000) : 0, controller.signal);
  }
}

// The selected run is kept in the page's address (#run=<id>), so a reload or a link opens its panel (a run
// on any page of the list: the panel reads the run itself).
function runInAddress() {
  return new URLSearchParams(location.hash.slice(1)).get("run") || "";
}

function select(runId) {
  if (state.stream) state.stream.abort();
  state.selected = runId;
  const hash = `#${new URLSearchParams({ run: runId })}`;
  // replaced, not pushed: Back leaves the page rather than stepping through every run looked at
  if (location.hash !== hash) history.replaceState(null, "", hash);
  state.points = [];
  state.plotsKey = null;
  $("plots").replaceChildren();
  $("plots-panel").hidden = true;
  $("events").replaceChildren();
  $("detail").hidden = false;
  drawChart();
  for (const row of $("runs").tBodies[0].rows) row.className = row.dataset.runId === runId ? "selected" : "";
  refreshDetail();
  state.stream = new AbortController();
  streamEvents(runId, state.stream).catch((err) => { if (err.name !== "AbortError") notice(err.message); });
}

function showRunsPage(offset) {
  state.offset = Math.max(0, offset);
  refreshList();
}

$("runs-newer").addEventListener("click", () => showRunsPage(state.offset - RUNS_PAGE));
$("runs-older").addEventListener("click", () => showRunsPage(state.offset + RUNS_PAGE));

$("cancel").addEventListener("click", async () => {
  try { await api(`/runs/${encodeURIComponent(state.selected)}/cancel`, { method: "POST" }); notice("cancel requested"); }
  catch (err) { notice(err.message); }
  refreshDetail();
});

$("smoke-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const config = { steps: Number($("smoke-steps").value), step_sleep_s: Number($("smoke-sleep").value) };
  try {
    const run = await api("/runs", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify({ kind: "smoke", config }) });
    notice(`queued ${run.id}`);
    state.offset = 0;  // the new run heads the newest page
    await refreshList();
    select(run.id);
  } catch (err) { notice(err.message); }
});

async function loadKinds() {
  let data;
  try { data = await api("/kinds"); } catch (err) { notice(err.message); return; }
  const select = $("run-kind");
  const chosen = select.value;
  select.replaceChildren();
  for (const kind of data.kinds) {
    state.kinds[kind.name] = kind;
    const option = document.createElement("option");
    option.value = kind.name;
    option.textContent = kind.name;
    select.append(option);
  }
  select.value = state.kinds[chosen] ? chosen : (state.kinds.train ? "train" : data.kinds[0]?.name);
  showKind();
}

function showKind() {
  const kind = state.kinds[$("run-kind").value];
  if (!kind) return;
  $("kind-help").textContent = kind.help;
  // the kind's defaults, required fields null: fill those in
  $("run-config").value = JSON.stringify(kind.template, null, 2);
}

$("run-kind").addEventListener("change", showKind);

$("run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const kind = $("run-kind").value;
  let config;
  try { config = JSON.parse($("run-config").value || "{}"); }
  catch (err) { notice(`the config is not valid JSON: ${err.message}`); return; }
  try {
    const run = await api("/runs", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify({ kind, config }) });
    notice(`queued ${run.id}`);
    state.offset = 0;  // the new run heads the newest page
    await refreshList();
    select(run.id);
  } catch (err) { notice(err.message); }  // a 422 names the field: "invalid_config: invalid smoke config: ..."
});

$("api-key").value = localStorage.getItem("tldrlab-api-key") || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem("tldrlab-api-key", $("api-key").value);
  loadKinds();
  refreshList();
});
// a link to another run typed or pasted into the address bar of the open page
window.addEventListener("hashchange", () => {
  const wanted = runInAddress();
  if (wanted && wanted !== state.selected) select(wanted);
});
loadKinds();
refreshList();
if (runInAddress()) select(runInAddress());
setInterval(refreshList, 2000);
