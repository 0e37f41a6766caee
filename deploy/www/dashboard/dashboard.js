// dashboard.js — the operations dashboard (dashboard/index.html) on the admin routes (contract
// section 7): #/ overview (totals, a live chart of jobs finished per second from /stats, queues
// with pause/resume, live workers), #/jobs (the GET /jobs listing with filters and paging),
// #/job/{id} (a job's fields, live log, retry/cancel/delete). Plain DOM, inline SVG.
import { isFinished } from "../jobgate.js";
import { makeClient, tokenBox, showMessage, hideMessage, explain, el, shortTime } from "../ui.js";

const client = makeClient();
const view = document.getElementById("view");
const STATS_EVERY_MS = 1000;
const CHART_POINTS = 60;
let current = null; // the view on screen: {abort: AbortController}

// ---- reading /stats, whatever its grouping ------------------------------------------------

/** [{name, queued, running, delayed, paused, latency}] from /stats or /queues. */
function queuesOf(stats) {
  let qs = stats && stats.queues !== undefined ? stats.queues : stats;
  if (!qs) return [];
  if (!Array.isArray(qs)) qs = Object.entries(qs).map(([name, q]) => Object.assign({ name }, q));
  return qs.map((q) => Object.assign({}, q, { name: q.name ?? q.queue }))
    .filter((q) => typeof q.name === "string")
    .sort((a, b) => a.name.localeCompare(b.name));
}

function workersOf(stats) {
  let ws = (stats && stats.workers) || [];
  if (!Array.isArray(ws)) ws = Object.entries(ws).map(([id, w]) => Object.assign({ id }, w));
  return ws;
}

/** The totals {submitted, done, failed, cancelled}: the top-level numbers when given, else the
 *  sum over the per-queue / per-type breakdown. */
function totalsOf(stats) {
  const keys = ["submitted", "done", "failed", "cancelled"];
  const t = stats && stats.totals;
  const out = { submitted: 0, done: 0, failed: 0, cancelled: 0 };
  if (!t) return out;
  if (keys.some((k) => typeof t[k] === "number")) {
    for (const k of keys) out[k] = Number(t[k]) || 0;
    return out;
  }
  const walk = (o) => {
    if (!o || typeof o !== "object") return;
    for (const [k, v] of Object.entries(o)) {
      if (keys.includes(k) && typeof v === "number") out[k] += v;
      else walk(v);
    }
  };
  walk(t);
  return out;
}

function fmtLatency(s) {
  if (typeof s !== "number") return "—";
  if (s < 1) return s.toFixed(2) + " s";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

// ---- the live chart -------------------------------------------------------------------------

const samples = []; // {t: ms, finished: total} from successive /stats

function record(stats) {
  const t = totalsOf(stats);
  samples.push({ t: performance.now(), finished: t.done + t.failed + t.cancelled });
  while (samples.length > CHART_POINTS + 1) samples.shift();
}

function rates() {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    out.push(dt > 0 ? Math.max(0, samples[i].finished - samples[i - 1].finished) / dt : 0);
  }
  return out;
}

function chart(width) {
  const r = rates();
  const W = Math.max(280, Math.round(width || 600)), H = 140, pad = 24;
  const max = Math.max(1, ...r);
  const top = max <= 5 ? Math.ceil(max) : Math.ceil(max / 5) * 5;
  const x = (i) => pad + (W - pad - 4) * (i + CHART_POINTS - r.length) / (CHART_POINTS - 1);
  const y = (v) => H - 16 - (H - 26) * v / top;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const now = r.length ? r[r.length - 1] : 0;
  svg.setAttribute("aria-label", "jobs finished per second: now " + now.toFixed(1));
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  for (const v of [0, top / 2, top]) {
    add("line", { class: "grid", x1: pad, x2: W - 4, y1: y(v), y2: y(v) });
    add("text", { x: 2, y: y(v) + 3 }, String(Math.round(v * 10) / 10));
  }
  add("text", { x: pad, y: H - 2 }, "−" + CHART_POINTS + " s");
  add("text", { x: W - 30, y: H - 2 }, "now");
  if (r.length > 1) {
    const pts = r.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    add("polygon", { class: "area", points: `${x(0)},${y(0)} ${pts} ${x(r.length - 1)},${y(0)}` });
    add("polyline", { class: "line", points: pts });
  }
  return { svg, now };
}

// ---- views ------------------------------------------------------------------------------------

