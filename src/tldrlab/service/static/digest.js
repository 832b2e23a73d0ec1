// The digest page: pick / paste / upload a thread, stream its cited TL;DR, mark highlights in the posts.
// EventSource cannot POST, so the SSE stream of /stream_summary is read with fetch + a ReadableStream parser.
"use strict";

const $ = (id) => document.getElementById(id);
// `shown` is the thread the right pane is about: { id, read (its GET /threads/{id}, a promise), controller (what
// cancels that read), digesting (a digest has taken the pane over) }. A digest of that thread reuses its read.
const state = { thread: null, digest: null, controller: null, shown: null };

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = $("key-input").value.trim();
  if (key) h["X-Api-Key"] = key;
  return h;
}

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function api(path, options) {
  const response = await fetchFromServer(path, options || { headers: headers(false) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${body.code || response.status}: ${body.message || response.statusText}`);
  return body;
}

// The list holds one page of the newest threads; the filter box asks the server (its SQL) for the threads whose
// id or title holds the text, so a thread far down a big store can be reached without listing them all.
const THREAD_PAGE = 1000;

async function loadThreadList(selectId) {
  const filter = $("thread-filter").value.trim();
  const query = new URLSearchParams({ limit: String(THREAD_PAGE) });
  if (filter) query.set("q", filter);
  const body = await api(`/threads?${query}`);
  if ($("thread-filter").value.trim() !== filter) return;  // a newer filter's answer is on its way
  const select = $("thread-select");
  select.innerHTML = "";
  if (!body.threads.length) {
    select.append(new Option(filter ? "(no thread matches the filter)" : "(none yet: paste or upload one)", ""));
  }
  for (const t of body.threads) {
    // An option holds text only (no <bdi>), so the title is wrapped in FIRST STRONG ISOLATE ... POP DIRECTIONAL
    // ISOLATE: a title holding U+202E (or written right to left) then cannot reverse the "(N posts)" after it.
    select.append(new Option(`\u2068${t.title || t.id}\u2069 (${t.posts} posts)`, t.id));
  }
  if (body.next_offset !== null && body.next_offset !== undefined) {
    const more = new Option(`(more than ${THREAD_PAGE}: type in the filter to find others)`, "");
    more.disabled = true;
    select.append(more);
  }
  if (selectId && body.threads.some((t) => t.id === selectId)) select.value = selectId;
  $("thread-select").dataset.filter = filter;  // which filter the list shows (tests and screen readers)
  // An empty store (not a filter that matches nothing) says how to add a thread instead of an empty list.
  const storeEmpty = !body.threads.length && !filter;
  $("threads-empty").hidden = !storeEmpty;
  $("thread-filter").hidden = storeEmpty;
  select.hidden = storeEmpty;
  updateThreadButtons();
}

// Digest and Delete act on the picked thread: with none picked (an empty store, a filter matching nothing, a
// list that did not load) they are disabled rather than answering "pick a thread first" when pressed.
function updateThreadButtons() {
  const none = !$("thread-select").value;
  $("digest-button").disabled = none;
  $("delete-button").disabled = none;
}

function sentenceId(postId, index) { return `${postId}:${index}`; }

// Only http(s) links are rendered: whatever a store holds, a `javascript:` URL never becomes an href.
function isWebLink(url) {
  if (typeof url !== "string" || !url) return false;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:";
  } catch (err) {
    return false;
  }
}

function renderThread(thread, highlights) {
  $("thread").hidden = false;
  $("thread-title").textContent = thread.title || thread.id;
  // Forum text may be Arabic or Hebrew: each piece of it takes its direction from its own first letters
  // (dir=auto), where the page's left-to-right put a final period at an RTL sentence's left end.
  $("thread-title").dir = "auto";
  const byPost = new Map();
  for (const h of highlights || []) {
    if (!byPost.has(h.post_id)) byPost.set(h.post_id, []);
    byPost.get(h.post_id).push(h);
  }
  const posts = $("posts");
  posts.innerHTML = "";
  for (const post of thread.posts) {
    const div = document.createElement("div");
    div.className = "post";
    div.dataset.postId = post.id;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.append(`#${post.number} · ${post.kind}`);
    if (post.author) {
      // isolated (<bdi>): direction marks in a name (U+202E) end with it, not reverse the rest of the line
      const author = document.createElement("bdi");
      author.textContent = post.author;
      meta.append(" · ", author);
    }
    if (post.score !== null && post.score !== undefined) meta.append(` · score ${post.score}`);
    if (post.accepted) {
      const acc = document.createElement("span");
      acc.className = "accepted";
      acc.textContent = " · accepted";
      meta.append(acc);
    }
    if (isWebLink(post.url)) {
      const link = document.createElement("a");
      link.href = post.url;
      link.textContent = " · source";
      link.target = "_blank";
      link.rel = "noopener";
      meta.append(link);
    }
    const body = document.createElement("div");
    body.className = "body";
    body.dir = "auto";
    // Marks go at the exact character spans the server returned (offsets into post.text). They count code
    // points, as Python does; a JS string indexes UTF-16 units (an emoji is two), so slice code points.
    const chars = Array.from(post.text);
    const text = (from, to) => chars.slice(from, to).join("");
    const marks = (byPost.get(post.id) || []).slice().sort((a, b) => a.start - b.start);
    let at = 0;
    for (const h of marks) {
      if (h.start < at) continue;
      body.append(text(at, h.start));
      const mark = document.createElement("mark");
      mark.className = "hl";
      mark.dataset.hid = sentenceId(h.post_id, h.sentence_index);
      mark.title = `highlight #${h.rank} · score ${h.score.toFixed(3)}`;
      mark.textContent = text(h.start, h.end);
      body.append(mark);
      at = h.end;
    }
    body.append(text(at));
    div.append(meta, body);
    posts.append(div);
  }
}

function flashSentence(hid) {
  const mark = document.querySelector(`mark.hl[data-hid="${CSS.escape(hid)}"]`);
  if (!mark) return;
  mark.scrollIntoView({ behavior: "auto", block: "center" });
  mark.classList.add("flash");
  setTimeout(() => mark.classList.remove("flash"), 1600);
}

function fillBullets(list, bullets, highlights) {
  const numbers = new Map(highlights.map((h, i) => [h.id, i + 1]));
  list.innerHTML = "";
  for (const bullet of bullets) {
    const li = document.createElement("li");
    li.dir = "auto";
    // the text isolated (its CSS): direction marks in a sentence end with it, not move its citations
    const text = document.createElement("span");
    text.className = "bullet-text";
    text.textContent = bullet.from_draft ? `“${bullet.text}”` : bullet.text;
    li.append(text);
    if (bullet.from_draft) {
      li.className = "from-draft";
      li.title = "a key sentence of the thread, quoted: the model kept fewer bullets";
    }
    if (bullet.supported === false) {
      li.className = "unsupported";
      li.title = "its citations do not support it";
    }
    for (const hid of bullet.citations) {
      const a = document.createElement("a");
      a.className = "cite";
      a.href = "#";
      a.dataset.hid = hid;
      a.textContent = `[${numbers.get(hid) || "?"}]`;
      a.addEventListener("click", (ev) => { ev.preventDefault(); flashSentence(hid); });
      li.append(a);
    }
    list.append(li);
  }
}

function addNotice(message) {
  const li = document.createElement("li");
  li.dir = "auto";
  li.textContent = message;
  $("notices").append(li);
}

// The TL;DR box emptied of any earlier digest; `hint` says a digest is one press away (shown before the first).
function resetTldr(hint) {
  $("tldr").hidden = false;
  $("tldr-hint").hidden = !hint;
  $("stream").hidden = hint;
  $("stream").textContent = "";
  $("bullets").innerHTML = "";
  $("notices").innerHTML = "";
  $("draft-bullets").innerHTML = "";
  $("draft").hidden = true;
  $("draft").open = true;
  $("tldr-meta").textContent = "";
}

// Shows a thread's posts at once (GET /threads/{id}: no model, no digest), with the TL;DR box saying to press
// Digest: a digest runs a language model for seconds, so it starts only when asked. Showing another thread
// cancels this one's read and any digest of the thread shown before, so a late answer never replaces it.
function showThread(threadId) {
  keepThreadInAddress(threadId);
  if (state.shown && state.shown.id === threadId) return state.shown;  // shown, or its read on the way
  if (state.shown) state.shown.controller.abort();
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  const path = `/threads/${encodeURIComponent(threadId)}`;
  const read = api(path, { headers: headers(false), signal: controller.signal });
  const shown = { id: threadId, read, controller, digesting: false };
  state.shown = shown;
  state.thread = null;
  state.digest = null;
  read.then((thread) => {
    if (state.shown !== shown || shown.digesting) return;  // another thread, or a digest that renders itself
    state.thread = thread;
    renderThread(thread, []);
    resetTldr(true);
  }, (err) => {
    if (state.shown !== shown) return;
    state.shown = null;  // the next look at this thread reads it again
    if (!shown.digesting && err.name !== "AbortError") setStatus(String(err.message || err), true);
  });
  return shown;
}

// Forgets the shown thread (deleted, or ingested anew): its pane is hidden and its read cancelled.
function forgetShown() {
  if (state.shown) state.shown.controller.abort();
  if (state.controller) state.controller.abort();
  state.shown = null;
  state.thread = null;
  state.digest = null;
  $("thread").hidden = true;
  $("tldr").hidden = true;
  keepThreadInAddress("");
}

// The thread shown is kept in the page's address (#thread=<id>), so a link or a reload opens that thread.
function threadInAddress() {
  return new URLSearchParams(location.hash.slice(1)).get("thread") || "";
}

function keepThreadInAddress(threadId) {
  const hash = threadId ? `#${new URLSearchParams({ thread: threadId })}` : "";
  if (location.hash === hash) return;
  // replaced, not pushed: Back leaves the page rather than stepping through every thread looked at
  history.replaceState(null, "", hash || location.pathname + location.search);
}

// The picked thread in the right pane, unless it is the one there already (its preview or its digest).
function showSelected() {
  updateThreadButtons();
  const threadId = $("thread-select").value;
  if (threadId && !(state.shown && state.shown.id === threadId)) {
    setStatus("");  // what it said (done, an error) was about the thread shown before
    showThread(threadId);
  }
}

function renderDraft(thread, draft) {
  // The two-stage draft arrives at once: show it and mark its sentences while the language model writes.
  renderThread(thread, draft.highlights);
  fillBullets($("draft-bullets"), draft.bullets, draft.highlights);
  $("draft").hidden = false;
}

function renderBullets(digest) {
  fillBullets($("bullets"), digest.bullets, digest.highlights);
  if (digest.draft && digest.draft.length) {
    fillBullets($("draft-bullets"), digest.draft, digest.highlights);
    $("draft").hidden = false;
    $("draft").open = false;  // the final bullets are the TL;DR now; the draft stays one click away
  }
  $("stream").hidden = true;
  const meta = `${digest.summarizer}${digest.cached ? " · cached" : ""} · ${digest.seconds.toFixed(2)} s`;
  $("tldr-meta").textContent = meta;
}

async function digestThread(threadId) {
  if (!threadId) { setStatus("pick a thread first", true); return; }
  if (state.controller) state.controller.abort();  // a new request cancels the one in flight
  // The thread's GET is the one that shows it (already answered when its posts are on the page): a digest of
  // another thread aborts it, or its late answer would show this thread's posts and clear that digest's TL;DR.
  const shown = showThread(threadId);
  shown.digesting = true;
  const controller = new AbortController();
  state.controller = controller;
  setStatus("loading thread…");
  try {
    const readThread = () => api(`/threads/${encodeURIComponent(threadId)}`, {
      headers: headers(false), signal: controller.signal,
    });
    let thread = await shown.read;
    controller.signal.throwIfAborted();  // a newer digest of the same thread, which shares the read
    // The thread may be ingested again between its GET and the digest (another tab, a script): the highlights'
    // spans are then offsets into another version's text, and the posts shown are not the ones summarized.
    // Both answers name their version (content_hash), so on a mismatch the page reads the thread again; if
    // that is not the digest's version either (ingested once more since), its marks are not shown anywhere.
    const threadOf = async (version) => {
      if (thread.content_hash !== version) thread = await readThread();
      state.thread = thread;
      if (thread.content_hash !== version) {
        renderThread(thread, []);
        controller.abort();  // the rest of this digest is of a version the page no longer shows
        throw new Error("the thread changed while it was being digested; digest it again");
      }
      return thread;
    };
    state.thread = thread;
    renderThread(thread, []);
    resetTldr(false);
    setStatus("summarizing…");
    const request = {
      thread_id: threadId,
      summarizer: $("summarizer-select").value,
      q: $("query-input").value.trim() || null,
    };
    const response = await fetchFromServer("/stream_summary", {
      method: "POST", headers: headers(true), body: JSON.stringify(request), signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(`${body.code || response.status}: ${body.message || response.statusText}`);
    }
    let finished = false;
    for await (const ev of sseEvents(response)) {
      if (ev.event === "token") {
        $("stream").textContent += ev.data;
      } else if (ev.event === "notice") {
        addNotice(JSON.parse(ev.data).message);
      } else if (ev.event === "draft") {
        const draft = JSON.parse(ev.data);
        renderDraft(await threadOf(draft.content_hash), draft);
        setStatus("the language model is writing…");
      } else if (ev.event === "digest") {
        const digest = JSON.parse(ev.data);
        state.digest = digest;
        renderThread(await threadOf(digest.content_hash), digest.highlights);
        renderBullets(digest);
      } else if (ev.event === "error") {
        const err = JSON.parse(ev.data);
        throw new Error(`${err.code}: ${err.message}`);
      } else if (ev.event === "done") {
        finished = true;
        setStatus("done");
        document.body.dataset.digestDone = "1";
      }
    }
    // The server always ends with `done` (or `error`); a stream that just stops was cut on the way (a proxy's
    // timeout, the server restarting), and its TL;DR will not come.
    if (!finished) throw new Error("the stream ended before the TL;DR was complete (connection lost); digest again");
  } catch (err) {
    if (err.name !== "AbortError") setStatus(String(err.message || err), true);
  }
}

// Deleting a thread removes its sentences, vectors and cached digests on the server; it asks first, since
// nothing brings them back but ingesting the thread again.
async function deleteThread(threadId) {
  if (!threadId) { setStatus("pick a thread first", true); return; }
  if (!window.confirm(`Delete thread ${threadId} with its sentences and cached digests?`)) return;
  try {
    const path = `/threads/${encodeURIComponent(threadId)}`;
    const result = await api(path, { method: "DELETE", headers: headers(false) });
    if (state.shown && state.shown.id === threadId) forgetShown();  // what the page shows of it goes too
    await loadThreadList(null);
    showSelected();  // the thread now picked in its place, if any
    setStatus(`deleted thread ${threadId} (${result.sentences} sentences)`);
  } catch (err) {
    setStatus(String(err.message || err), true);
  }
}

async function ingestPasted() {
  const text = $("thread-input").value.trim();
  const format = $("format-select").value;
  if (!text) { setStatus("paste a thread or choose a file first", true); return; }
  let body;
  if (format === "native") {
    try { body = JSON.parse(text); } catch (err) { setStatus(`not valid JSON: ${err.message}`, true); return; }
  } else {
    body = { format, content: text };
  }
  setStatus("ingesting…");
  try {
    const result = await api("/threads", { method: "POST", headers: headers(true), body: JSON.stringify(body) });
    const id = result.thread_ids[0];
    // a thread ingested again under the id shown: its digest reads the new version, not the one on the page
    if (state.shown && state.shown.id === id) forgetShown();
    await loadThreadList(id);
    await digestThread(id);
  } catch (err) {
    setStatus(String(err.message || err), true);
  }
}

// The format a file is in, from its content: the selector said "native" for a Discourse topic (refused as
// "id: Input should be a valid string") and kept "stackexchange" for a JSON file uploaded after a Posts.xml.
function formatOf(text) {
  if (text.trimStart().startsWith("<")) return "stackexchange";
  try {
    const parsed = JSON.parse(text);
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    return first && typeof first === "object" && "post_stream" in first ? "discourse" : "native";
  } catch (err) {
    return null;  // not JSON or XML: leave the choice to the user (the server says what is wrong)
  }
}

function readFile(file) {
  if (!file) return;
  file.text().then((text) => {
    const format = formatOf(text);
    if (format) $("format-select").value = format;
    $("thread-input").value = text;
  });
}

// `wanted`: a thread named in the page's address, picked even when the list does not hold it (past its first
// page): showing it reads it, and says so if no such thread is stored.
function refreshThreadList(wanted) {
  return loadThreadList(wanted || $("thread-select").value).then(() => {
    const select = $("thread-select");
    if (wanted && select.value !== wanted) {
      select.prepend(new Option(`\u2068${wanted}\u2069`, wanted));
      select.value = wanted;
      select.hidden = false;
      $("threads-empty").hidden = true;
    }
    showSelected();
  }, (err) => {
    $("thread-select").innerHTML = "";
    $("thread-select").append(new Option("(could not load the threads)", ""));
    $("thread-select").hidden = false;  // not known to be empty: the list says it could not load
    $("threads-empty").hidden = true;
    updateThreadButtons();
    setStatus(String(err.message || err), true);
    return false;
  });
}

window.addEventListener("DOMContentLoaded", () => {
  $("digest-button").addEventListener("click", () => digestThread($("thread-select").value));
  $("ingest-button").addEventListener("click", ingestPasted);
  $("delete-button").addEventListener("click", () => deleteThread($("thread-select").value));
  $("thread-select").addEventListener("change", showSelected);
  let filterTimer = null;  // one request per pause in typing, not one per key
  $("thread-filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => refreshThreadList(), 200);
  });
  $("file-input").addEventListener("change", (ev) => readFile(ev.target.files[0]));
  // The key is kept in the browser as the runs page keeps it (same storage key); a new key reloads the list,
  // which a server with TLDRLAB_API_KEY refused without one.
  $("key-input").value = localStorage.getItem("tldrlab-api-key") || "";
  $("key-input").addEventListener("change", async () => {
    localStorage.setItem("tldrlab-api-key", $("key-input").value.trim());
    if ((await refreshThreadList()) !== false) setStatus("");
  });
  // a link to another thread typed or pasted into the address bar of the open page
  window.addEventListener("hashchange", () => {
    const wanted = threadInAddress();
    if (wanted && wanted !== $("thread-select").value) refreshThreadList(wanted);
  });
  refreshThreadList(threadInAddress());
});