function card(n, label, cls) {
  return el("div", { class: "card " + (cls || "") }, el("div", { class: "n" }, n), el("div", { class: "l" }, label));
}

function statusBadge(s) {
  return el("span", { class: "badge status " + s }, s);
}

async function act(fn, after) {
  hideMessage();
  try {
    await fn();
  } catch (e) {
    showMessage(explain(e));
  }
  if (after) after();
}

/** #/ : totals, chart, queues, workers; refreshed from /stats every second. */
function overview(signal) {
  const cards = el("div", { class: "cards", id: "totals" });
  const chartBox = el("div", { id: "chart" });
  const rateLabel = el("span", { class: "sub", id: "rate" });
  const queues = el("tbody");
  const workers = el("tbody");
  view.replaceChildren(
    cards,
    el("section", { class: "panel" }, el("h2", {}, "Jobs finished per second", rateLabel), chartBox),
    el("section", { class: "panel" }, el("h2", {}, "Queues"),
      el("div", { class: "table-wrap" }, el("table", { id: "queues" },
        el("thead", {}, el("tr", {}, el("th", {}, "queue"), el("th", {}, "state"),
          el("th", { class: "num" }, "queued"), el("th", { class: "num" }, "running"),
          el("th", { class: "num" }, "delayed"), el("th", { class: "num" }, "latency"), el("th", {}, ""))),
        queues))),
    el("section", { class: "panel" }, el("h2", {}, "Workers"),
      el("div", { class: "table-wrap" }, el("table", { id: "workers" },
        el("thead", {}, el("tr", {}, el("th", {}, "worker"), el("th", { class: "hide-narrow" }, "host / pid"),
          el("th", {}, "queues"), el("th", { class: "hide-narrow" }, "types"),
          el("th", { class: "num" }, "running"), el("th", { class: "num" }, "last seen"))),
        workers))));

  const render = (stats) => {
    const t = totalsOf(stats);
    const ws = workersOf(stats);
    const cache = stats.cache || {};
    cards.replaceChildren(card(t.submitted, "submitted"), card(t.done, "done", "ok"), card(t.failed, "failed"),
      card(t.cancelled, "cancelled"), card(ws.length, "live workers"),
      card((cache.hits ?? 0) + " / " + (cache.misses ?? 0), "cache hits / misses"));
    const c = chart(chartBox.clientWidth);
    chartBox.replaceChildren(c.svg);
    rateLabel.textContent = "now " + c.now.toFixed(1) + "/s";
    queues.replaceChildren(...queuesOf(stats).map((q) => el("tr", { "data-queue": q.name },
      el("td", {}, el("a", { href: "#/jobs?queue=" + encodeURIComponent(q.name) }, q.name)),
      el("td", {}, q.paused ? el("span", { class: "badge paused" }, "paused") : el("span", { class: "badge running" }, "active")),
      el("td", { class: "num queued" }, q.queued ?? 0), el("td", { class: "num running" }, q.running ?? 0),
      el("td", { class: "num delayed" }, q.delayed ?? 0), el("td", { class: "num latency" }, fmtLatency(q.latency)),
      el("td", { class: "actions" },
        q.paused
          ? el("button", { class: "ghost resume", type: "button", onclick: () => act(() => client.resume(q.name), refresh) }, "Resume")
          : el("button", { class: "ghost pause", type: "button", onclick: () => act(() => client.pause(q.name), refresh) }, "Pause"),
        " ",
        el("button", { class: "ghost retry-failed", type: "button", title: "queue every failed job of this queue again",
          onclick: () => act(async () => {
            const r = await client.retryFailed(q.name);
            showMessage("Queued " + (r && r.retried) + " failed job(s) of " + q.name + " again.", "info");
          }, refresh) }, "Retry failed")))));
    if (!queues.children.length) queues.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No queues yet.")));
    workers.replaceChildren(...ws.map((w) => el("tr", { "data-worker": w.id },
      el("td", { class: "mono" }, w.id), el("td", { class: "hide-narrow" }, (w.host || "?") + " / " + (w.pid ?? "?")),
      el("td", {}, [].concat(w.queues || []).join(", ")), el("td", { class: "hide-narrow" }, [].concat(w.types || []).join(", ")),
      el("td", { class: "num" }, (w.running ?? 0) + " / " + (w.concurrency ?? "?")),
      el("td", { class: "num" }, shortTime(w.last_seen)))));
    if (!ws.length) workers.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No live workers.")));
  };

  let timer = null, failing = false;
  const refresh = async () => {
    clearTimeout(timer);
    if (signal.aborted) return;
    let wait = STATS_EVERY_MS;
    try {
      const stats = await client.stats({ signal });
      record(stats);
      render(stats);
      if (failing) hideMessage();
      failing = false;
    } catch (e) {
      if (e.name === "AbortError") return;
      showMessage(explain(e));
      failing = true;
      if (e.code === "unauthorized") return; // until a token is given
      wait = 5 * STATS_EVERY_MS;
    }
    if (!signal.aborted) timer = setTimeout(refresh, wait);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  return refresh();
}

/** #/jobs?queue=&type=&status=&limit=&cursor= : the listing, newest first. */
async function jobsView(signal, params) {
  const f = { queue: params.get("queue") || "", type: params.get("type") || "", status: params.get("status") || "",
    limit: params.get("limit") || "50" };
  const cursor = params.get("cursor") || "";
  let back = []; // the cursors of the earlier pages, newest last ("" is the first page)
  try {
    back = JSON.parse(params.get("back") || "[]").filter((c) => typeof c === "string");
  } catch (e) { /* a hand-edited link: start over */ }
  const input = (name, ph) => el("input", { name, value: f[name], placeholder: ph, size: "12" });
  const statusSel = el("select", { name: "status" }, ...["", "queued", "running", "done", "failed", "cancelled"]
    .map((s) => el("option", { value: s, selected: s === f.status }, s || "any")));
  const limits = ["25", "50", "100", "200"];
  if (!limits.includes(f.limit)) limits.unshift(f.limit); // a link's own page size
  const limitSel = el("select", { name: "limit" }, ...limits
    .map((n) => el("option", { value: n, selected: n === f.limit }, n)));
  const form = el("form", { class: "row", id: "filters" },
    el("label", {}, "queue", input("queue", "any")), el("label", {}, "type", input("type", "any")),
    el("label", {}, "status", statusSel), el("label", {}, "per page", limitSel),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = "#/jobs?" + q.toString();
  });
  const body = el("tbody", {}, el("tr", {}, el("td", { colspan: "7", class: "muted" }, "Loading…")));
  const pager = el("div", { class: "pager" });
  view.replaceChildren(el("section", { class: "panel" }, el("h2", {}, "Jobs", el("span", { class: "sub" }, "newest first")),
    form, el("div", { class: "table-wrap", style: "margin-top:.75rem" }, el("table", { id: "jobs" },
      el("thead", {}, el("tr", {}, el("th", {}, "job"), el("th", {}, "queue"), el("th", {}, "type"),
        el("th", {}, "status"), el("th", { class: "num" }, "attempts"), el("th", { class: "hide-narrow" }, "created"),
        el("th", { class: "hide-narrow" }, "finished"))), body)), pager));
  let page;
  try {
    page = await client.jobs({ queue: f.queue, type: f.type, status: f.status, limit: f.limit, cursor, signal });
  } catch (e) {
    if (e.name === "AbortError") return;
    body.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "muted" }, explain(e))));
    showMessage(explain(e));
    return;
  }
  const jobs = page.jobs || [];
  body.replaceChildren(...jobs.map((j) => el("tr", { "data-id": j.id },
    el("td", { class: "mono" }, el("a", { href: "#/job/" + encodeURIComponent(j.id) }, j.id)),
    el("td", {}, j.queue), el("td", {}, j.type), el("td", {}, statusBadge(j.status)),
    el("td", { class: "num" }, j.attempts + "/" + j.max_attempts),
    el("td", { class: "hide-narrow" }, shortTime(j.created_at)), el("td", { class: "hide-narrow" }, shortTime(j.finished_at)))));
  if (!jobs.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No jobs match.")));
  const link = (cur, backs) => {
    const q = new URLSearchParams();
    for (const k of ["queue", "type", "status", "limit"]) if (f[k]) q.set(k, f[k]);
    if (cur) q.set("cursor", cur);
    if (backs.length) q.set("back", JSON.stringify(backs));
    return "#/jobs?" + q.toString();
  };
  const newer = cursor ? el("a", { href: link(back[back.length - 1] || "", back.slice(0, -1)), class: "newer" }, "← newer") : null;
  const older = page.next ? el("a", { href: link(page.next, back.concat([cursor])), class: "older" }, "older →") : null;
  pager.replaceChildren(...[newer, el("span", { class: "muted" }, "page " + (back.length + 1)), older].filter(Boolean));
}

/** #/job/{id}: fields, live log, retry / cancel / delete. */
function jobView(signal, id) {
  const box = el("section", { class: "panel", id: "job-view" });
  const fields = el("dl", { class: "kv" });
  const log = el("div", { class: "log", style: "max-height:28rem" });
  const retryBtn = el("button", { class: "ghost retry", type: "button" }, "Retry");
  const cancelBtn = el("button", { class: "ghost cancel", type: "button" }, "Cancel");
  const deleteBtn = el("button", { class: "danger delete", type: "button" }, "Delete");
  const badge = el("span", { class: "badge" });
  box.append(el("div", { class: "job-head" }, el("strong", {}, "Job"), badge, el("span", { class: "id" }, id),
    el("span", { class: "actions" }, retryBtn, cancelBtn, deleteBtn)), fields,
  el("h2", { style: "margin-top:1rem" }, "Log"), log);
  view.replaceChildren(el("p", {}, el("a", { href: "#/jobs" }, "← all jobs")), box);

  let job = null, last = null, following = null;
  const render = (j) => {
    // the long poll's answers and the buttons' (cancel, retry) arrive in any order: a job older
    // than the one shown (a lower version) never takes the page back
    if (job && j.version < job.version) return;
    job = Object.assign({}, j);
    box.dataset.status = j.status;
    badge.className = "badge status " + j.status;
    badge.textContent = j.status;
    const rows = ["queue", "type", "status", "priority", "attempts", "max_attempts", "progress", "created_at",
      "started_at", "finished_at", "run_at", "worker", "cached", "cache_key", "cancel_requested", "version", "error", "result"];
    fields.replaceChildren(...rows.flatMap((k) => [el("dt", {}, k),
      el("dd", { class: k === "result" || k === "cache_key" ? "mono" : "" }, j[k] === null || j[k] === undefined ? "—"
        : typeof j[k] === "object" ? JSON.stringify(j[k]) : String(j[k]))]));
    retryBtn.disabled = !(j.status === "failed" || j.status === "cancelled");
    cancelBtn.disabled = isFinished(j.status) || !!j.cancel_requested;
    deleteBtn.disabled = !isFinished(j.status);
  };
  const live = () => {
    if (following) following.abort();
    following = new AbortController();
    const sig = following.signal;
    signal.addEventListener("abort", () => following.abort());
    client.watch(id, render, { signal: sig }).catch(fail);
    client.follow(id, (ev) => {
      if (ev.type !== "log") return;
      last = ev.entry.id;
      log.append(el("div", { class: "ln " + ev.entry.stream, "data-cursor": ev.entry.id, title: ev.entry.ts }, ev.entry.line));
      log.scrollTop = log.scrollHeight;
    }, { signal: sig, after: last }).catch(fail);
  };
  const fail = (e) => {
    if (e && e.name === "AbortError") return;
    if (e && e.code === "not_found") {
      box.replaceChildren(el("p", { class: "muted" }, "No such job (it may have expired or been deleted)."));
      return;
    }
    showMessage(explain(e));
  };
  retryBtn.addEventListener("click", () => act(async () => { render(await client.retry(id)); live(); }));
  cancelBtn.addEventListener("click", () => act(async () => render(await client.cancel(id))));
  deleteBtn.addEventListener("click", () => {
    if (deleteBtn.dataset.confirm !== "1") {
      deleteBtn.dataset.confirm = "1";
      deleteBtn.textContent = "Really delete?";
      return;
    }
    act(async () => {
      await client.remove(id);
      if (following) following.abort();
      showMessage("Job " + id + " and its log were deleted.", "info");
      location.hash = "#/jobs";
    });
  });
  live();
}

// ---- routing ----------------------------------------------------------------------------------

function route() {
  if (current) current.abort();
  current = new AbortController();
  const h = location.hash.replace(/^#/, "") || "/";
  const [path, query] = h.split("?");
  const params = new URLSearchParams(query || "");
  let name = "overview";
  if (path.startsWith("/job/")) {
    name = "job";
    jobView(current.signal, decodeURIComponent(path.slice(5)));
  } else if (path === "/jobs") {
    name = "jobs";
    jobsView(current.signal, params);
  } else {
    overview(current.signal);
  }
  for (const a of document.querySelectorAll("nav a[data-route]")) {
    a.classList.toggle("here", a.dataset.route === name || (name === "job" && a.dataset.route === "jobs"));
  }
}

window.addEventListener("hashchange", () => { hideMessage(); route(); });
tokenBox(client, route);
route();
document.documentElement.dataset.ready = "1";
